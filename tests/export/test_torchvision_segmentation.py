"""torchvision lraspp_mobilenet_v3_large and deeplabv3_mobilenet_v3_large (dict outputs) in a user's LightningModule:
searched on IoU for two trials below dense FLOPs, exported to ONNX with the output named by its key."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app

pytest.importorskip("torchvision")
runner = CliRunner()


# deeplabv3_mobilenet_v3_large takes the same path (the same backbone, a dict output): run once by hand with
# PRUNETUNA_TEST_DEEPLAB=1 (125 s here) rather than in every CI run, which keeps the suite within its time.
ARCHS = ["lraspp_mobilenet_v3_large"] + (
    ["deeplabv3_mobilenet_v3_large"] if os.environ.get("PRUNETUNA_TEST_DEEPLAB") else []
)


@pytest.mark.parametrize("arch", ARCHS)
def test_segmentation_model_searches_and_exports(tmp_path: Path, arch: str) -> None:
    config = write_config(
        tmp_path,
        tiny_config(
            "seg",
            model={"builtin": None, "target": "vision_modules:TorchvisionSegmentation", "kwargs": {"arch": arch}},
            data={"builtin": None, "target": "vision_modules:SquaresData", "kwargs": {"n": 32}},
            metric={"name": "val/iou", "mode": "max"},
            objectives=["metric", "flops"],
            baseline={"epochs": 1, "lr": 0.003},
            finetune={"epochs": 1, "lr": 0.003, "max_batches": 1},
            search={"sampler": "random", "n_trials": 2, "warm_start": False},
        ),
    )
    workdir = tmp_path / "w"
    result = runner.invoke(app, ["search", str(config), "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="seg", storage=f"sqlite:///{workdir / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all(t.user_attrs["metrics"]["flops_ratio"] < 1.0 for t in study.trials)
    out = tmp_path / "seg.onnx"
    args = ["export", str(config), "--workdir", str(workdir), "--trial", "1", "--format", "onnx", "--out", str(out)]
    exported = runner.invoke(app, args)
    assert exported.exit_code == 0, exported.output
    card = json.loads(Path(f"{out}.json").read_text())
    assert card["outputs"] == ["out"] and card["checks"]["outputs"]["out"]["passed"]
    assert card["checks"]["validation_accuracy"] == card["checks"]["logged_accuracy"]
