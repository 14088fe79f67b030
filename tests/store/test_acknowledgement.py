"""Acknowledged means recoverable from the shared stores alone: a worker of a shared study (PostgreSQL and an
`mlflow server`) killed between its trial's local record and the upload, between the upload and Optuna's tell,
and between the tell and the run's end; its work dir is then deleted (a lost node) and another worker, with a
work dir of its own, finishes the study; every COMPLETE trial exports from a fresh work dir."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import optuna
import pytest
from mlflow import MlflowClient
from services import INITDB, POSTGRES_MISSING, export_failures, mlflow_server, study_violations, throwaway_postgres

from conftest import HERE, tiny_config, write_config

ROOT = HERE.parent


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}", **env}
    environment.pop("MLFLOW_TRACKING_URI", None)
    if "PRUNETUNA_FAULT" not in env:
        environment.pop("PRUNETUNA_FAULT", None)
    command = [sys.executable, "-m", "prunetuna", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600, cwd=ROOT)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    if not INITDB:
        pytest.skip(POSTGRES_MISSING)
    with throwaway_postgres() as storage, mlflow_server(tmp_path_factory.mktemp("mlflow")) as tracking:
        yield storage, tracking


@pytest.mark.parametrize("point", ["recorded", "uploaded", "told"])
def test_killed_around_the_acknowledgement_then_its_node_lost(
    tmp_path: Path, stores: tuple[str, str], point: str
) -> None:
    storage, tracking = stores
    name = f"ack-{point}"
    # heartbeat 1: the killed trial is stale (3 beats) before the next worker has started
    config = write_config(tmp_path, tiny_config(name, search={"n_trials": 2, "heartbeat": 1}))
    shared = ["--storage", storage, "--tracking-uri", tracking]
    lost = tmp_path / "lost"
    killed = _cli("search", str(config), *shared, "--workdir", str(lost), PRUNETUNA_FAULT=f"{point}:1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    trial = optuna.load_study(study_name=name, storage=storage).trials[1]
    run = MlflowClient(tracking_uri=tracking).get_run(trial.user_attrs["mlflow_run_id"])
    files = {f.path for f in MlflowClient(tracking_uri=tracking).list_artifacts(run.info.run_id, "model")}
    assert (lost / "trials" / "1" / "record.json").exists()  # the local record comes first
    if point == "recorded":  # not acknowledged, nothing of its end uploaded
        assert trial.state.name == "RUNNING" and files == set() and "accuracy" not in run.data.metrics
    elif point == "uploaded":  # uploaded, not acknowledged
        assert trial.state.name == "RUNNING" and len(files) == 2 and "accuracy" in run.data.metrics
    else:  # acknowledged: everything but the run's end is in the shared stores
        assert trial.state.name == "COMPLETE" and len(files) == 2 and run.info.status == "RUNNING"
    shutil.rmtree(lost)  # the node is gone with its work dir: the record above is lost

    other = _cli("search", str(config), *shared, "--workdir", str(tmp_path / "other"))
    assert other.returncode == 0 and "2/2 finished trials" in other.stderr, other.stderr[-3000:]
    assert study_violations(storage, tracking, name, 2) == []
    trials = optuna.load_study(study_name=name, storage=storage).trials
    if point == "told":
        assert trials[1].state.name == "COMPLETE"  # repaired by the other worker, from the shared stores
    else:  # failed as stale, with its reason on its run, and run again (its parameters)
        assert trials[1].state.name == "FAIL"
        reason = MlflowClient(tracking_uri=tracking).get_run(run.info.run_id).data.tags["prunetuna.fail_reason"]
        assert reason.startswith("interrupted")
        assert [t.params for t in trials if t.system_attrs.get("failed_trial") == 1] == [trials[1].params]
    complete = [t.number for t in trials if t.state.name == "COMPLETE"]
    assert export_failures(config, storage, tracking, complete, tmp_path / "fresh") == {}
