"""--format ultralytics: a pruned YOLO saved as ultralytics' checkpoint, loaded by ``YOLO(path)``, which predicts,
validates and exports it (ONNX, TorchScript) at its pruned widths, detection and -seg; rewritten blocks merge back
into ultralytics' classes where their halves kept equal widths."""

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
    kind = tasks.SegmentationModel if name.endswith("-seg") else tasks.DetectionModel
    return kind(f"{name}.yaml", nc=10, verbose=False)


def _pruned(name: str) -> tuple[torch.nn.Module, dict[str, float], str]:
    """``name`` pruned uniformly at 0.25 but for one C2f's first half: that block's halves differ in width, so it
    stays prunetuna's SplitC2f in the file. The model, its vector and that half's dimension."""
    space = PruningSpace.from_model(_yolo(name), EXAMPLE, max_sparsity=0.5, step=0.25)
    vector = space.uniform(0.25)
    first_half = next(d.name for d in space.dimensions if ".cv1a." in d.name)
    vector[first_half] = 0.0
    return space.apply(vector).eval(), vector, first_half


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

    pruned, vector, first_half = _pruned("yolov8n")
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


def _yolo_set(root: Path, images: int = 6) -> Path:
    """A tiny set in ultralytics' layout: bright rectangles on dark 64x64 images, each labelled by its outline
    (a polygon: a detection label to ultralytics' detect task, a mask to its segment task)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    lines = 0
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for n in range(images):
            image, labels = Image.new("RGB", (64, 64), (10, 10, 10)), []
            for _ in range(int(rng.integers(1, 3))):
                x1, y1 = (int(v) for v in rng.integers(0, 40, 2))
                x2, y2 = x1 + int(rng.integers(12, 24)), y1 + int(rng.integers(12, 24))
                ImageDraw.Draw(image).rectangle((x1, y1, x2 - 1, y2 - 1), fill=(230, 230, 230))
                corners = [x1, y1, x2, y1, x2, y2, x1, y2]
                labels.append(f"{rng.integers(0, 10)} " + " ".join(f"{v / 64:.6f}" for v in corners))
            image.save(root / "images" / split / f"{n}.png")
            (root / "labels" / split / f"{n}.txt").write_text("\n".join(labels) + "\n")
            lines += len(labels) if split == "val" else 0
    names = [str(d) for d in range(10)]
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: {names}\n")
    return root / "data.yaml"


@pytest.mark.parametrize("name", ["yolov8n", "yolov8n-seg"])
def test_ultralytics_validates_and_exports_the_file_at_its_pruned_widths(tmp_path: Path, name: str) -> None:
    import onnxruntime as ort
    from ultralytics import YOLO

    pruned, vector, _ = _pruned(name)
    path = tmp_path / "pruned.pt"
    EXPORTERS["ultralytics"].write(pruned, EXAMPLE, path, {"sparsity": vector, "trial": 0})
    task = "segment" if name.endswith("-seg") else "detect"
    loaded = YOLO(str(path))
    assert loaded.task == task  # from the architecture: ultralytics would take a -seg file for a detector
    assert sum(p.numel() for p in loaded.model.parameters()) == sum(p.numel() for p in pruned.parameters())

    data = _yolo_set(tmp_path / "set")
    labelled = sum(len(f.read_text().splitlines()) for f in (tmp_path / "set" / "labels" / "val").iterdir())
    args = {"data": str(data), "imgsz": 64, "batch": 4, "workers": 0, "plots": False, "verbose": False}
    metrics = YOLO(str(path)).val(**args, project=str(tmp_path / "runs"))
    wanted = ["metrics/mAP50(B)", "metrics/mAP50-95(B)"] + (["metrics/mAP50(M)"] if task == "segment" else [])
    assert all(0.0 <= metrics.results_dict[key] <= 1.0 for key in wanted)
    assert int(metrics.nt_per_class.sum()) == labelled  # it read every label of the set

    # ultralytics' exporters on the file: the exported models compute what the pruned model does
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        want = leaf_arrays(pruned(image)[0])  # the decoded predictions (and a -seg model's prototypes)
    onnx = YOLO(str(path)).export(format="onnx", imgsz=64)
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: image.numpy()})
    script = torch.jit.load(YOLO(str(path)).export(format="torchscript", imgsz=64))
    with torch.no_grad():
        traced = leaf_arrays(script(image))
    for outputs in (got, traced):
        assert [o.shape for o in outputs] == [w.shape for w in want]
        for g, w in zip(outputs, want):  # BatchNorm fused into the convolutions by ultralytics' exporter
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3 * float(np.abs(w).max()))
