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


def test_workers_killed_around_the_acknowledgement_and_their_nodes_lost(
    tmp_path: Path, stores: tuple[str, str]
) -> None:
    # One trial's parameters, killed four times, on four nodes lost with their work dirs: between the local record
    # and the upload (twice: more than a retry limit of two would allow), between the upload and the tell, and
    # between the tell and the run's end. heartbeat 1: a killed trial is stale before the next worker starts.
    storage, tracking = stores
    client = MlflowClient(tracking_uri=tracking)
    config = write_config(tmp_path, tiny_config("ack", search={"n_trials": 3, "heartbeat": 1}))
    shared = ["--storage", storage, "--tracking-uri", tracking]
    for number, point in enumerate(["recorded", "uploaded", "recorded", "told"], 1):
        lost = tmp_path / f"lost-{number}"
        killed = _cli("search", str(config), *shared, "--workdir", str(lost), PRUNETUNA_FAULT=f"{point}:{number}")
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        trials = optuna.load_study(study_name="ack", storage=storage).trials
        trial = trials[number]
        assert number == 1 or trial.system_attrs["failed_trial"] == 1  # the same parameters, again
        assert trial.params == trials[1].params
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        files = {f.path for f in client.list_artifacts(run.info.run_id, "model")}
        assert (lost / "trials" / str(number) / "record.json").exists()  # the local record comes first
        if point == "recorded":  # not acknowledged, nothing of its end uploaded
            assert trial.state.name == "RUNNING" and files == set() and "accuracy" not in run.data.metrics
        elif point == "uploaded":  # uploaded, not acknowledged
            assert trial.state.name == "RUNNING" and len(files) == 2 and "accuracy" in run.data.metrics
        else:  # acknowledged: everything but the run's end is in the shared stores
            assert trial.state.name == "COMPLETE" and len(files) == 2 and run.info.status == "RUNNING"
        shutil.rmtree(lost)  # the node is gone with its work dir: the record above is lost

    other = _cli("search", str(config), *shared, "--workdir", str(tmp_path / "other"))
    assert other.returncode == 0 and "3/3 finished trials" in other.stderr, other.stderr[-3000:]
    assert study_violations(storage, tracking, "ack", 3) == []
    trials = optuna.load_study(study_name="ack", storage=storage).trials
    assert trials[4].state.name == "COMPLETE"  # acknowledged: repaired by another worker, from the shared stores
    for trial in trials[1:4]:  # failed as stale, with the reason on its run, and run again
        assert trial.state.name == "FAIL"
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FAILED" and run.data.tags["prunetuna.fail_reason"].startswith("interrupted")
    complete = [t.number for t in trials if t.state.name == "COMPLETE"]
    assert export_failures(config, storage, tracking, complete, tmp_path / "fresh") == {}
