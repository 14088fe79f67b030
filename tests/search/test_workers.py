"""Shared studies for real: PostgreSQL from Debian's package and `mlflow server`, both on 127.0.0.1,
two concurrent worker processes; a worker killed with SIGKILL and resumed; NaN losses; unreachable stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import optuna
import pytest
import services
from mlflow import MlflowClient
from services import INITDB, POSTGRES_MISSING, throwaway_postgres

from conftest import HERE, tiny_config, write_config


def _cli(
    *args: str, wait: bool = True, fault: str | None = None
) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PRUNETUNA_FAULT", None)
    if fault is not None:
        env["PRUNETUNA_FAULT"] = fault
    command = [sys.executable, "-m", "prunetuna", *args]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster; the URL carries a password so masking can be checked."""
    if not INITDB:
        pytest.skip(POSTGRES_MISSING)
    with throwaway_postgres(password="s3cret-pw") as url:
        yield url


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with services.mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


def test_two_workers_share_one_study_and_one_parent_run(tmp_path: Path, postgres: str, mlflow_server: str) -> None:
    # with a budget, the study's creator enqueues the uniform and global baselines once, for both workers
    # trials of a few seconds: the study's creator prepares it (baselines, parent run) before the other worker
    # may start, and with one-second trials it could finish all six before the other took one
    config = write_config(
        tmp_path,
        tiny_config(
            "shared", constraints={"flops": 0.6}, finetune={"max_batches": 40}, search={"sampler": "tpe", "n_trials": 6}
        ),
    )
    args = ["search", str(config), "--storage", postgres, "--tracking-uri", mlflow_server, "--threads", "1"]
    workers = [_cli(*args, "--workdir", str(tmp_path / f"w{i}"), wait=False) for i in range(2)]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert all("s3cret-pw" not in out + err for out, err in outputs)
    assert all("prunetuna:***@127.0.0.1" in err for _, err in outputs)
    ran = [int(err.rsplit("(", 1)[1].split(" run now")[0]) for _, err in outputs]
    assert all(r >= 1 for r in ran), ran  # both took part

    study = optuna.load_study(study_name="shared", storage=postgres)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    surplus = [t for t in study.trials if t.user_attrs.get("fail_reason", "").startswith("surplus")]
    run = [t for t in study.trials if t not in surplus]
    assert len(finished) == 6 == len(run) and sum(ran) == len(run), "together they stop at exactly n_trials"
    assert all(t.state.name == "FAIL" and not t.params and "mlflow_run_id" not in t.user_attrs for t in surplus)
    params = [tuple(sorted(t.params.items())) for t in run]
    assert len(set(params)) == len(params), "no candidate handed to two workers"
    assert sorted(str(t.user_attrs.get("origin")) for t in run).count("uniform") == 1
    assert [str(t.user_attrs.get("origin")) for t in run].count("global") == 1

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("shared")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("prunetuna.role") == "study"]
    children = [r for r in runs if r.data.tags.get("prunetuna.role") == "trial"]
    assert len(parents) == 1
    assert "s3cret-pw" not in json.dumps(parents[0].data.params) and "***" in parents[0].data.params["storage"]
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in children) == sorted(t.number for t in run)
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    assert {r.info.status for r in children} == {"FINISHED"}


