"""Edge-era timm classifiers (random weights, 64x64) get a cheap graph and a space whose candidates run; the pre-flight
prunes at several ratios; torch-pruning's groups are the same with prunetuna's indexed membership check."""

from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

from prunetuna.spaces import PruningSpace, indexed_groups, preflight
from prunetuna.spaces.rewrites import opaque_for_tracing

EDGE = [
    ("mobilevitv2_050", {}),  # linear attention splitting its projection by fixed widths [1, d, d]
    ("efficientvit_m0", {}),  # cascaded group attention: its graph grew past 8 GB
    ("efficientvit_b0", {}),  # MIT linear attention (LiteMLA)
]


@pytest.mark.parametrize(("name", "extra"), EDGE, ids=[name for name, _ in EDGE])
def test_edge_model_graph_is_cheap_and_every_candidate_runs(name: str, extra: dict) -> None:
    timm = pytest.importorskip("timm", reason="timm is not installed (bash scripts/install.sh --vision installs it)")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=4, **extra)
    x = torch.randn(2, 3, 64, 64)
    with opaque_for_tracing(model) as hidden:
        assert hidden > 0  # its attention blocks, found by type
    space = PruningSpace.from_model(model, x, max_sparsity=0.5, step=0.25)
    assert space.graph_cost is not None
    assert space.graph_cost.cpu_seconds <= 10 and space.graph_cost.peak_gb <= 1
    assert len(space.dimensions) >= 10
    kept, broken = preflight(space, label=name)
    assert broken == [] and kept.names == space.names
    dense = sum(p.numel() for p in model.parameters())
    for ratio in (0.25, 0.5):
        pruned = space.apply(space.uniform(ratio), structure_only=True)
        assert sum(p.numel() for p in pruned.parameters()) < dense
        assert pruned.train()(x).shape == (2, 4) and pruned.eval()(x).shape == (2, 4)


class _WidthTwelveBreaks(nn.Module):
    """Runs with any width but 12: a forward that breaks at one ratio (0.25 of 16 channels) and not at the bound."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 12:
            raise RuntimeError("split_with_sizes expects split_sizes to sum exactly to 12")
        return x


def test_preflight_catches_a_dimension_that_breaks_below_the_bound_only(capsys: pytest.CaptureFixture[str]) -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3),
        nn.ReLU(),
        _WidthTwelveBreaks(),
        nn.Conv2d(16, 16, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )
    space = PruningSpace.from_model(net, torch.randn(2, 3, 8, 8), max_sparsity=0.5, step=0.25)
    assert space.names == ["0", "3"]
    kept, broken = preflight(space, label="net")
    assert kept.names == ["3"] and [(b.dimension.name, b.ratio) for b in broken] == [("0", 0.25)]
    assert "breaks the model when pruned at 0.25 (RuntimeError: split_with_sizes" in capsys.readouterr().err


def test_indexed_groups_are_torch_prunings_groups() -> None:
    class ChunkCat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cv1, self.cv2, self.m = nn.Conv2d(3, 16, 1), nn.Conv2d(24, 8, 1), nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a, b = self.cv1(x).chunk(2, 1)
            return self.cv2(torch.cat([a, b, self.m(b)], 1)).flatten(1)

    graph = tp.DependencyGraph().build_dependency(ChunkCat(), example_inputs=torch.randn(1, 3, 4, 4))

    def groups() -> list:
        return [[(str(d), list(i), list(it.root_idxs)) for it in g for d, i in [it]] for g in graph.get_all_groups()]

    with indexed_groups():
        indexed = groups()
    assert indexed == groups() and len(indexed) >= 2
