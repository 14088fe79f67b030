"""The study's one parent run among workers (store/_parent_run.py, store/_parent.py): the election as a pure
decision, the creator's liveness as one, a worker holding a run that lost (real MLflow, local store), processes
creating candidates at one instant, and, on PostgreSQL and an ``mlflow server``, a creator killed before it
published the parent run while three workers start together."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import services
from mlflow import MlflowClient
from services import INITDB, POSTGRES_MISSING, run_together, study_violations, throwaway_postgres

from conftest import HERE, tiny_config, write_config
from prunetuna.store import (
    PARENT_SILENCE_S,
    Candidate,
    CreatorWatch,
    Election,
    StudyTracker,
    TrialStore,
    elect,
    reconcile,
    resolve_workspace,
)

OLD_WAIT_S = 600.0  # what a worker waited for a dead creator before (PARENT_WAIT_S)


def test_the_earliest_candidate_wins_whoever_looks_and_in_whatever_order() -> None:
    assert elect([]) == Election(None)
    runs = [Candidate(2000, "b"), Candidate(1000, "z"), Candidate(1000, "a"), Candidate(1500, "c")]
    for order in itertools.permutations(runs):
        assert elect(order) == Election("a", ("z", "c", "b"))  # start time first, the run id breaks the tie
    # A worker that saw only some candidates supersedes only runs that are not the earliest of all: the winner of
    # every set is never a loser of any of its subsets (so nobody ever supersedes the final winner).
    final = elect(runs).winner
    for size in range(1, len(runs) + 1):
        for seen in itertools.combinations(runs, size):
            assert final not in elect(seen).losers
    assert elect([Candidate(5, "x"), Candidate(5, "x")]) == Election("x")  # a run listed twice is one candidate


def test_a_creator_is_gone_after_a_silence_by_the_waiters_clock() -> None:
    watch = CreatorWatch(silence_s=30.0)
    assert not watch.gone(None, now=1000.0)  # never beat yet: counted from the first look
    assert not watch.gone(None, now=1029.0)
    assert watch.gone(None, now=1031.0)
    # a beating creator is alive however far its clock is from the waiter's; a silent one is gone
    watch = CreatorWatch(silence_s=30.0)
    for step in range(20):
        assert not watch.gone(5.0e9 + 3 * step, now=10.0 * step)  # a beat every 10 s of the waiter's clock
    assert not watch.gone(5.0e9 + 57, now=220.0)
    assert watch.gone(5.0e9 + 57, now=251.0)
    # a study abandoned while it was prepared, resumed much later: its last beat is stale at the first look
    assert CreatorWatch(silence_s=30.0, stale_s=600.0).gone(1.0e9, now=0.0, age=3600.0)
    assert not CreatorWatch(silence_s=30.0, stale_s=600.0).gone(1.0e9, now=0.0, age=5.0)


def test_a_worker_holding_a_run_that_lost_is_moved_to_the_winner_and_nothing_is_deleted(tmp_path: Path) -> None:
    workspace = resolve_workspace("elect", tmp_path / "w", None, None)
    first, second = StudyTracker(workspace, "elect"), StudyTracker(workspace, "elect")
    first.connect(create=True)
    second.connect(create=True)
    client, experiment = first.client, first.experiment_id
    now = int(time.time() * 1000)
    # Worker 1 created its candidate and saw only it; worker 2's, created at that moment with an earlier start
    # time (another machine's clock, or its request was faster), was not listed yet.
    late = client.create_run(experiment, start_time=now + 60_000, tags={"prunetuna.role": "study"}).info.run_id
    assert first.start_parent(None, {"seed": 0}) == late
    first.log_parent_metrics({"dense_accuracy": 0.5})
    before = first.start_trial(0, "sampler", {"sparsity.a": 0.25})
    early = client.create_run(experiment, start_time=now, tags={"prunetuna.role": "study"}).info.run_id
    assert second.start_parent(None, {"seed": 0}) == early  # the earliest wins
    lost = client.get_run(late)
    assert lost.info.lifecycle_stage == "active" and lost.info.status == "KILLED"  # superseded, not deleted
    assert lost.data.tags["prunetuna.role"] == "study-superseded"
    assert lost.data.tags["prunetuna.superseded_by"] == early
    first.log_parent_metrics({"dense_accuracy": 0.5})  # what exited 1 before: a write to the run it holds
    after = first.start_trial(1, "sampler", {"sparsity.a": 0.5})  # looks again before each trial's run
    first.flush()
    assert first.parent_run_id == early
    assert client.get_run(after).data.tags["mlflow.parentRunId"] == early
    winner = client.get_run(early)
    assert winner.data.params == {"seed": "0"} and winner.data.metrics == {"dense_accuracy": 0.5}
    # reconciliation moves the trial run made under the run that lost, and the study keeps the winner's id
    study = optuna.create_study()
    study.set_user_attr("mlflow_parent_run_id", late)
    done = reconcile(study, second, TrialStore(tmp_path / "w"))
    assert done is not None and done.reparented == 1
    assert client.get_run(before).data.tags["mlflow.parentRunId"] == early
    assert study.user_attrs["mlflow_parent_run_id"] == early
    first.end_parent("FINISHED")
    parents = client.search_runs([experiment], filter_string="tags.`prunetuna.role` = 'study'")
    assert [r.info.run_id for r in parents] == [early] and parents[0].info.status == "FINISHED"


_TOGETHER = 4
_BARRIER = multiprocessing.get_context("fork").Barrier(_TOGETHER)  # inherited by run_together's forked workers


def _start_parent(workdir: Path) -> tuple[str, str]:
    """One worker that found no parent run and starts one: the run it joined, and what it writes there."""
    tracker = StudyTracker(resolve_workspace("together", workdir, None, None), "together")
    tracker.connect(create=True)
    _BARRIER.wait(timeout=120)  # connected (which takes each its own time): all look for the parent at once
    joined = tracker.start_parent(None, {"seed": 0})
    tracker.log_parent_metrics({"dense_accuracy": 0.5})  # never fails: a run that lost is still there
    tracker.flush()
    return joined, str(tracker.experiment_id)


def test_workers_starting_the_parent_at_one_instant_keep_one_run(tmp_path: Path) -> None:
    workdir = tmp_path / "w"
    joined = run_together(_start_parent, [workdir] * _TOGETHER)
    watcher = StudyTracker(resolve_workspace("together", workdir, None, None), "together")
    watcher.connect(create=False)
    runs = watcher.client.search_runs([joined[0][1]])
    candidates = [r for r in runs if r.data.tags["prunetuna.role"] in ("study", "study-superseded")]
    parents = [r for r in candidates if r.data.tags["prunetuna.role"] == "study"]
    assert len(parents) == 1, [r.data.tags for r in candidates]
    winner = parents[0].info.run_id
    rank = {r.info.run_id: (r.info.start_time, r.info.run_id) for r in candidates}
    for run in candidates:  # each lost to an earlier candidate (which may itself have lost to the winner)
        if run.info.run_id != winner:
            assert rank[run.data.tags["prunetuna.superseded_by"]] < rank[run.info.run_id]
            assert run.info.lifecycle_stage == "active" and run.info.status == "KILLED"  # not deleted, ended
    for run_id, _ in joined:  # whichever a worker joined, it is the winner or moves there at its next trial
        watcher.parent_run_id = run_id
        assert watcher.follow_parent() == winner
    print(f"{len(candidates)} candidate(s) created by {_TOGETHER} processes at one instant")


def _search(config: Path, storage: str, tracking: str, workdir: Path, fault: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for key in ("MLFLOW_TRACKING_URI", "PRUNETUNA_FAULT"):
        env.pop(key, None)
    if fault:
        env["PRUNETUNA_FAULT"] = fault
    command = [sys.executable, "-m", "prunetuna", "search", str(config), "--storage", storage]
    command += ["--tracking-uri", tracking, "--workdir", str(workdir), "--threads", "1"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _timed_lines(process: subprocess.Popen) -> tuple[threading.Thread, list[tuple[float, str]]]:
    """A thread reading the process's output as it comes: (time read, line)."""
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append((time.time(), line))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, lines


