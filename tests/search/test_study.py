"""search/_study.py: trials a killed process left RUNNING before their first heartbeat (killed inside Optuna's ask)
are failed once this process has seen them so for the grace period, by its own clock, and their parameters run
again; trials that beat are left to Optuna's stale-trial check."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from prunetuna.search import NeverStarted, mark_started
from prunetuna.store import TrialRecord


def _study(tmp_path: Path) -> optuna.Study:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=60)
    return optuna.create_study(storage=storage, study_name="never", directions=["maximize"])


def test_a_trial_that_never_beat_is_failed_after_the_grace_seen_here_and_its_parameters_run_again(
    tmp_path: Path,
) -> None:
    study = _study(tmp_path)
    study.enqueue_trial({"x": 0.25}, user_attrs={"origin": "uniform"})
    queued = study.ask({"x": FloatDistribution(0, 1)})  # taken from the queue, then its process "killed"
    sampled = study.ask()  # a sampled trial killed in its ask: no parameters yet
    beating = study.ask()
    mark_started(study, study.get_trials(deepcopy=False)[beating.number])
    # a clock far behind: its start time says it is new, the process that sees it still counts from now
    never = NeverStarted(grace_s=0.5)
    never.fail(study)
    assert {t.state for t in study.trials} == {TrialState.RUNNING}  # first seen: not failed yet
    time.sleep(0.6)
    never.fail(study)
    trials = study.get_trials(deepcopy=False)
    assert [trials[n].state for n in (queued.number, sampled.number, beating.number)] == [
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.RUNNING,  # it beat: Optuna's stale-trial check owns it
    ]
    assert "killed before the trial started" in TrialRecord.of(trials[queued.number]).fail_reason
    (again,) = [t for t in trials if t.state == TrialState.WAITING]  # only the one that carried parameters
    assert again.system_attrs["fixed_params"] == {"x": 0.25} and TrialRecord.of(again).retry_of == queued.number
    assert TrialRecord.of(again).origin == "uniform"
    NeverStarted(grace_s=0.0).fail(study)  # another worker's later look: nothing failed or enqueued twice
    assert len([t for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING]) == 1


def test_a_retry_carrying_the_stale_trials_heartbeat_mark_is_not_taken_for_one_that_beat(tmp_path: Path) -> None:
    study = _study(tmp_path)
    first = study.ask()
    mark_started(study, study.get_trials(deepcopy=False)[first.number])
    # Optuna's heartbeat retry copies the stale trial's user attributes, heartbeat_of included
    study.enqueue_trial({}, user_attrs={"heartbeat_of": first.number})
    retry = study.ask()
    never = NeverStarted(grace_s=0.0)
    never.fail(study)
    never.fail(study)
    assert study.get_trials(deepcopy=False)[retry.number].state == TrialState.FAIL
    assert study.get_trials(deepcopy=False)[first.number].state == TrialState.RUNNING
