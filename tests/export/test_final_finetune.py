"""``prunetuna finetune``: the chosen trial's full fine-tune as a child run of the trial's run, taken by ``export
--finetuned`` (which re-checks its score); a kill during the training or the upload is redone or completed by the
next run; bad input is one line, exit 2. Real Optuna, MLflow and Lightning; kills at named fault points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from conftest import HERE, tiny_config, write_config
from prunetuna.cli import app

runner = CliRunner()
ROOT = HERE.parent


def _config(name: str, **overrides: object) -> dict:
    return tiny_config(name, final_finetune={"epochs": 2, "max_batches": 4, "seed": 7}, **overrides)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("finetune")
    config = write_config(folder, _config("fin"))
    result = runner.invoke(app, ["search", str(config), "--workdir", str(folder / "w")])
    assert result.exit_code == 0, result.output
    return folder, config


def _cli(config: Path, folder: Path, *args: str) -> object:
    verb, rest = args[0], args[1:]
    return runner.invoke(app, [verb, str(config), "--workdir", str(folder / "w"), *rest])


def _killed(config: Path, folder: Path, point: str, trial: int) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}", "PRUNETUNA_FAULT": f"{point}:{trial}"}
    environment.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "prunetuna", "finetune", str(config), "--workdir", str(folder / "w")]
    return subprocess.run(
        [*command, "--trial", str(trial)], capture_output=True, text=True, env=environment, timeout=600, cwd=ROOT
    )


def _client(folder: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{folder / 'w' / 'mlflow.db'}")


def _study(folder: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'w' / 'optuna.db'}")


def _finetune_runs(folder: Path, trial_run: str) -> list:
    client = _client(folder)
    experiment = client.get_experiment_by_name("fin")
    return client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`prunetuna.role` = 'finetune' and tags.`mlflow.parentRunId` = '{trial_run}'",
        order_by=["attributes.start_time ASC"],
    )


def test_finetune_is_a_child_run_and_export_finetuned_rechecks_it(searched: tuple[Path, Path]) -> None:
    folder, config = searched
    trial = _study(folder, "fin").trials[1]
    result = _cli(config, folder, "finetune", "--trial", "1")
    assert result.exit_code == 0, result.output
    runs = _finetune_runs(folder, trial.user_attrs["mlflow_run_id"])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["optuna.trial_number"] == "1"
    assert run.data.params["final_finetune.epochs"] == "2"
    metrics = run.data.metrics
    assert metrics["accuracy_search"] == trial.user_attrs["metrics"]["accuracy"]
    assert metrics["flops_ratio"] == trial.user_attrs["metrics"]["flops_ratio"]
    history = _client(folder).get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2]
    assert {a.path for a in _client(folder).list_artifacts(run.info.run_id, "model")} == {
        "model/state_dict.pt",
        "model/manifest.json",
    }
    # export --finetuned: the fine-tuned weights, whose score it re-checks against the fine-tune's run
    out = folder / "fine.onnx"
    exported = _cli(config, folder, "export", "--trial", "1", "--finetuned", "--format", "onnx", "--out", str(out))
    assert exported.exit_code == 0, exported.output
    card = json.loads((folder / "fine.onnx.json").read_text())
    assert card["finetune_run_id"] == run.info.run_id
    assert card["checks"]["validation_accuracy"] == card["checks"]["logged_accuracy"] == metrics["accuracy"]
    plain = folder / "plain.onnx"
    assert _cli(config, folder, "export", "--trial", "1", "--format", "onnx", "--out", str(plain)).exit_code == 0
    assert json.loads((folder / "plain.onnx.json").read_text())["metrics"] == trial.user_attrs["metrics"]
    # the same settings again: nothing trained, no new run; --force trains again
    again = _cli(config, folder, "finetune", "--trial", "1")
    assert again.exit_code == 0 and "already fine-tuned" in again.output
    assert len(_finetune_runs(folder, trial.user_attrs["mlflow_run_id"])) == 1


def test_bad_input_is_one_line(searched: tuple[Path, Path]) -> None:
    folder, config = searched
    study = _study(folder, "fin")
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))  # trial 3: failed
    cases = {
        ("--trial", "9"): "--trial 9: study 'fin' has trials 0..3",
        ("--trial", "3"): "--trial 3: the trial is FAIL, not COMPLETE",
        ("--trial", "1", "--best"): "give exactly one of --trial N or --best",
        ("--best", "--max-flops", "0.0001"): "--best: no finished trial has flops ratio <= 0.0001",
    }
    for args, message in cases.items():
        result = _cli(config, folder, "finetune", *args)
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    out = folder / "none.onnx"
    missing = _cli(config, folder, "export", "--trial", "0", "--finetuned", "--format", "onnx", "--out", str(out))
    assert missing.exit_code == 2 and "trial 0 has no finished fine-tune" in missing.output, missing.output
    assert not out.exists()


def test_a_kill_during_training_is_redone_and_one_during_upload_completed(searched: tuple[Path, Path]) -> None:
    folder, config = searched
    trial_run = _study(folder, "fin").trials[2].user_attrs["mlflow_run_id"]
    killed = _killed(config, folder, "finetune_epoch", 2)
    assert killed.returncode == -9, killed.stderr
    [stale] = _finetune_runs(folder, trial_run)
    assert stale.info.status == "RUNNING"
    out = folder / "half.onnx"
    half = _cli(config, folder, "export", "--trial", "2", "--finetuned", "--format", "onnx", "--out", str(out))
    assert half.exit_code == 2 and "killed, are running" in half.output, half.output
    # killed again after the training, while uploading: the rerun completes that run without training
    killed = _killed(config, folder, "finetune_upload", 2)
    assert killed.returncode == -9, killed.stderr
    runs = _finetune_runs(folder, trial_run)
    assert [r.info.status for r in runs] == ["KILLED", "RUNNING"]
    resumed = _cli(config, folder, "finetune", "--trial", "2")
    assert resumed.exit_code == 0 and "epoch 1/2" not in resumed.output, resumed.output
    runs = _finetune_runs(folder, trial_run)
    assert [r.info.status for r in runs] == ["KILLED", "FINISHED"]
    exported = _cli(config, folder, "export", "--trial", "2", "--finetuned", "--format", "pt", "--out", str(out))
    assert exported.exit_code == 0, exported.output
    assert json.loads((folder / "half.onnx.json").read_text())["finetune_run_id"] == runs[1].info.run_id


def test_a_user_module_is_fine_tuned_with_its_own_training_distillation_and_metric(tmp_path: Path) -> None:
    import user_modules

    model = {"builtin": None, "target": "user_modules:F1Module", "kwargs": {"channels": 6}, "prune": "net"}
    final = {"epochs": 2, "max_batches": 4, "distill": {"alpha": 0.5, "temperature": 2.0}}
    config = write_config(
        tmp_path,
        tiny_config(
            "fin",
            final_finetune=final,
            model=model,
            metric={"name": "val/f1", "mode": "max"},
            objectives=["metric", "flops"],
            search={"sampler": "random", "n_trials": 2},
        ),
    )
    searched = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert searched.exit_code == 0, searched.output
    before = user_modules.F1Module.distill_steps
    result = _cli(config, tmp_path, "finetune", "--best")
    assert result.exit_code == 0, result.output
    # its own distillation_step (final_finetune.distill: the dense baseline teaches), for final_finetune's schedule
    assert user_modules.F1Module.distill_steps - before == 2 * 4
    out = tmp_path / "f1.pt"
    exported = _cli(config, tmp_path, "export", "--best", "--finetuned", "--format", "pt", "--out", str(out))
    assert exported.exit_code == 0, exported.output
    card = json.loads((tmp_path / "f1.pt.json").read_text())
    assert card["metrics"]["val/f1"] == card["checks"]["validation_accuracy"] == card["checks"]["logged_accuracy"]
