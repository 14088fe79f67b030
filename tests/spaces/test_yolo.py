"""Stock ultralytics YOLO models prune structurally: rewrites, fixed head layers, attention hidden from the trace."""

from __future__ import annotations

import copy
import os
import tempfile

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from prunetuna.spaces import PruningSpace, preflight, prepare_for_pruning
from prunetuna.spaces.rewrites import SplitC2f, SplitC2PSA

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))
tasks = pytest.importorskip("ultralytics.nn.tasks", reason="ultralytics is not installed ('prunetuna[yolo]')")

EXAMPLE = torch.zeros(1, 3, 128, 128)
MODELS = ["yolov8n", "yolo11n", "yolov8n-seg"]


def _build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    kind = tasks.SegmentationModel if name.endswith("-seg") else tasks.DetectionModel
    return kind(f"{name}.yaml", nc=10, verbose=False)


def _shapes(output: object) -> object:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)):
        return [_shapes(o) for o in output]
    if isinstance(output, dict):
        return {k: _shapes(v) for k, v in output.items() if k != "feats"}  # the neck's outputs: pruned widths
    return type(output).__name__


def _flops(model: torch.nn.Module) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(EXAMPLE)
    return counter.get_total_flops()


@pytest.fixture(scope="module", params=MODELS)
def space(request: pytest.FixtureRequest) -> PruningSpace:
    built = PruningSpace.from_model(_build(request.param), EXAMPLE, max_sparsity=0.75, step=0.05)
    checked, broken = preflight(built, label=request.param)
    assert broken == []
    return checked


def test_space_has_dimensions_and_keeps_the_head_predictions(space: PruningSpace) -> None:
    assert len(space.dimensions) > 40
    head = type(space.model.model[-1]).__name__
    assert head in ("Detect", "Segment")
    # the prediction layers (box, class, mask coefficients), the DFL projection and the prototypes keep their widths
    assert all(".dfl." in n or n.split(".")[-1] == "2" or ".proto." in n for n in space.ignored)
    assert not any(d.name in space.ignored for d in space.dimensions)
    assert space.graph_cost is not None and space.graph_cost.cpu_seconds < 10 and space.graph_cost.peak_gb < 1


def test_candidate_prunes_and_runs_in_eval_and_train_mode(space: PruningSpace) -> None:
    dense = space.model
    pruned = space.apply(space.uniform(0.3))
    assert _flops(pruned) < 0.7 * _flops(dense)
    for train in (False, True):
        dense.train(train)
        pruned.train(train)
        with torch.set_grad_enabled(train):
            assert _shapes(pruned(EXAMPLE)) == _shapes(dense(EXAMPLE))
    dense.eval()
    # a rebuilt space (export, load_pruned) gives the same structure: the candidate's weights load strictly
    again = PruningSpace.from_model(_build(_name(space)), EXAMPLE, max_sparsity=0.75, step=0.05)
    again.apply(space.uniform(0.3), structure_only=True).load_state_dict(pruned.state_dict(), strict=True)


def _name(space: PruningSpace) -> str:
    kind = "-seg" if type(space.model.model[-1]).__name__ == "Segment" else ""
    return ("yolo11n" if any(isinstance(m, SplitC2PSA) for m in space.model.modules()) else "yolov8n") + kind


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n"])
def test_rewritten_model_loads_the_original_state_dict_with_equal_outputs(name: str) -> None:
    original = _build(name).eval()
    rewritten = prepare_for_pruning(copy.deepcopy(original))
    assert any(isinstance(m, SplitC2f) for m in rewritten.modules())
    assert (name == "yolo11n") == any(isinstance(m, SplitC2PSA) for m in rewritten.modules())
    assert not any(type(m).__name__ in ("C2f", "C3k2", "C2PSA") for m in rewritten.modules())
    fresh = prepare_for_pruning(_build(name)).eval()  # other random weights: loading must replace them all
    fresh.load_state_dict(original.state_dict(), strict=True)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        want = original(x)[0]
        torch.testing.assert_close(rewritten(x)[0], want)
        torch.testing.assert_close(fresh(x)[0], want)
    assert prepare_for_pruning(rewritten) is rewritten  # idempotent
