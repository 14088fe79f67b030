"""torchvision's detectors in a user's LightningModule trained on their own train-mode loss dict: SSDlite (whose
head made torch-pruning's graph stop at the guard) and Faster R-CNN (opt-in below) search structurally below dense
FLOPs, and export to ONNX, checked image by image (their graph loops over a batch's images; boxes after NMS vary in
number)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import search_one_trial, tiny_config, write_config
from prunetuna.cli import app

pytest.importorskip("torchvision")
runner = CliRunner()


# Faster R-CNN takes the same path (a train-mode loss dict, a graph looping over its images, image-by-image checks):
# run with PRUNETUNA_TEST_FRCNN=1 (107 s on a quiet machine) rather than in every CI run, for the suite's time.
ARCHS = ["ssdlite320_mobilenet_v3_large"] + (
    ["fasterrcnn_mobilenet_v3_large_320_fpn"] if os.environ.get("PRUNETUNA_TEST_FRCNN") else []
)


@pytest.mark.parametrize("arch", ARCHS)
def test_detector_searches_and_exports(tmp_path: Path, arch: str) -> None:
    config = write_config(
        tmp_path,
        tiny_config(
            "det",
            model={"builtin": None, "target": "vision_modules:TorchvisionDetection", "kwargs": {"arch": arch}},
            data={"builtin": None, "target": "vision_modules:BoxData", "kwargs": {"n": 16, "batch_size": 8}},
            metric={"name": "val/iou", "mode": "max"},
            objectives=["metric", "flops"],
            baseline={"epochs": 1, "lr": 0.001},
            finetune={"epochs": 1, "lr": 0.001, "max_batches": 1},
            search={"sampler": "random", "n_trials": 1, "warm_start": False},
        ),
    )
    workdir = tmp_path / "w"
    search_one_trial(config, workdir, "det", below=0.99)
    out = tmp_path / "det.onnx"
    args = ["export", str(config), "--workdir", str(workdir), "--trial", "0", "--format", "onnx", "--out", str(out)]
    exported = runner.invoke(app, args)
    assert exported.exit_code == 0, exported.output
    card = json.loads(Path(f"{out}.json").read_text())
    assert card["checks"]["per_sample"] is True
    assert sorted(card["outputs"]) == ["output_0_boxes", "output_0_labels", "output_0_scores"]
    assert all(check["passed"] for check in card["checks"]["outputs"].values())
