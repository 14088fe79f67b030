"""Export on another machine: the re-check of the logged metric tolerates what another CPU's floating point moves
(``METRIC_TOLERANCE``), and still fails a score off by more. The logged metric is moved in the real SQLite study."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from conftest import tiny_config, write_config
from prunetuna.config import load_config
from prunetuna.export import ExportCheckFailed, export_trial
from prunetuna.search import run_search
from prunetuna.store import resolve_workspace

METRIC_TOLERANCE = 2e-3  # prunetuna/export/_export.py


def _shift_logged_accuracy(database: Path, trial: int, by: float) -> None:
    with sqlite3.connect(database) as connection:
        ((row_id, value),) = connection.execute(
            "SELECT a.trial_user_attribute_id, a.value_json FROM trial_user_attributes a JOIN trials t "
            "ON a.trial_id = t.trial_id WHERE t.number = ? AND a.key = 'metrics'",
            (trial,),
        ).fetchall()
        metrics = json.loads(value)
        metrics["accuracy"] += by
        connection.execute(
            "UPDATE trial_user_attributes SET value_json = ? WHERE trial_user_attribute_id = ?",
            (json.dumps(metrics), row_id),
        )


def test_rebuilt_score_within_the_tolerance_exports_and_beyond_it_fails(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, tiny_config("tol", search={"n_trials": 1})))
    workspace = resolve_workspace("tol", tmp_path / "w", None, None)
    run_search(config, workspace)
    # what another CPU may do: a score a little off the logged one
    _shift_logged_accuracy(workspace.workdir / "optuna.db", 0, METRIC_TOLERANCE / 2)
    export_trial(config, workspace, fmt="pt", out=tmp_path / "a.pt", trial=0)
    # what a changed data set or model does
    _shift_logged_accuracy(workspace.workdir / "optuna.db", 0, METRIC_TOLERANCE)
    with pytest.raises(ExportCheckFailed, match="by more than 0.002"):
        export_trial(config, workspace, fmt="pt", out=tmp_path / "b.pt", trial=0)
    assert not (tmp_path / "b.pt").exists()
