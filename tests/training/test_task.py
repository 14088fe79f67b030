"""A user's LightningModule as the model: its own training_step and metric, searched end to end (real
Lightning, Optuna, MLflow); bad inputs around it get one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

import prunetuna
import user_modules
from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.workload import digits

runner = CliRunner()


def _config(name: str, target: str, *, model: dict | None = None, **overrides):
    model = {"builtin": None, "target": f"user_modules:{target}", "kwargs": {"channels": 6}, **(model or {})}
    return tiny_config(name, model=model, search={"sampler": "random", "n_trials": 2}, **overrides)


def _search(tmp_path: Path, config: dict) -> tuple[object, Path]:
    path = write_config(tmp_path, config)
    workdir = tmp_path / "w"
    return runner.invoke(app, ["search", str(path), "--workdir", str(workdir)]), path


def _report(path: Path, workdir: Path) -> dict:
    shown = runner.invoke(app, ["report", str(path), "--workdir", str(workdir), "--json"])
    assert shown.exit_code == 0, shown.output
    return json.loads(shown.stdout)


def test_user_module_with_its_own_loss_and_metric(tmp_path: Path) -> None:
    before = user_modules.F1Module.steps
    config = _config(
        "f1",
        "F1Module",
        model={"prune": "net"},
        metric={"name": "val/f1", "mode": "max"},
        objectives=["metric", "flops"],
    )
    result, path = _search(tmp_path, config)
    assert result.exit_code == 0, result.output
    # the baseline (1 epoch of the digits' 1437/32 batches) and 2 trials of 3 batches ran the module's own training_step
    assert user_modules.F1Module.steps - before == 45 + 2 * 3
    report = _report(path, tmp_path / "w")
    assert report["metric"] == {"name": "val/f1", "mode": "max"}
    assert 0.0 <= report["dense"]["val/f1"] <= 1.0 and report["dense"]["val/f1"] == report["dense"]["accuracy"]
    trials = [t for t in report["trials"] if t["state"] == "COMPLETE"]
    assert len(trials) == 2
    study = optuna.load_study(study_name="f1", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    for item in trials:
        assert item["metrics"]["val/f1"] == study.trials[item["number"]].values[0]
    table = runner.invoke(app, ["report", str(path), "--workdir", str(tmp_path / "w")])
    assert table.exit_code == 0 and "val/f1" in table.stdout
    # export re-runs the module's validation on the rebuilt model: it reproduces the logged value
    out = tmp_path / "f1.pt"
    exported = runner.invoke(
        app,
        ["export", str(path), "--workdir", str(tmp_path / "w"), "--trial", "1", "--format", "pt", "--out", str(out)],
    )
    assert exported.exit_code == 0, exported.output
    card = json.loads((tmp_path / "f1.pt.json").read_text())
    logged = next(t for t in trials if t["number"] == 1)["metrics"]
    assert card["checks"]["validation_accuracy"] == logged["accuracy"] and card["metrics"]["val/f1"] == logged["val/f1"]
    model = prunetuna.load_pruned(out)
    assert isinstance(model, user_modules.SmallCNN)
    val = digits(batch_size=32).val_dataloader()
    preds = torch.cat([model(x).argmax(1) for x, _ in val])
    targets = torch.cat([y for _, y in val])
    assert abs(user_modules.macro_f1(preds, targets, 10) - logged["val/f1"]) < 1e-6


def test_regression_with_mode_min_and_dict_batches(tmp_path: Path) -> None:
    config = _config(
        "mae",
        "RegressionModule",
        model={"prune": "backbone"},
        metric={"name": "val/mae", "mode": "min"},
        data={"builtin": None, "target": "user_modules:RegressionData", "kwargs": {}},
        objectives=["metric", "flops"],
    )
    result, path = _search(tmp_path, config)
    assert result.exit_code == 0, result.output
    report = _report(path, tmp_path / "w")
    assert report["dense"]["val/mae"] > 0 and report["dense"]["accuracy"] == -report["dense"]["val/mae"]
    study = optuna.load_study(study_name="mae", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'w' / 'mlflow.db'}")
    for item in report["trials"]:
        assert item["metrics"]["val/mae"] > 0
        assert study.trials[item["number"]].values[0] == -item["metrics"]["val/mae"]  # maximized: the negated error
        history = client.get_metric_history(item["mlflow_run_id"], "val/mae")  # per epoch, as the module logged it
        epochs = [m for m in history if m.step >= 1]  # step 0: the trial's final metrics
        assert [m.step for m in epochs] == [1] and epochs[0].value == pytest.approx(item["metrics"]["val/mae"])


def _one_line_exit_2(tmp_path: Path, config: dict, fragment: str) -> None:
    result, _ = _search(tmp_path, config)
    assert result.exit_code == 2, result.output
    # MLflow's own INFO lines when it creates its database (a first run in an empty work dir) are not ours
    lines = [line for line in result.stderr.strip().splitlines() if " INFO mlflow." not in line]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_metric_never_logged(tmp_path: Path) -> None:
    config = _config("never", "F1Module", model={"prune": "net"}, metric={"name": "val/iou"}, baseline={"epochs": 0})
    _one_line_exit_2(
        tmp_path, config, "metric.name: the module never logged 'val/iou' in validation (it logged: val/f1, val/other)"
    )


def test_prune_path_missing(tmp_path: Path) -> None:
    _one_line_exit_2(
        tmp_path,
        _config("nopath", "F1Module", model={"prune": "backbone"}, metric={"name": "val/f1"}),
        "model.prune: F1Module has no attribute 'backbone'",
    )


def test_metric_required_with_a_module(tmp_path: Path) -> None:
    _one_line_exit_2(tmp_path, _config("nometric", "F1Module"), "metric: F1Module is a LightningModule")


def test_training_step_failing_on_the_dense_model(tmp_path: Path) -> None:
    _one_line_exit_2(
        tmp_path,
        _config("fails", "FailingModule", model={"prune": "net"}, metric={"name": "val/f1"}),
        "fails on the dense model (RuntimeError: the user's training_step broke)",
    )


def test_two_heads_tolerance_and_distillation_hook(tmp_path: Path) -> None:
    before = user_modules.F1Module.distill_steps
    config = _config(
        "heads",
        "F1Module",
        model={"prune": "net", "kwargs": {"channels": 6, "aux": True}},
        metric={"name": "val/f1"},
        objectives=["metric", "flops"],
        tolerance={"accuracy_drop": 0.5},
        finetune={"epochs": 1, "lr": 0.001, "max_batches": 3, "distill": {"alpha": 0.5, "temperature": 4.0}},
    )
    result, path = _search(tmp_path, config)
    assert result.exit_code == 0, result.output
    assert (
        user_modules.F1Module.distill_steps - before == 2 * 3
    )  # the hook trained both candidates (never the baseline)
    report = _report(path, tmp_path / "w")
    assert report["mode"] == "tolerance" and report["tolerance"] == 0.5
    dense = report["dense"]["val/f1"]
    for item in report["trials"]:
        assert item["state"] == "COMPLETE"
        assert item["feasible"] == (dense - item["metrics"]["val/f1"] <= 0.5 + 1e-9)


def test_tolerance_on_an_error_metric_is_an_increase(tmp_path: Path) -> None:
    config = _config(
        "mae-tol",
        "RegressionModule",
        model={"prune": "backbone"},
        metric={"name": "val/mae", "mode": "min"},
        data={"builtin": None, "target": "user_modules:RegressionData", "kwargs": {}},
        objectives=["metric", "flops"],
        tolerance={"accuracy_drop": 0.05},
    )
    result, path = _search(tmp_path, config)
    assert result.exit_code == 0, result.output
    report = _report(path, tmp_path / "w")
    dense = report["dense"]["val/mae"]
    assert len(report["trials"]) == 2
    for item in report["trials"]:
        assert item["feasible"] == (item["metrics"]["val/mae"] - dense <= 0.05 + 1e-9)
    table = runner.invoke(app, ["report", str(path), "--workdir", str(tmp_path / "w")])
    assert table.exit_code == 0 and "val/mae" in table.stdout


def test_segmentation_with_iou(tmp_path: Path) -> None:
    config = _config(
        "seg",
        "SegmentationModule",
        model={"prune": "net"},
        metric={"name": "val/iou"},
        data={"builtin": None, "target": "user_modules:ShapesData", "kwargs": {}},
        objectives=["metric", "params"],
        baseline={"epochs": 5, "lr": 0.01},
    )
    result, path = _search(tmp_path, config)
    assert result.exit_code == 0, result.output
    report = _report(path, tmp_path / "w")
    assert report["dense"]["val/iou"] > 0.2  # five baseline epochs find the squares
    assert [d["name"] for d in report["dimensions"]] == [
        "0",
        "2",
    ]  # inside net; the per-pixel output layer net.4 is kept
    assert all(item["state"] == "COMPLETE" and 0 <= item["metrics"]["val/iou"] <= 1 for item in report["trials"])


def test_module_checkpoint_is_the_dense_model(tmp_path: Path) -> None:
    torch.manual_seed(1)
    module = user_modules.F1Module(channels=6)
    torch.save({"state_dict": module.state_dict(), "epoch": 7}, tmp_path / "f1.ckpt")  # a Lightning .ckpt's layout
    before = user_modules.F1Module.steps
    config = _config(
        "ckpt", "F1Module", model={"prune": "net", "checkpoint": str(tmp_path / "f1.ckpt")}, metric={"name": "val/f1"}
    )
    result, path = _search(tmp_path, config)
    assert result.exit_code == 0, result.output
    assert user_modules.F1Module.steps - before == 2 * 3  # the trials only: the checkpoint is not retrained
    val = digits(batch_size=32).val_dataloader()
    module.eval()
    with torch.no_grad():
        preds = torch.cat([module.logits(x).argmax(1) for x, _ in val])
    expected = user_modules.macro_f1(preds, torch.cat([y for _, y in val]), 10)
    assert abs(_report(path, tmp_path / "w")["dense"]["val/f1"] - expected) < 1e-6


def test_a_candidate_whose_training_step_fails_fails_its_trial(tmp_path: Path) -> None:
    config = _config("cand-fails", "FailsWhenPruned", model={"prune": "net"}, metric={"name": "val/f1"})
    result, path = _search(tmp_path, config)
    assert result.exit_code != 2, result.output  # the dense model trained: not bad input
    study = optuna.load_study(study_name="cand-fails", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    pruned = [t for t in study.trials if any(v > 0 for v in t.params.values())]
    assert pruned and all(t.state.name == "FAIL" for t in pruned)
    assert all("ValueError: this module expects 6 channels" in t.user_attrs["fail_reason"] for t in pruned)
