"""--format ultralytics: a pruned YOLO saved as ultralytics' checkpoint, loaded by ``YOLO(path)``, which predicts;
rewritten blocks merge back into ultralytics' classes where their halves kept equal widths."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from prunetuna.export._formats import EXPORTERS, leaf_arrays
from prunetuna.spaces import PruningSpace, prepare_for_pruning, restore_stock

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))
tasks = pytest.importorskip("ultralytics.nn.tasks", reason="ultralytics is not installed ('prunetuna[yolo]')")
EXAMPLE = torch.zeros(1, 3, 64, 64)


def _yolo(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return tasks.DetectionModel(f"{name}.yaml", nc=10, verbose=False)


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n"])
def test_split_blocks_merge_back_into_ultralytics_classes_exactly(name: str) -> None:
    original = _yolo(name).eval()
    rewritten = prepare_for_pruning(copy.deepcopy(original))
    assert restore_stock(rewritten) == []  # unpruned: every half is as wide as the other
    assert {type(m) for m in rewritten.modules()} == {type(m) for m in original.modules()}  # C2f, C3k2, C2PSA again
    assert set(rewritten.state_dict()) == set(original.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x)[0], original(x)[0])


def test_pruned_yolo_is_a_checkpoint_yolo_loads_and_predicts(tmp_path: Path) -> None:
    from ultralytics import YOLO

    space = PruningSpace.from_model(_yolo("yolov8n"), EXAMPLE, max_sparsity=0.5, step=0.25)
    vector = space.uniform(0.25)
    first_half = next(d.name for d in space.dimensions if ".cv1a." in d.name)
    vector[first_half] = 0.0  # its block's halves now differ in width: it stays prunetuna's SplitC2f
    pruned = space.apply(vector).eval()
    path = tmp_path / "pruned.pt"
    EXPORTERS["ultralytics"].write(pruned, EXAMPLE, path, {"sparsity": vector, "trial": 3})
    batch = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = leaf_arrays(pruned(batch))
    for got, expected in zip(EXPORTERS["ultralytics"].run(path, batch), want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)

    saved = torch.load(path, weights_only=False)
    kept = saved["prunetuna"]["kept_split"]
    stock = sum(type(m).__name__ == "C2f" for m in saved["model"].modules())
    assert kept == [first_half.split(".cv1a.")[0]] and stock == 7  # yolov8n's eight C2f blocks, merged back but one
    yolo = YOLO(str(path))
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    (result,) = yolo.predict(image, imgsz=64, conf=0.0, verbose=False)
    assert result.boxes is not None and result.boxes.data.shape[1] == 6
