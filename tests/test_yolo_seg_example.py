"""experiments/examples/yolo, ``-seg``: digit outlines as YOLO segmentation labels, their masks batched as
ultralytics' segmentation loss takes them, the mask mAP the module logs, and a stock yolov8n-seg inside the user's
LightningModule searched on mask mAP50 and exported to ONNX, the file's outputs scored again by the module."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import search_one_trial, tiny_config, write_config
from prunetuna.cli import app

EXAMPLE = Path(__file__).resolve().parents[1] / "experiments" / "examples" / "yolo"
sys.path.insert(0, str(EXAMPLE))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))
pytest.importorskip("ultralytics", reason="ultralytics is not installed ('prunetuna[yolo]')")
pytest.importorskip("cv2", reason="the outlines are traced with opencv (an ultralytics dependency)")

from make_digits_detection import write_digit_detection  # noqa: E402
from yolo_data import YoloData, label_path, read_data_yaml, read_labels  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def seg_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digit_detection(
        tmp_path_factory.mktemp("digits-seg"),
        train=32,
        val=16,
        imgsz=64,
        min_size=16,
        max_size=28,
        seed=1,
        segments=True,
    )


def test_outlines_are_polygons_whose_masks_fill_their_boxes(seg_set: Path) -> None:
    image = read_data_yaml(seg_set)["train"][0]
    for line in label_path(image).read_text().splitlines():  # class, then at least three x, y points in 0..1
        values = [float(v) for v in line.split()]
        assert len(values) >= 7 and len(values) % 2 == 1 and all(0.0 <= v <= 1.0 for v in values[1:])
    assert read_labels(label_path(image)).shape[1] == 5  # the same lines read as boxes: the detection labels
    batch = next(iter(YoloData(str(seg_set), imgsz=128, batch_size=8, masks=True).val_dataloader()))
    assert list(batch)[0] == "img" and batch["masks"].shape == (len(batch["cls"]), 32, 32)  # 1/4 of the side
    ink = boxes = 0.0
    for mask, box in zip(batch["masks"], batch["bboxes"]):
        rows, cols = torch.nonzero(mask, as_tuple=True)
        (x1, y1), (x2, y2) = ((box[:2] - box[2:] / 2) * 32).tolist(), ((box[:2] + box[2:] / 2) * 32).tolist()
        assert len(rows) >= 4  # a digit, not a sliver
        assert x1 - 1 <= cols.min() and cols.max() <= x2 and y1 - 1 <= rows.min() and rows.max() <= y2  # in its box
        ink, boxes = ink + float(mask.sum()), boxes + (x2 - x1) * (y2 - y1)
    assert 0.3 < ink / boxes < 0.9  # the digits' shapes, not their boxes


def test_mask_map_is_one_for_true_masks_and_zero_for_inverted_ones(seg_set: Path) -> None:
    from yolo_module import YoloSegmenter

    module = YoloSegmenter(imgsz=256)
    batch = next(iter(YoloData(str(seg_set), imgsz=256, batch_size=8, masks=True).val_dataloader()))

    def output(sign: float) -> tuple:  # one anchor per object: its box, its class, a prototype that is its mask
        detections, prototypes = torch.zeros(8, 4 + 10 + 32, 32), torch.full((8, 32, 64, 64), -1.0)
        for n, (i, cls, box, mask) in enumerate(zip(batch["batch_idx"], batch["cls"], batch["bboxes"], batch["masks"])):
            i = int(i)
            detections[i, :4, n] = box * 256
            detections[i, 4 + int(cls), n] = 1.0
            detections[i, 4 + 10 + n, n] = 1.0  # mask coefficients: prototype n alone
            prototypes[i, n] = sign * (2 * mask - 1)
        return (detections, prototypes), {}

    results = []
    for sign in (1.0, -1.0):
        module.on_validation_epoch_start()
        module.score(output(sign), batch)
        results.append(module.epoch_map())
    assert results[0]["val/map50"] == pytest.approx(0.995, abs=1e-6)  # ultralytics' 101-point AP tops out there
    # process_mask crops each mask to its box at 1/4 scale, cutting the edge pixels its box only partly covers:
    # at 256x256 (masks of 64x64) every IoU stays above 0.5; at 128x128 a few of the smallest digits fall below it
    assert results[0]["val/mask_map50"] == pytest.approx(0.995, abs=1e-6)
    assert results[1]["val/map50"] == pytest.approx(0.995, abs=1e-6)  # the same boxes
    assert results[1]["val/mask_map50"] == 0.0  # masks inside out: no pixel in common


def _seg_config(seg_set: Path) -> dict:
    return tiny_config(
        "yolo-seg-ci",
        model={
            "builtin": None,
            "target": "yolo_module:YoloSegmenter",
            "kwargs": {"model": "yolov8n-seg.yaml", "nc": 10, "imgsz": 64},
            "prune": "model",
        },
        data={
            "builtin": None,
            "target": "yolo_data:YoloData",
            "kwargs": {"data": str(seg_set), "imgsz": 64, "batch_size": 16, "masks": True},
        },
        metric={"name": "val/mask_map50", "mode": "max"},
        objectives=["metric", "flops"],
        baseline={"epochs": 1, "lr": 0.002},
        finetune={"epochs": 1, "lr": 0.002, "max_batches": 2},
        search={"sampler": "random", "n_trials": 1, "warm_start": False},
    )


def test_stock_yolov8n_seg_searches_on_mask_map50_and_exports_to_onnx(tmp_path: Path, seg_set: Path) -> None:
    import onnxruntime as ort
    from yolo_module import YoloSegmenter

    config = write_config(tmp_path, _seg_config(seg_set))
    workdir = tmp_path / "w"
    search_one_trial(config, workdir, "yolo-seg-ci")
    out = tmp_path / "seg.onnx"
    args = ["export", str(config), "--workdir", str(workdir), "--trial", "0", "--format", "onnx", "--out", str(out)]
    exported = runner.invoke(app, args)
    assert exported.exit_code == 0, exported.output
    card = json.loads(Path(f"{out}.json").read_text())
    assert card["checks"]["validation_accuracy"] == card["checks"]["logged_accuracy"]  # mask mAP50 re-checked
    assert card["outputs"][:2] == ["output_0_0", "output_0_1"]  # the detections (with mask coefficients), prototypes
    assert all(check["passed"] for check in card["checks"]["outputs"].values())  # every output against torch's

    # the file's detections and prototypes, scored by the module as torch's are: the same boxes and masks matched
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    scorer = YoloSegmenter(imgsz=64)
    scorer.on_validation_epoch_start()
    for batch in YoloData(str(seg_set), imgsz=64, batch_size=16, masks=True).val_dataloader():
        detections, prototypes = session.run(["output_0_0", "output_0_1"], {"input": batch["img"].numpy()})
        assert detections.shape[1] == 4 + 10 + 32 and prototypes.shape[1:] == (32, 16, 16)
        scorer.score((torch.from_numpy(detections), torch.from_numpy(prototypes)), batch)
    masks = int(sum(len(s["mask"]) for s in scorer._stats))
    assert masks > 0  # NMS kept detections, each with its mask matched
    assert scorer.epoch_map()["val/mask_map50"] == pytest.approx(card["metrics"]["val/mask_map50"], abs=2e-3)