def test_workers_go_on_without_a_creator_killed_before_it_published_the_parent(tmp_path: Path) -> None:
    if not INITDB:
        pytest.skip(POSTGRES_MISSING)
    name, n_trials = "orphaned", 3
    config = write_config(tmp_path, tiny_config(name, search={"n_trials": n_trials, "heartbeat": 2}))
    with throwaway_postgres() as storage, services.mlflow_server(tmp_path / "mlflow") as tracking:
        creator = _search(config, storage, tracking, tmp_path / "creator", fault="parent")
        out, _ = creator.communicate(timeout=600)
        assert creator.returncode == -signal.SIGKILL, out[-3000:]
        study = optuna.load_study(study_name=name, storage=storage)
        assert "mlflow_parent_run_id" not in study.user_attrs
        client = MlflowClient(tracking_uri=tracking)
        experiment = client.get_experiment_by_name(name).experiment_id
        assert client.search_runs([experiment]) == []  # killed before any parent run

        launched = time.time()
        workers = [_search(config, storage, tracking, tmp_path / f"w{i}") for i in range(3)]
        readers = [_timed_lines(worker) for worker in workers]
        try:
            for worker in workers:
                worker.wait(timeout=OLD_WAIT_S - 60)  # all of them within 540 s: a 600 s wait would time out
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        for thread, _ in readers:
            thread.join(timeout=30)
        seconds = time.time() - launched
        outputs = ["".join(line for _, line in lines) for _, lines in readers]
        began = [min(t for t, line in lines if "waiting for the worker that created" in line) for _, lines in readers]
        assert [w.returncode for w in workers] == [0, 0, 0], [o[-3000:] for o in outputs]
        assert all("waiting for the worker that created the study" in o for o in outputs)

        assert study_violations(storage, tracking, name, n_trials) == []  # one parent, every trial run its child
        runs = client.search_runs([experiment], max_results=1000)
        parents = [r for r in runs if r.data.tags.get("prunetuna.role") == "study"]
        superseded = [r for r in runs if r.data.tags.get("prunetuna.role") == "study-superseded"]
        trial_runs = [r for r in runs if r.data.tags.get("prunetuna.role") == "trial"]
        assert len(parents) == 1 and trial_runs
        parent = parents[0]
        assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trial_runs)
        assert all(r.data.tags["prunetuna.superseded_by"] == parent.info.run_id for r in superseded)
        assert parent.info.status == "FINISHED" and parent.data.params["seed"] == "0"
        assert optuna.load_study(study_name=name, storage=storage).user_attrs["mlflow_parent_run_id"] == (
            parent.info.run_id
        )
        # The workers gave up on the creator after its silence (PARENT_SILENCE_S, 30 s), not after the old 600 s: the
        # parent run (the earliest candidate) was started that long after the first of them began to wait.
        waited = parent.info.start_time / 1000 - min(began)
        assert PARENT_SILENCE_S - 1 <= waited < PARENT_SILENCE_S + 60, waited
        print(
            f"parent started {waited:.0f} s after the first worker began to wait ({min(began) - launched:.0f} s after "
            f"launch); {len(superseded)} superseded; all done in {seconds:.0f} s"
        )
