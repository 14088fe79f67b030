"""Nothing lost wherever the search is killed: SIGKILL at each named point of a trial (PRUNETUNA_FAULT), an
MLflow server stopped and restarted mid-search, SIGTERM and a double Ctrl-C; real SQLite stores and a real server."""

from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from services import free_port, mlflow_server

from conftest import HERE, tiny_config, write_config

ROOT = HERE.parent
FINISHED = ("COMPLETE", "PRUNED")


def _cli(*args: str, wait: bool = True, **env: str) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}", **env}
    environment.pop("MLFLOW_TRACKING_URI", None)
    if "PRUNETUNA_FAULT" not in env:
        environment.pop("PRUNETUNA_FAULT", None)
    command = [sys.executable, "-m", "prunetuna", *args]
    if not wait:
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, cwd=ROOT
        )
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600, cwd=ROOT)


def _study(workdir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / 'optuna.db'}")


def assert_nothing_lost(
    config: Path, workdir: Path, name: str, n_trials: int, tracking: str | None = None, export: int | None = None
) -> None:
    """The invariant: n_trials finished trials, each with one FINISHED run holding every metric, param and model/
    file; one parent run; no run RUNNING; no trial number with two runs; ``export --trial`` works on ``export``."""
    study = _study(workdir, name)
    finished = [t for t in study.trials if t.state.name in FINISHED]
    assert len(finished) == n_trials, [(t.number, t.state.name) for t in study.trials]
    client = MlflowClient(tracking_uri=tracking or f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    assert len([r for r in runs if r.data.tags.get("prunetuna.role") == "study"]) == 1
    per_number = collections.Counter(
        r.data.tags["optuna.trial_number"] for r in runs if r.data.tags.get("prunetuna.role") == "trial"
    )
    assert max(per_number.values()) == 1, per_number
    for trial in finished:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["optuna.state"] == trial.state.name
        assert set(trial.user_attrs["metrics"]) | {"val_accuracy"} <= set(run.data.metrics), (
            trial.number,
            run.data.metrics,
        )
        assert run.data.metrics["accuracy"] == pytest.approx(trial.user_attrs["metrics"]["accuracy"])
        assert {f"sparsity.{k}" for k in trial.user_attrs.get("sparsity", {})} <= set(run.data.params)
        assert {k for k in run.data.params if k.startswith("sparsity.")} and "finetune.epochs" in run.data.params
        if trial.state.name == "COMPLETE":
            assert {f.path for f in client.list_artifacts(run.info.run_id, "model")} == {
                "model/state_dict.pt",
                "model/manifest.json",
            }
    if export is not None:
        args = [
            "export",
            str(config),
            "--workdir",
            str(workdir),
            "--trial",
            str(export),
            "--format",
            "pt",
            "--out",
            str(workdir / "x.pt"),
        ]
        if tracking:
            args += ["--tracking-uri", tracking]
        exported = _cli(*args)
        assert exported.returncode == 0, exported.stderr


@pytest.mark.parametrize("point", ["sampled:1", "pruned:1", "fine_tune:1", "told:1", "upload:1", "plots"])
def test_killed_at_any_point_and_resumed_loses_nothing(tmp_path: Path, point: str) -> None:
    # heartbeat 1: the killed trial is stale (3 beats) before the resumed process has started
    config = write_config(tmp_path, tiny_config("kill", search={"n_trials": 2, "heartbeat": 1}))
    workdir = tmp_path / "w"
    killed = _cli("search", str(config), "--workdir", str(workdir), PRUNETUNA_FAULT=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = {t.number: t.state.name for t in _study(workdir, "kill").trials}
    if point.startswith(("told", "upload")):
        assert before[1] == "COMPLETE"  # killed once Optuna was told: only MLflow can miss something
    resumed = _cli("search", str(config), "--workdir", str(workdir))
    assert resumed.returncode == 0, resumed.stderr
    assert "2/2 finished trials" in resumed.stderr and "Traceback" not in resumed.stderr
    complete = [t.number for t in _study(workdir, "kill").trials if t.state.name == "COMPLETE"]
    assert_nothing_lost(config, workdir, "kill", 2, export=1 if 1 in complete else complete[-1])


def test_a_retry_killed_inside_optunas_ask_runs_its_parameters_again(tmp_path: Path) -> None:
    # Trial 1 is killed mid-fine-tune; the next process fails it (stale) and takes its retry, trial 2, from the queue,
    # and is killed inside Optuna's ask, before any heartbeat: Optuna never finds trial 2 stale. The third process
    # fails it once three heartbeats have passed, enqueues trial 1's parameters again and runs them.
    config = write_config(tmp_path, tiny_config("asked", search={"n_trials": 2, "heartbeat": 1}))
    workdir = tmp_path / "w"
    for point in ("fine_tune:1", "asked:2"):
        killed = _cli("search", str(config), "--workdir", str(workdir), PRUNETUNA_FAULT=point)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    trials = _study(workdir, "asked").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "RUNNING"], [(t.number, t.state) for t in trials]
    assert trials[2].params == trials[1].params and trials[2].user_attrs.get("heartbeat_of") != 2
    resumed = _cli("search", str(config), "--workdir", str(workdir))
    assert resumed.returncode == 0, resumed.stderr
    assert "2/2 finished trials" in resumed.stderr and "Traceback" not in resumed.stderr
    trials = _study(workdir, "asked").trials
    assert trials[2].state.name == "FAIL" and "killed before the trial started" in trials[2].user_attrs["fail_reason"]
    rerun = [t for t in trials[3:] if t.state.name == "COMPLETE"]
    assert [t.params for t in rerun] == [trials[1].params], [(t.number, t.state, t.params) for t in trials]
    assert rerun[0].user_attrs["retry_of"] == 2
    assert_nothing_lost(config, workdir, "asked", 2, export=rerun[0].number)


# noqa: ANN001
def _wait_for(study_of, condition, process: subprocess.Popen[str], what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if condition(study_of().trials):
                return
        except Exception:  # noqa: BLE001, S112 - the study may not exist yet
            pass
        time.sleep(0.3)
    raise AssertionError(f"{what}: not reached (exit {process.poll()})")


def test_tracking_server_going_away_and_coming_back(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, tiny_config("away", finetune={"epochs": 3, "max_batches": 20}, search={"n_trials": 4})
    )
    workdir, store = tmp_path / "w", tmp_path / "server"
    store.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # the server is up while the search starts, stops after its first trial and is back 8 s later
    server = mlflow_server(store, port)
    server.__enter__()
    search = _cli("search", str(config), "--workdir", str(workdir), "--tracking-uri", url, wait=False)
    _wait_for(
        lambda: _study(workdir, "away"), lambda ts: any(t.state.name == "COMPLETE" for t in ts), search, "first trial"
    )
    server.__exit__(None, None, None)
    time.sleep(8)
    with mlflow_server(store, port):
        _, err = search.communicate(timeout=600)
        assert search.returncode == 0, err
        assert "does not answer" in err and "answers again" in err and "4/4 finished trials" in err, err
        assert_nothing_lost(config, workdir, "away", 4, tracking=url)

    # a server that stays away: reported once, the search stops; the next start writes what is missing
    server = mlflow_server(store, port)
    server.__enter__()
    # stopped after trial 4: trial 5 may be under way with its run created and finish; no later trial can start
    search = _cli(
        "search",
        str(config),
        "--workdir",
        str(workdir),
        "--tracking-uri",
        url,
        "--n-trials",
        "8",
        wait=False,
        PRUNETUNA_TRACKING_PATIENCE="5",
    )
    _wait_for(
        lambda: _study(workdir, "away"),
        lambda ts: sum(t.state.name == "COMPLETE" for t in ts) >= 5,
        search,
        "fifth trial",
    )
    server.__exit__(None, None, None)
    _, err = search.communicate(timeout=600)
    assert search.returncode == 1 and err.count("has been unreachable for 5 s") == 1, err
    assert "the tracking store is away" in err and "Traceback" not in err
    study = _study(workdir, "away")
    assert [t.state.name for t in study.trials].count("WAITING") == 1  # the trial that could not start, enqueued again
    last = max(t.number for t in study.trials if t.state.name == "COMPLETE")
    # started while the server is still down: this study's server, so an outage to wait for, not bad input
    resumed = _cli(
        "search", str(config), "--workdir", str(workdir), "--tracking-uri", url, "--n-trials", "8", wait=False
    )
    waited = ""
    while "does not answer" not in waited and resumed.poll() is None:  # it waits for the server ...
        waited = resumed.stderr.readline()
    with mlflow_server(store, port):  # ... which comes back
        _, err = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, waited + err
        assert "does not answer" in waited and "answers again" in err, waited + err
        assert_nothing_lost(config, workdir, "away", 8, tracking=url, export=last)


@pytest.mark.parametrize(
    "signals", [(signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)], ids=["sigterm", "double-ctrl-c"]
)
def test_stop_signals(tmp_path: Path, signals: tuple[int, ...]) -> None:
    # long fine-tunes, so that the signal finds the trial running; resumed with short ones
    # (not part of the study's identity)
    config = write_config(
        tmp_path,
        tiny_config("stop", finetune={"epochs": 25, "max_batches": None}, search={"n_trials": 2, "heartbeat": 2}),
    )
    quick = write_config(tmp_path, tiny_config("stop", search={"n_trials": 2, "heartbeat": 2}), "quick.yaml")
    workdir = tmp_path / "w"
    search = _cli("search", str(config), "--workdir", str(workdir), wait=False)
    victim: list[int] = []

    def running(trials: list) -> bool:  # noqa: ANN001
        victim.extend(t.number for t in trials if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs)
        return bool(victim)

    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in search.stderr], daemon=True)
    reader.start()
    try:
        _wait_for(lambda: _study(workdir, "stop"), running, search, "a trial running")
        time.sleep(0.5)
        search.send_signal(signals[0])
        while "stopping" not in (line := lines.get(timeout=120)):
            pass
        if len(signals) > 1:  # while the first is handled (failing the trial, ending its runs)
            search.send_signal(signals[1])
        search.wait(timeout=120)
        reader.join(timeout=30)
    finally:
        if search.poll() is None:
            search.kill()
    err = line + "".join(lines.queue)
    assert "run the same command to resume" in err and "Traceback" not in err, err
    assert "SIGTERM: stopping" in err if signals[0] == signal.SIGTERM else "SIGINT: stopping" in err
    study = _study(workdir, "stop")
    if len(signals) == 1:
        assert search.returncode == 143
        assert study.trials[victim[0]].state.name == "FAIL"
        waiting = [t for t in study.trials if t.state.name == "WAITING"]
        assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == study.trials[victim[0]].params
        run = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}").get_run(
            study.trials[victim[0]].user_attrs["mlflow_run_id"]
        )
        assert run.info.status == "FAILED"
    else:
        assert search.returncode == 130 and "stopped at once (SIGINT again)" in err
    resumed = _cli("search", str(quick), "--workdir", str(workdir))
    assert resumed.returncode == 0, resumed.stderr
    assert_nothing_lost(quick, workdir, "stop", 2)