def test_workers_option_on_one_machine(tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_config("local2", search={"n_trials": 4}))
    result = _cli("search", str(config), "--workdir", str(tmp_path / "w"), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert (
        "starting 1 more worker process(es)" in result.stderr
        and "[worker 0]" in result.stderr
        and "[worker 1]" in result.stderr
    )
    assert (
        "[worker 0] study 'local2': 4/4 finished trials" in result.stderr and "workers exited [0, 0]" in result.stderr
    )
    study = optuna.load_study(study_name="local2", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 4


def test_killed_worker_is_resumed_with_nothing_lost(tmp_path: Path) -> None:
    # Killed (SIGKILL at a named point) in its last trial's fine-tune, resumed at once, long before that trial
    # misses three heartbeats (45 s; the new process needs about 15 s to start on a slow machine): with nothing
    # else to run, the new process says it waits for the dead trial to go stale, and then retries it.
    config = write_config(tmp_path, tiny_config("killed", search={"n_trials": 3, "heartbeat": 15}))
    workdir = tmp_path / "w"
    storage = f"sqlite:///{workdir / 'optuna.db'}"
    worker = _cli("search", str(config), "--workdir", str(workdir), fault="fine_tune:2")
    assert worker.returncode == -signal.SIGKILL, worker.stderr[-3000:]
    trials = optuna.load_study(study_name="killed", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "RUNNING"]
    victim = 2

    resumed = _cli("search", str(config), "--workdir", str(workdir))
    assert resumed.returncode == 0, resumed.stderr
    assert "waiting for 1 trial(s) running elsewhere" in resumed.stderr and "3/3 finished trials" in resumed.stderr, (
        resumed.stderr
    )
    study = optuna.load_study(study_name="killed", storage=storage)
    states = {t.number: t.state.name for t in study.trials}
    assert states[victim] == "FAIL"
    assert sum(s == "COMPLETE" for s in states.values()) == 3
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == study.trials[victim].params

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("killed")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert len([r for r in runs if r.data.tags.get("prunetuna.role") == "study"]) == 1
    killed_run = client.get_run(study.trials[victim].user_attrs["mlflow_run_id"])
    assert killed_run.info.status == "FAILED" and "interrupted" in killed_run.data.tags["prunetuna.fail_reason"]
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_nan_losses_fail_trials_and_stop_the_study(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        tiny_config(
            "nan",
            model={"builtin": None, "target": "user_models:NaNWhenPruned", "kwargs": {}},
            pruning={"max_sparsity": 0.5, "step": 0.25},
            search={"n_trials": 4, "max_failures": 2},
        ),
    )
    result = _cli("search", str(config), "--workdir", str(tmp_path / "w"))
    assert result.returncode == 1
    assert "stopped after 2 failed trials" in result.stderr and "FloatingPointError" in result.stderr
    study = optuna.load_study(study_name="nan", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert failed and all("the loss is nan" in t.user_attrs["fail_reason"] for t in failed)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'w' / 'mlflow.db'}")
    run = client.get_run(failed[0].user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and "FloatingPointError" in run.data.tags["prunetuna.fail_reason"]
    traceback = Path(client.download_artifacts(run.info.run_id, "traceback.txt", str(tmp_path))).read_text()
    assert "FloatingPointError" in traceback and "Traceback" in traceback
    exported = _cli(
        "export",
        str(config),
        "--workdir",
        str(tmp_path / "w"),
        "--trial",
        str(failed[0].number),
        "--format",
        "onnx",
        "--out",
        str(tmp_path / "x.onnx"),
    )
    assert exported.returncode == 2 and "FAIL, not COMPLETE" in exported.stderr


def test_trial_failing_before_its_fine_tune_keeps_its_reason(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        tiny_config(
            "early",
            model={"builtin": None, "target": "user_models:MatchedWidths", "kwargs": {}},
            pruning={"max_sparsity": 0.5, "step": 0.125},
            search={"n_trials": 6, "max_failures": 2, "warm_start": False},
        ),
    )
    result = _cli("search", str(config), "--workdir", str(tmp_path / "w"))
    assert result.returncode == 1 and "stopped after 2 failed trials" in result.stderr
    assert "unknown error" not in result.stderr and "RuntimeError" in result.stderr
    study = optuna.load_study(study_name="early", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(failed) == 2 and all(t.user_attrs["fail_reason"].startswith("RuntimeError") for t in failed)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'w' / 'mlflow.db'}")
    for trial in failed:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FAILED" and run.data.tags["prunetuna.fail_reason"] == trial.user_attrs["fail_reason"]
        assert {k for k in run.data.params if k.startswith("sparsity.")} == set(trial.params)
        text = Path(
            client.download_artifacts(run.info.run_id, "traceback.txt", str(tmp_path / str(trial.number)))
        ).read_text()
        assert "_candidate" in text and "fine_tune" not in text  # it failed while pruning and measuring


def test_unreachable_tracking_server_fails_fast(tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_config("nowhere"))
    start = time.monotonic()
    result = _cli(
        "search", str(config), "--workdir", str(tmp_path / "w"), "--tracking-uri", "http://user:pw123@127.0.0.1:9"
    )
    assert result.returncode == 2 and time.monotonic() - start < 60
    assert "--tracking-uri: cannot use http://user:***@127.0.0.1:9" in result.stderr and "pw123" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_ctrl_c_marks_the_trial_and_enqueues_it_again(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, tiny_config("ctrlc", finetune={"epochs": 25, "max_batches": None}, search={"n_trials": 3})
    )
    workdir = tmp_path / "w"
    storage = f"sqlite:///{workdir / 'optuna.db'}"
    worker = _cli("search", str(config), "--workdir", str(workdir), wait=False)
    deadline = time.monotonic() + 300
    interrupted = None
    while interrupted is None and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.3)
        try:
            running = [
                t
                for t in optuna.load_study(study_name="ctrlc", storage=storage).trials
                if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs
            ]
        except Exception:  # noqa: BLE001 - the study may not exist yet
            continue
        if running:
            interrupted = running[0].number
            time.sleep(0.5)
            worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=120)
    assert interrupted is not None
    assert worker.returncode == 130 and "run the same command to resume" in err and "Traceback" not in err
    study = optuna.load_study(study_name="ctrlc", storage=storage)
    assert study.trials[interrupted].state.name == "FAIL"
    waiting = [t for t in study.trials if t.state.name == "WAITING"]
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == study.trials[interrupted].params
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    assert client.get_run(study.trials[interrupted].user_attrs["mlflow_run_id"]).info.status == "FAILED"
