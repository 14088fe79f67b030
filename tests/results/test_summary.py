"""What the MLflow UI shows first: trial descriptions, the parent's description and Pareto table (replaced, not
appended, when the study grows), the saved view of the trials."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
from mlflow import MlflowClient
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.results import (
    NOTE_TAG,
    PARETO_TABLE,
    VIEW_TAG,
    ReportTrial,
    build_report,
    landing_view,
    publish_summary,
    trial_description,
)

runner = CliRunner()


def _row(**fields: object) -> ReportTrial:
    defaults = {"sparsity": {}, "mlflow_run_id": None, "budget": None, "slow_for_flops": None}
    return ReportTrial(**{**defaults, **fields})


def test_trial_description_is_one_line_with_accuracy_drop_costs_and_speed() -> None:
    trial = {
        "number": 12,
        "state": "COMPLETE",
        "pareto": True,
        "origin": "sampler",
        "feasible": True,
        "metrics": {"accuracy": 0.979, "flops_ratio": 0.41, "params_ratio": 0.38, "speedup": 1.6},
    }
    dense = {"accuracy": 0.984}
    assert (
        trial_description(_row(**trial), dense)
        == "trial 12: accuracy 0.979 (-0.5 pt), FLOPs 0.41x, 1.6x faster; Pareto"
    )
    assert (
        trial_description(_row(**trial), dense, ["params"])
        == "trial 12: accuracy 0.979 (-0.5 pt), FLOPs 0.41x, params 0.38x, 1.6x faster; Pareto"
    )
    slow = {
        **trial,
        "pareto": False,
        "origin": "uniform",
        "feasible": False,
        "metrics": {**trial["metrics"], "speedup": 0.5},
    }
    assert (
        trial_description(_row(**slow), dense)
        == "trial 12: accuracy 0.979 (-0.5 pt), FLOPs 0.41x, 2.0x slower; uniform baseline, infeasible"
    )
    assert trial_description(_row(**{**trial, "state": "FAIL", "metrics": {}}), dense) == "trial 12: fail"


def _table(client: MlflowClient, run_id: str, folder: Path) -> pd.DataFrame:
    return pd.read_json(client.download_artifacts(run_id, PARETO_TABLE, str(folder)), orient="split")


def test_search_writes_the_summary_and_a_resumed_search_replaces_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_config("summary", search={"n_trials": 2}))
    workdir = tmp_path / "w"
    assert runner.invoke(app, ["search", str(config), "--workdir", str(workdir)]).exit_code == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("summary")
    assert json.loads(experiment.tags[VIEW_TAG]) == landing_view()

    def check(n_trials: int, folder: Path) -> None:
        study = optuna.load_study(study_name="summary", storage=f"sqlite:///{workdir / 'optuna.db'}")
        report = build_report(study).as_json()
        runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id])}
        parent = next(r for r in runs.values() if r.data.tags.get("prunetuna.role") == "study")
        trials = [t for t in report["trials"] if t["state"] == "COMPLETE"]
        assert len(trials) == n_trials
        for trial in trials:
            note = runs[trial["mlflow_run_id"]].data.tags[NOTE_TAG]
            assert note.startswith(f"trial {trial['number']}: accuracy {trial['metrics']['accuracy']:.3f} (")
            assert note.endswith("Pareto") == trial["pareto"]
        front = [t for t in trials if t["pareto"]]
        table = _table(client, parent.info.run_id, folder)
        assert sorted(table["trial"]) == sorted(t["number"] for t in front)  # one row per Pareto trial, never appended
        assert set(table["run_id"]) == {t["mlflow_run_id"] for t in front}
        description = parent.data.tags[NOTE_TAG]
        assert f"**Study summary**: {n_trials} trials" in description
        for trial in front:
            assert (
                f"(#/experiments/{experiment.experiment_id}/runs/{trial['mlflow_run_id']}?workflowType=machine_learning)"
                in description
            )
        logged = json.loads(parent.data.tags["mlflow.loggedArtifacts"])
        assert {"path": PARETO_TABLE, "type": "table"} in logged

    (tmp_path / "a").mkdir()
    check(2, tmp_path / "a")
    # Written again on the same study (as `prunetuna ui` does): the same table, not twice as long.
    study = optuna.load_study(study_name="summary", storage=f"sqlite:///{workdir / 'optuna.db'}")
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    publish_summary(client, experiment.experiment_id, parent_id, build_report(study))
    (tmp_path / "b").mkdir()
    check(2, tmp_path / "b")
    assert runner.invoke(app, ["search", str(config), "--workdir", str(workdir), "--n-trials", "3"]).exit_code == 0
    (tmp_path / "c").mkdir()
    check(3, tmp_path / "c")
