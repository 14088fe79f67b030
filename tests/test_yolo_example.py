"""experiments/examples/yolo: the YOLO-layout data module on generated files, the mAP its module logs, and stock
ultralytics YOLOv8n and YOLO11n inside the user's LightningModule searched on mAP50 and exported (ONNX, TorchScript,
a checkpoint ``YOLO(path)`` loads)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import search_one_trial, tiny_config, write_config
from prunetuna.cli import app

EXAMPLE = Path(__file__).resolve().parents[1] / "experiments" / "examples" / "yolo"
sys.path.insert(0, str(EXAMPLE))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))

from make_digits_detection import write_digit_detection  # noqa: E402
from yolo_data import YoloData, label_path, read_data_yaml  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def digits_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digit_detection(
        tmp_path_factory.mktemp("digits-det"), train=32, val=16, imgsz=64, min_size=16, max_size=28, seed=1
    )


def test_generated_set_is_in_the_yolo_layout(digits_set: Path) -> None:
    spec = yaml.safe_load(digits_set.read_text())
    assert spec["names"] == [str(d) for d in range(10)] and spec["train"] == "images/train"
    read = read_data_yaml(digits_set)
    assert len(read["train"]) == 32 and len(read["val"]) == 16
    for image in read["train"]:
        rows = [line.split() for line in label_path(image).read_text().splitlines()]
        assert 1 <= len(rows) <= 3  # one to three digits per canvas
        for row in rows:
            cls, *box = row
            assert 0 <= int(cls) <= 9 and all(0.0 < float(v) <= 1.0 for v in box)


def test_data_module_letterboxes_and_batches_as_ultralytics_loss_takes(tmp_path: Path) -> None:
    # a 40x20 image with one box at its centre, half its width and height; an image without a label file
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "images" / "train" / "a.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "images" / "train" / "b.jpg")
    (tmp_path / "labels" / "train" / "a.txt").write_text("3 0.5 0.5 0.5 0.5\n")
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/train\nnames: {0: a, 1: b, 2: c, 3: d}\n")
    batch = next(iter(YoloData(str(tmp_path / "data.yaml"), imgsz=32, batch_size=2).val_dataloader()))
    assert list(batch) == ["img", "cls", "bboxes", "batch_idx"]  # the image first: prunetuna's model input
    assert batch["img"].shape == (2, 3, 32, 32) and float(batch["img"].max()) <= 1.0
    assert batch["cls"].tolist() == [[3.0]] and batch["batch_idx"].tolist() == [0.0]
    # letterboxed: 40x20 -> 32x16, padded 8 rows above and below; the box keeps its place on the image
    np.testing.assert_allclose(batch["bboxes"][0].numpy(), [0.5, 0.5, 0.5, 0.25], atol=1e-6)
    assert torch.allclose(batch["img"][0, :, 0, 0], torch.tensor(114 / 255))  # the padding is ultralytics' grey
    (tmp_path / "labels" / "train" / "a.txt").write_text("3 0.5 0.5\n")
    with pytest.raises(ValueError, match="a.txt:1: expected 'class cx cy w h'"):
        next(iter(YoloData(str(tmp_path / "data.yaml"), imgsz=32, batch_size=2).val_dataloader()))
    with pytest.raises(ValueError, match="says nc: 5 but names 4 classes"):
        (tmp_path / "bad.yaml").write_text("train: images/train\nval: images/train\nnc: 5\nnames: [a, b, c, d]\n")
        YoloData(str(tmp_path / "bad.yaml"))


def test_map_is_one_for_perfect_predictions_and_lower_for_wrong_classes(digits_set: Path) -> None:
    from yolo_module import YoloDetector

    module = YoloDetector(imgsz=64)
    batch = next(iter(YoloData(str(digits_set), imgsz=64, batch_size=8).val_dataloader()))

    def predictions(shift_class: int) -> torch.Tensor:  # one anchor per label: its box in pixels, its class at 1
        anchors = torch.zeros(8, 4 + 10, 16)
        for n, (i, cls, box) in enumerate(zip(batch["batch_idx"], batch["cls"], batch["bboxes"])):
            anchors[int(i), :4, n % 16] = box * 64
            anchors[int(i), 4 + (int(cls) + shift_class) % 10, n % 16] = 1.0
        return anchors

    results = []
    for shift in (0, 1):
        module.on_validation_epoch_start()
        module.score(predictions(shift), batch)
        results.append(module.epoch_map())
    # perfect: ultralytics' 101-point interpolated AP tops out at 0.995 (its validator prints the same)
    assert results[0]["val/map50"] == pytest.approx(0.995, abs=1e-6)
    assert results[0]["val/map50_95"] == pytest.approx(0.995, abs=1e-6)
    assert results[1]["val/map50"] == 0.0


def test_distillation_step_adds_nothing_when_the_teacher_agrees_and_pulls_toward_it_otherwise(digits_set: Path) -> None:
    import copy

    from yolo_module import YoloDetector

    module = YoloDetector(imgsz=64, distill_alpha=0.5)
    module.log = lambda *args, **kwargs: None  # no Trainer here
    batch = next(iter(YoloData(str(digits_set), imgsz=64, batch_size=4).train_dataloader()))
    module.model.train()
    for layer in module.model.modules():  # BN on running statistics: the train-mode head equals the eval one
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.eval()
    teacher = copy.deepcopy(module.model).eval()
    with torch.no_grad():
        agreeing = teacher(batch["img"])  # eval output: (decoded, raw head dict), as prunetuna hands it over
        task = module._loss(batch)
        same = module.distillation_step(batch, 0, agreeing)
    torch.testing.assert_close(same, 0.5 * task, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        for parameter in teacher.model[-1].parameters():  # a teacher whose head disagrees
            parameter.add_(0.5 * torch.randn_like(parameter))
        other = teacher(batch["img"])
    loss = module.distillation_step(batch, 0, other)
    assert loss.item() > same.item() + 1e-3
    loss.backward()  # the soft term reaches the student's head
    trained = [p for p in module.model.model[-1].parameters() if p.requires_grad]  # DFL's conv is frozen
    assert trained and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)


def test_stock_yolo11n_searches_on_map50_and_exports_to_onnx_and_torchscript(tmp_path: Path, digits_set: Path) -> None:
    # C3k2 and C2PSA attention (the graph that grew to 12 GB before): one trial, below dense FLOPs, both formats
    pytest.importorskip("ultralytics", reason="ultralytics is not installed ('prunetuna[yolo]')")
    config = write_config(tmp_path, _yolo_config(digits_set, "yolo11n.yaml", n_trials=1))
    workdir = tmp_path / "w"
    search_one_trial(config, workdir, "yolo-ci")
    for fmt in ("onnx", "torchscript"):
        out = tmp_path / f"yolo.{fmt}"
        args = ["export", str(config), "--workdir", str(workdir), "--trial", "0", "--format", fmt, "--out", str(out)]
        exported = runner.invoke(app, args)
        assert exported.exit_code == 0, exported.output
        card = json.loads(Path(f"{out}.json").read_text())
        assert card["checks"]["validation_accuracy"] == card["checks"]["logged_accuracy"]  # mAP50 re-checked
        assert all(check["passed"] for check in card["checks"]["outputs"].values())


def _yolo_config(digits_set: Path, model: str, n_trials: int) -> dict:
    return tiny_config(
        "yolo-ci",
        model={
            "builtin": None,
            "target": "yolo_module:YoloDetector",
            "kwargs": {"model": model, "nc": 10, "imgsz": 64},
            "prune": "model",
        },
        data={
            "builtin": None,
            "target": "yolo_data:YoloData",
            "kwargs": {"data": str(digits_set), "imgsz": 64, "batch_size": 16},
        },
        metric={"name": "val/map50", "mode": "max"},
        objectives=["metric", "flops"],
        baseline={"epochs": 1, "lr": 0.002},
        finetune={"epochs": 1, "lr": 0.002, "max_batches": 2},
        search={"sampler": "random", "n_trials": n_trials, "warm_start": False},
    )


def test_stock_yolov8n_searches_on_map50_and_exports(tmp_path: Path, digits_set: Path) -> None:
    pytest.importorskip("ultralytics", reason="ultralytics is not installed ('prunetuna[yolo]')")
    raw = _yolo_config(digits_set, "yolov8n.yaml", n_trials=2)
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    raw["model"]["kwargs"]["names"] = names  # the data.yaml's names, handed back in the ultralytics file
    config = write_config(tmp_path, raw)
    workdir = tmp_path / "w"
    result = runner.invoke(app, ["search", str(config), "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="yolo-ci", storage=f"sqlite:///{workdir / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all(t.user_attrs["metrics"]["flops_ratio"] < 1.0 for t in study.trials)  # every trial below dense FLOPs
    for fmt in ("onnx", "ultralytics"):  # TorchScript of these outputs: tests/export/test_outputs.py
        out = tmp_path / ("yolo.pt" if fmt == "ultralytics" else f"yolo.{fmt}")  # YOLO() reads only *.pt
        args = ["export", str(config), "--workdir", str(workdir), "--trial", "1", "--format", fmt, "--out", str(out)]
        exported = runner.invoke(app, args)
        assert exported.exit_code == 0, exported.output
        card = json.loads(Path(f"{out}.json").read_text())
        assert card["checks"]["validation_accuracy"] == card["checks"]["logged_accuracy"]  # mAP50 re-checked
        assert card["outputs"][:3] == ["output_0", "output_1_boxes", "output_1_scores"]
        assert all(check["passed"] for check in card["checks"]["outputs"].values())
    session = ort.InferenceSession(str(tmp_path / "yolo.onnx"), providers=["CPUExecutionProvider"])
    (predictions, *_) = session.run(None, {"input": np.zeros((2, 3, 64, 64), dtype=np.float32)})
    assert predictions.shape[:2] == (2, 4 + 10)  # what ultralytics' NMS takes, at another batch size
    from ultralytics import YOLO

    yolo = YOLO(str(tmp_path / "yolo.pt"))
    assert yolo.names == dict(enumerate(names))
    (result,) = yolo.predict(np.zeros((64, 64, 3), np.uint8), imgsz=64, verbose=False)
    assert result.boxes is not None and result.names == dict(enumerate(names))  # ultralytics' own predict runs it
