from __future__ import annotations

import pytest
import torch
from torch import nn

from prunetuna.spaces import PruningSpace, find_output_layer
from prunetuna.workload import TinyResNet
from user_models import ConcatNet, DepthwiseNet, LinearOnly, ResidualNet
from user_modules import SmallCNN

EXAMPLE = torch.randn(4, 1, 8, 8)


def _space(model: nn.Module, **kwargs) -> PruningSpace:
    return PruningSpace.from_model(model, EXAMPLE, max_sparsity=0.75, step=0.25, **kwargs)


def _out_channels(model: nn.Module) -> dict[str, int]:
    return {
        n: m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        for n, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    }


def test_tiny_resnet_groups_coupled_channels() -> None:
    space = _space(TinyResNet(width=8))
    # Residual adds tie stem + block outputs into one group per stage, named after its first layer;
    # each block's inner conv is its own.
    assert space.names == [
        "stem.0",
        "layer1.0.conv1",
        "layer2.0.conv1",
        "layer2.0.conv2",
        "layer3.0.conv1",
        "layer3.0.conv2",
    ]
    stem = next(d for d in space.dimensions if d.name == "stem.0")
    assert {"layer1.0.conv2", "layer2.0.conv1"} <= set(stem.layers)
    assert space.ignored == ("fc",)


def test_apply_removes_channels_and_leaves_dense_untouched() -> None:
    model = TinyResNet(width=8)
    before = _out_channels(model)
    space = _space(model)
    pruned = space.apply({"stem.0": 0.5, "layer3.0.conv1": 0.75})
    after = _out_channels(pruned)
    assert _out_channels(model) == before
    assert after["stem.0"] == 4 and after["layer1.0.conv2"] == 4  # coupled by the residual add
    assert after["layer3.0.conv1"] == 8  # 32 channels, 75% removed
    assert after["fc"] == 10
    assert pruned(EXAMPLE).shape == (4, 10)


@pytest.mark.parametrize("factory", [ResidualNet, DepthwiseNet, ConcatNet])
def test_user_models_prune_and_run(factory: type[nn.Module]) -> None:
    model = factory()
    space = _space(model)
    assert space.dimensions, "every test model has something to prune"
    full = {name: 0.5 for name in space.names}
    pruned = space.apply(full)
    assert pruned(EXAMPLE).shape == (4, 10)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    assert _out_channels(pruned)["head"] == 10


def test_residual_add_is_one_dimension() -> None:
    space = _space(ResidualNet())
    coupled = [d for d in space.dimensions if "conv_c" in d.layers and "conv_a" in d.layers]
    assert len(coupled) == 1
    pruned = space.apply({coupled[0].name: 0.5})
    channels = _out_channels(pruned)
    assert channels["conv_a"] == channels["conv_c"] == 4


def test_depthwise_follows_its_producer() -> None:
    space = _space(DepthwiseNet())
    # The expand conv's outputs and the depthwise conv's channels are one group (one dimension).
    [group] = [d for d in space.dimensions if {"expand", "depthwise"} <= set(d.layers)]
    pruned = space.apply({group.name: 0.5})
    assert pruned.expand.out_channels == 8
    assert pruned.depthwise.groups == pruned.depthwise.in_channels == pruned.depthwise.out_channels == 8


def test_concat_prunes_fuse_inputs_per_branch() -> None:
    space = _space(ConcatNet())
    pruned = space.apply({"left": 0.5, "right": 0.25})
    assert pruned.left.out_channels == 4 and pruned.right.out_channels == 12
    assert pruned.fuse.in_channels == 16


def test_ignore_patterns_and_output_layer() -> None:
    model = TinyResNet(width=8)
    assert find_output_layer(model, EXAMPLE) == "fc"
    space = _space(model, ignore=["layer3.*"])
    assert not any(name.startswith("layer3") for name in space.names)
    assert "layer3.0.conv1" in space.ignored


def test_every_head_of_a_two_headed_model_is_kept() -> None:
    model = SmallCNN(channels=8, aux=True)
    space = _space(model)
    assert {"head", "aux"} <= set(space.ignored)
    pruned = space.apply({name: 0.5 for name in space.names})
    logits, aux = pruned(EXAMPLE)
    assert logits.shape[1] == 10 and aux.shape[1] == 1 and pruned.conv2.out_channels == 4


def test_nothing_prunable() -> None:
    assert _space(LinearOnly()).dimensions == ()


def test_suggest_uses_bounds_and_step() -> None:
    import optuna

    space = _space(ResidualNet())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    vector = space.suggest(trial)
    assert set(vector) == set(space.names)
    assert all(v in (0.0, 0.25, 0.5, 0.75) for v in vector.values())
    assert set(trial.params) == {f"sparsity.{n}" for n in space.names}


def test_check_rejects_unknown_and_out_of_range() -> None:
    space = _space(ResidualNet())
    with pytest.raises(ValueError, match="unknown dimensions"):
        space.check({"nope": 0.1})
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        space.check({space.names[0]: 1.0})


def test_dimension_counts_per_granularity() -> None:
    model = TinyResNet(width=8, blocks=(2, 2, 2))
    counts = {g: len(_space(model, granularity=g).dimensions) for g in ("layer", "block", "stage")}
    assert counts == {"layer": 9, "block": 7, "stage": 3}
    stages = _space(model, granularity="stage")
    assert stages.names == ["stage1", "stage2", "stage3"]
    assert stages.dimensions[1].roots == ("layer2.0.conv1", "layer2.0.conv2", "layer2.1.conv1")
    blocks = _space(model, granularity="block")
    assert ("layer2.0", ("layer2.0.conv1", "layer2.0.conv2")) in [(d.name, d.roots) for d in blocks.dimensions]


