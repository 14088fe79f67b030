"""Bring the MLflow runs in line with the study: run by every ``prunetuna search`` at its start (every
worker), while it waits, and at its end.

Optuna's trial states are the truth. A finished trial (COMPLETE or PRUNED) whose run is not
FINISHED, lacks a metric, a param or its ``model/`` files gets them from the trial's final record in
the work dir (:mod:`._durable`) and is ended FINISHED; in a shared study a finished trial's data is in the
tracking store before Optuna is told, so any worker ends its run from the shared stores alone (its metrics
from Optuna's user attributes), whichever machine ran it; a failed trial's run still RUNNING is ended
FAILED; a run no trial claims (its process was killed between creating it and telling Optuna) is
ended FAILED, or deleted when its trial has another run: one run per trial number. A trial run made under a
parent run that lost the election (store/_parent_run.py) is moved under the elected one. A COMPLETE trial whose run is
tagged ``prunetuna.weights`` (``search.keep_weights: front`` removed its weights: :mod:`._weights`) needs no
``model/`` files and gets none back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import optuna
from mlflow.entities import Metric, Param, Run, RunTag
from optuna.trial import FrozenTrial, TrialState

from prunetuna.store._durable import FinalRecord, TrialStore
from prunetuna.store._outage import TrackingAway
from prunetuna.store._records import (
    Role,
    RunStatus,
    StudyRecord,
    Tag,
    TrialEnd,
    TrialRecord,
    WeightsMark,
    set_study_fields,
)
from prunetuna.store._storage import describe_error
from prunetuna.store._tracking import MANIFEST_FILE, WEIGHTS_FILE, StudyTracker

__all__ = ["Reconciled", "close_finished_parent", "reconcile", "trial_runs"]

_log = logging.getLogger("prunetuna")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
FOREIGN_GRACE_S = 120.0  # a trial finished this recently by another machine's worker: its writer may still be writing
INTERRUPTED = "interrupted: its process stopped (killed); the trial was enqueued again"
ORPHAN = "interrupted: its process was killed before Optuna recorded this run"


@dataclass
class Reconciled:
    """What one pass repaired (trial numbers)."""

    repaired: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    orphans: int = 0
    reparented: int = 0  # trial runs moved from a superseded parent run to the elected one
    weights_elsewhere: list[int] = field(default_factory=list)  # finished elsewhere, its weights not in this work dir


def trial_runs(tracker: StudyTracker) -> list[Run]:
    """Every active child run of the study's experiment, in as few requests as MLflow allows."""
    runs: list[Run] = []
    token = None
    while True:
        page = tracker.outage.call(
            tracker.client.search_runs,
            [tracker.experiment_id],
            filter_string="tags.`prunetuna.role` = 'trial'",
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def reconcile(study: optuna.Study, tracker: StudyTracker, store: TrialStore) -> Reconciled | None:
    """One pass; a store that is away is reported (by its Outage) and left to the next start."""
    if tracker.experiment_id is None:
        return None
    try:
        return _reconcile(study, tracker, store)
    except TrackingAway:
        return None
    except Exception as exc:  # noqa: BLE001 - never stops a search: the next start tries again
        _log.warning(
            "prunetuna: could not check the MLflow runs against the study (%s); the next start tries again",
            describe_error(exc, tracker.workspace.tracking_uri, tracker.workspace.storage_url),
        )
        return None


def _reconcile(study: optuna.Study, tracker: StudyTracker, store: TrialStore) -> Reconciled:
    done = Reconciled()
    trials = study.get_trials(deepcopy=False)
    runs = trial_runs(tracker)
    by_id = {run.info.run_id: run for run in runs}
    records = [TrialRecord.of(t) for t in trials]
    claimed = {r.mlflow_run_id: t.number for t, r in zip(trials, records) if r.mlflow_run_id is not None}
    done.reparented = _reparent(study, tracker, runs)
    unclaimed = [run for run in runs if run.info.run_id not in claimed]
    if unclaimed:
        # Judged on the trials as read after the runs were listed: a trial records its run's id only once the run
        # exists, so an earlier read would take a run just started (its id not yet written) for an orphan, or, for
        # a heartbeat retry still holding the stale trial's run id, for a duplicate to delete.
        fresh = study.get_trials(deepcopy=False)
        owned = {TrialRecord.of(t).mlflow_run_id for t in fresh}
        for run in unclaimed:
            if run.info.run_id not in owned:
                done.orphans += _settle_orphan(run, fresh, tracker)
    for trial, record in zip(trials, records):
        run = by_id.get(str(record.mlflow_run_id))
        if run is None:
            continue  # no run, or one in another tracking store
        if trial.state in FINISHED:
            _check_finished(trial, run, tracker, store, done)
        elif trial.state == TrialState.FAIL and run.info.status == RunStatus.RUNNING.value:
            reason = record.fail_reason or INTERRUPTED
            tracker.outage.call(
                tracker.client.log_batch,
                run.info.run_id,
                tags=[RunTag(Tag.STATE, TrialEnd.FAIL.value), RunTag(Tag.FAIL_REASON, reason)],
            )
            tracker.outage.call(tracker.client.set_terminated, run.info.run_id, status=RunStatus.FAILED.value)
            done.failed.append(trial.number)
    if done.weights_elsewhere:  # only in a study that is not shared (docs/guides/scaling-out.md, "Limits")
        _log.warning(
            "prunetuna: trials %s finished in another work dir and their MLflow runs lack model/ (a SQLite study "
            "with a local tracking store uploads after the tell); a start with that work dir writes them",
            done.weights_elsewhere[:10],
        )
    return done


def _reparent(study: optuna.Study, tracker: StudyTracker, runs: list[Run]) -> int:
    """Trial runs made under a parent run that lost the election (store/_parent_run.py) become children of the
    elected one; a superseded run left RUNNING (marked so by a worker that joined it as it lost) is ended."""
    kept = StudyRecord.of(study.user_attrs).mlflow_parent_run_id
    parent = tracker.resolve_parent(kept)
    if parent is None:
        return 0
    if kept is not None and kept != parent:
        set_study_fields(study, mlflow_parent_run_id=parent)  # a worker published a run that lost since
    moved = 0
    for run in runs:
        if run.data.tags.get(Tag.PARENT) != parent:
            tracker.outage.call(tracker.client.set_tag, run.info.run_id, Tag.PARENT, parent)
            moved += 1
    left = tracker.outage.call(
        tracker.client.search_runs,
        [tracker.experiment_id],
        filter_string=f"tags.`{Tag.ROLE}` = '{Role.SUPERSEDED.value}' and attributes.status = 'RUNNING'",
    )
    for run in left:
        tracker.outage.call(tracker.client.set_terminated, run.info.run_id, status=RunStatus.KILLED.value)
    return moved


def _settle_orphan(run: Run, trials: list[FrozenTrial], tracker: StudyTracker) -> int:
    number = int(run.data.tags.get(Tag.TRIAL_NUMBER, -1))
    trial = trials[number] if 0 <= number < len(trials) else None
    claimed = trial is not None and TrialRecord.of(trial).mlflow_run_id is not None
    if trial is not None and trial.state == TrialState.RUNNING and not claimed:
        return 0  # its worker is between creating it and telling Optuna, right now
    if claimed:
        tracker.outage.call(tracker.client.delete_run, run.info.run_id)  # the trial's own run is another one
        return 1
    if run.info.status != RunStatus.RUNNING.value:
        return 0
    tracker.outage.call(
        tracker.client.log_batch,
        run.info.run_id,
        tags=[RunTag(Tag.STATE, TrialEnd.FAIL.value), RunTag(Tag.FAIL_REASON, ORPHAN)],
    )
    tracker.outage.call(tracker.client.set_terminated, run.info.run_id, status=RunStatus.FAILED.value)
    return 1


def _check_finished(trial: FrozenTrial, run: Run, tracker: StudyTracker, store: TrialStore, done: Reconciled) -> None:
    run_id = run.info.run_id
    if store.is_synced(trial.number, run_id):
        return
    record = store.load(trial.number)
    if record is not None and record.run_id != run_id:
        record = None
    if record is not None and record.owner_alive():
        return  # another worker on this machine ran it; its writer is still writing
    metrics = record.metrics if record is not None else TrialRecord.of(trial).metrics
    landed = all(k in run.data.metrics for k in metrics) and run.data.tags.get(Tag.STATE) == trial.state.name
    complete = run.info.status == RunStatus.FINISHED.value and landed
    if record is not None:
        complete = (
            complete
            and all(k in run.data.params for k in record.params)
            and (not record.epochs or "val_accuracy" in run.data.metrics)
        )
    if record is None:  # finished by a worker elsewhere (another machine, or a work dir since lost)
        if complete:
            return
        # A shared study's trial is acknowledged once its data landed: only the run's end can be missing, and any
        # worker ends it. Otherwise (a study shared by accident: its writer may still be writing) wait a while.
        finished_at = trial.datetime_complete.timestamp() if trial.datetime_complete else 0.0
        acknowledged = landed and (not _needs_model(trial, run) or _has_model(tracker, run_id))
        if not acknowledged and time.time() - finished_at < FOREIGN_GRACE_S:
            return
    elif complete and (not _needs_model(trial, run) or _has_model(tracker, run_id)):
        store.mark_synced(trial.number, run_id)  # all there (its writer died after the last write): left as it is
        return
    _repair(trial, run, tracker, store, record, metrics, done)


def _needs_model(trial: FrozenTrial, run: Run) -> bool:
    """A COMPLETE trial's run holds ``model/``, unless ``search.keep_weights: front`` removed it (a tagged run)."""
    marks = {mark.value for mark in WeightsMark}
    return trial.state == TrialState.COMPLETE and run.data.tags.get(Tag.WEIGHTS) not in marks


def _model_files(tracker: StudyTracker, run_id: str) -> set[str]:
    return {f.path.rsplit("/", 1)[-1] for f in tracker.outage.call(tracker.client.list_artifacts, run_id, "model")}


def _has_model(tracker: StudyTracker, run_id: str) -> bool:
    return {WEIGHTS_FILE, MANIFEST_FILE} <= _model_files(tracker, run_id)


def _repair(
    trial: FrozenTrial,
    run: Run,
    tracker: StudyTracker,
    store: TrialStore,
    record: FinalRecord | None,
    metrics: dict[str, float],
    done: Reconciled,
) -> None:
    """Write what the run lacks, then end it FINISHED; the record is marked synced once all of it landed."""
    run_id, call, client = run.info.run_id, tracker.outage.call, tracker.client
    stamp = int(time.time() * 1000)
    tags = {Tag.STATE: trial.state.name, **(record.tags if record is not None else {})}
    params = {k: v for k, v in (record.params if record is not None else {}).items() if k not in run.data.params}
    call(
        client.log_batch,
        run_id,
        metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items() if k not in run.data.metrics],
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in tags.items()],
    )
    if record is not None and record.epochs:
        logged = {m.step for m in call(client.get_metric_history, run_id, "val_accuracy")}
        missing = [
            Metric("val_accuracy", float(a), stamp, step)
            for step, a in enumerate(record.epochs, 1)
            if step not in logged
        ]
        if missing:
            call(client.log_batch, run_id, metrics=missing)
    if _needs_model(trial, run):
        present = _model_files(tracker, run_id)
        wanted = [name for name in (WEIGHTS_FILE, MANIFEST_FILE) if name not in present]
        if wanted and (record is None or not record.has_model):
            done.weights_elsewhere.append(trial.number)
        elif wanted:
            for name in wanted:
                call(client.log_artifact, run_id, str(store.model_dir(trial.number) / name), "model")
    call(client.set_terminated, run_id, status=RunStatus.FINISHED.value)
    if record is not None:
        store.mark_synced(trial.number, run_id)
    done.repaired.append(trial.number)


def close_finished_parent(study: optuna.Study, tracker: StudyTracker, draw_plots: Callable[[], object]) -> None:
    """A complete study whose parent run a killed process left RUNNING: its plots drawn again, the run ended
    FINISHED."""
    if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        return  # a worker is still at it, and ends the parent itself
    try:
        parent = tracker.find_parent(StudyRecord.of(study.user_attrs).mlflow_parent_run_id)
        if parent is None or tracker.outage.call(tracker.client.get_run, parent).info.status != RunStatus.RUNNING.value:
            return
        draw_plots()
        tracker.outage.call(tracker.client.set_terminated, parent, status=RunStatus.FINISHED.value)
    except TrackingAway:
        return
    except Exception as exc:  # noqa: BLE001 - the study is complete; the next start tries again
        _log.warning(
            "prunetuna: could not end the study's parent run (%s); the next start tries again",
            describe_error(exc, tracker.workspace.tracking_uri, tracker.workspace.storage_url),
        )
