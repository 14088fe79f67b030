"""The Optuna study: opened (or created) once per process, checked against the config, and kept clean
of trials that a killed process left RUNNING."""

from __future__ import annotations

import time

import optuna
from optuna.trial import Trial, TrialState

from prunetuna.config import ExperimentConfig
from prunetuna.errors import UserError
from prunetuna.search._early_stopping import make_pruner
from prunetuna.store import StudyRecord, TrialRecord, enqueue_attrs, set_study_fields, write_stored_trial

__all__ = [
    "FINISHED_STATES",
    "check_existing",
    "count_finished",
    "enqueue_again",
    "NeverStarted",
    "mark_started",
    "open_study",
    "retry_later",
]

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def check_existing(
    storage: optuna.storages.BaseStorage, config: ExperimentConfig, directions: list[str]
) -> dict[str, object]:
    """An existing study must score like the config; anything else would mix incomparable trials.

    Returns the existing study's user attributes (empty for a new study).
    """
    try:
        study_id = storage.get_study_id_from_name(config.name)
    except KeyError:
        return {}
    stored = [d.name.lower() for d in storage.get_study_directions(study_id)]
    attrs = storage.get_study_user_attrs(study_id)
    record = StudyRecord.of(attrs)
    # A worker that created the study a moment ago may not have written its attributes yet: compare what is there.
    objectives = list(record.objectives) if "objectives" in attrs else None
    mode = record.mode if "mode" in attrs else None
    if (
        stored != directions
        or (objectives is not None and objectives != list(config.objectives))
        or (mode is not None and mode != config.mode)
    ):
        raise UserError(
            f"objectives: study {config.name!r} already exists with objectives {objectives or stored} "
            f"({mode or 'mode unknown'}), "
            f"the config asks for {config.objectives} ({config.mode}); change 'name' to start a new study"
        )
    if "scale" in attrs and record.scale != config.pruning.scale:  # the same parameter names would mean other ratios
        raise UserError(
            f"pruning.scale: study {config.name!r} was searched with scale {record.scale!r}, the config asks for "
            f"{config.pruning.scale!r}; set it back, or change 'name' to start a new study"
        )
    return attrs


def open_study(
    storage: optuna.storages.BaseStorage, config: ExperimentConfig, directions: list[str]
) -> tuple[optuna.Study, bool]:
    """The study, and whether this process created it: exactly one of the workers starting together did."""
    pruner = make_pruner(config.search.pruner, config.finetune.epochs)
    try:
        study = optuna.create_study(storage=storage, study_name=config.name, directions=directions, pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=config.name, storage=storage, pruner=pruner), False
    set_study_fields(study, created_at=time.time())
    return study, True


def mark_started(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Inside Optuna's ``ask`` (the sampler's ``before_trial``): the trial's first heartbeat, recorded now, on the
    database's clock, rather than by Optuna's heartbeat thread once the objective starts (a process killed before
    that thread's first beat left a RUNNING trial that Optuna never finds stale), then the record that says it beat
    (``heartbeat_of``)."""
    storage = study._storage
    interval = getattr(storage, "get_heartbeat_interval", None)  # RDBStorage's heartbeat (Optuna's BaseHeartbeat)
    if interval is not None and interval() is not None:
        storage.record_heartbeat(trial._trial_id)
    write_stored_trial(storage, trial._trial_id, heartbeat_of=trial.number)


class NeverStarted:
    """The RUNNING trials that never beat: their process was killed inside Optuna's ``ask`` before
    :func:`mark_started`, so Optuna never finds them stale. One seen without ``heartbeat_of`` (its own number: a
    retry copies the stale trial's attributes) for ``grace_s`` by this process's own clock (trials' start times are
    the clocks of the machines that asked them) is failed with a reason, and enqueued again when it carried
    parameters (a retry's, a baseline's)."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.seen: dict[int, float] = {}  # trial id -> when this process first saw it RUNNING without a beat

    def fail(self, study: optuna.Study) -> None:
        now, seen = time.monotonic(), {}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if TrialRecord.of(trial).heartbeat_of == trial.number:
                continue
            seen[trial._trial_id] = first = self.seen.get(trial._trial_id, now)
            if now - first < self.grace_s:
                continue
            try:
                write_stored_trial(study._storage, trial._trial_id, fail_reason=NEVER_STARTED_REASON)
                study.tell(trial.number, state=TrialState.FAIL)
            except Exception:  # noqa: BLE001, S112 - another worker failed it first, and enqueued it if it had to
                continue
            if _carries_parameters(trial):
                enqueue_again(study, trial)
        self.seen = seen


NEVER_STARTED_REASON = "its process was killed before the trial started (inside Optuna's ask, before any heartbeat)"


def _carries_parameters(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial killed in its ask has no sampled parameters; an enqueued one (a retry, a baseline) has its fixed
    parameters or its origin's vector, which must run."""
    return bool(trial.params or trial.system_attrs.get("fixed_params")) or TrialRecord.of(trial).origin != "sampler"


def enqueue_again(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Run the trial's parameters again, as the same origin, in a later trial."""
    record = TrialRecord.of(trial)
    preset: dict[str, object] = {"sparsity": record.sparsity} if record.origin != "sampler" else {}  # a baseline's
    if record.candidates:  # its params were chosen among these draws (search.screening.candidates): not drawn again
        preset["candidates"] = record.candidates
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}  # killed in its ask: not suggested yet
    study.enqueue_trial(params, user_attrs=enqueue_attrs(origin=record.origin, retry_of=trial.number, **preset))


def retry_later(study: optuna.Study, trial: Trial | None) -> None:
    """Ctrl-C fails the running trial; enqueue its parameters so that the next run tries it again."""
    if trial is None:
        return
    frozen = study.get_trials(deepcopy=False)[trial.number]
    if frozen.state == TrialState.FAIL and TrialRecord.of(frozen).fail_reason is None:
        enqueue_again(study, frozen)