def test_explicit_groups_tie_matching_layers() -> None:
    model = TinyResNet(width=8, blocks=(2, 2, 2))
    space = _space(model, groups={"early": ["stem.*", "layer1.*"]})
    assert space.names[0] == "early" and space.dimensions[0].roots == ("stem.0", "layer1.0.conv1", "layer1.1.conv1")
    pruned = space.apply({"early": 0.5})
    channels = _out_channels(pruned)
    assert channels["stem.0"] == 4 and channels["layer1.0.conv1"] == 4 and channels["layer1.1.conv1"] == 4
    assert channels["layer2.0.conv1"] == 16


@pytest.mark.parametrize("importance", ["l1", "bn_scale", "taylor", "random"])
def test_importance_criteria(importance: str) -> None:
    model = TinyResNet(width=8)
    space = _space(model, importance=importance)
    batches = [(torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))]
    pruned = space.apply({"layer1.0.conv1": 0.5}, batches)
    assert _out_channels(pruned)["layer1.0.conv1"] == 4
    assert all(p.grad is None for p in pruned.parameters())


def test_taylor_needs_batches_except_for_costs() -> None:
    space = _space(TinyResNet(width=8), importance="taylor")
    with pytest.raises(ValueError, match="needs a few batches"):
        space.apply({"layer1.0.conv1": 0.5})
    shape_only = space.apply({"layer1.0.conv1": 0.5}, structure_only=True)
    assert _out_channels(shape_only)["layer1.0.conv1"] == 4


def test_uniform_global_and_bounds() -> None:
    model = TinyResNet(width=8)
    space = _space(model).with_bounds({"stem.0": 0.25})
    assert space.uniform(0.5)["stem.0"] == 0.25 and space.uniform(0.5)["layer1.0.conv1"] == 0.5
    allocation = space.global_allocation(0.5)
    assert set(allocation) == set(space.names) and all(0.0 <= r <= 0.75 for r in allocation.values())
    assert allocation["stem.0"] <= 0.25
    assert len(set(round(r, 3) for r in allocation.values())) > 1, "global ranking allocates unevenly"
    assert all(abs(v / 0.25 - round(v / 0.25)) < 1e-9 for v in space.snap(allocation).values())


@pytest.mark.parametrize(("method", "ratio", "expected"), [("unstructured", 0.6, 0.6), ("nm", 0.5, 0.5)])
def test_mask_methods_reach_the_sparsity_asked(method: str, ratio: float, expected: float) -> None:
    from prunetuna.objectives import count_flops, count_params

    model = TinyResNet(width=8)
    space = _space(model, method=method)
    assert "fc" not in space.names and "layer1.0.conv2" in space.names  # every layer but the output one
    pruned = space.apply({name: ratio for name in space.names})
    for name in space.names:
        weight = dict(pruned.named_modules())[name].weight
        exact = method == "unstructured" or weight[0].numel() % 4 == 0  # N:M rows of 9 end in a short group
        assert abs(float((weight == 0).float().mean()) - expected) < (0.02 if exact else 0.12), name
    assert _out_channels(pruned) == _out_channels(model), "nothing is removed"
    assert count_flops(pruned, EXAMPLE) < 0.6 * count_flops(model, EXAMPLE)
    assert count_params(pruned) < count_params(model)
    space.finalize(pruned)
    assert not any(k.endswith(("_orig", "_mask")) for k in pruned.state_dict())
    if method == "nm":
        weight = pruned.layer1[0].conv1.weight.reshape(16, -1)[:, :144].reshape(16, -1, 4)
        assert int((weight != 0).sum(dim=2).max()) <= 2  # at most 2 of every 4 consecutive weights


def test_round_to_keeps_multiples_and_cost_falls_monotonically() -> None:
    from prunetuna.objectives import count_flops

    model = TinyResNet(width=16)
    space = _space(model, round_to=8)
    flops = []
    for ratio in (0.0, 0.25, 0.5, 0.75):
        pruned = space.apply(space.uniform(ratio))
        assert all(c % 8 == 0 for n, c in _out_channels(pruned).items() if n != "fc")
        flops.append(count_flops(pruned, EXAMPLE))
    assert flops == sorted(flops, reverse=True) and flops[-1] < flops[0] / 2


def test_from_config_keeps_model_and_example_and_refuses_nothing_to_prune() -> None:
    from prunetuna.config import PruningConfig
    from prunetuna.errors import UserError

    model = TinyResNet(width=8)
    space = PruningSpace.from_config(PruningConfig(max_sparsity=0.75, step=0.25), model, EXAMPLE, label="model tiny")
    assert space.model is model and space.example is EXAMPLE
    assert space.names == _space(model).names
    assert space.only(space.dimensions[:1]).model is model and space.with_bounds({}).example is EXAMPLE
    with pytest.raises(UserError, match="nothing to prune"):
        PruningSpace.from_config(PruningConfig(), LinearOnly(), torch.randn(2, 64))
    with pytest.raises(UserError, match="max_sparsity: 0 leaves nothing"):
        PruningSpace.from_config(PruningConfig(max_sparsity=0.0, step=0.05), model, EXAMPLE)


def test_methods_are_strategies_in_a_registry() -> None:
    from prunetuna.registry import UnknownName
    from prunetuna.spaces import METHODS

    assert METHODS.names() == ("structured", "unstructured", "nm")
    nm = _space(TinyResNet(width=8), method="nm", nm=(1, 4))
    assert nm.max_sparsity == nm.step == 0.75  # a layer is dense or 1:4
    with pytest.raises(UnknownName, match="unknown pruning method 'channel'"):
        _space(TinyResNet(width=8), method="channel")
