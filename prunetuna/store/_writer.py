"""A trial's outcome, decided once, and the one writer that records it: the trial's user attributes, its
durable local record, and its MLflow run (docs/design.md, "Trials").

The writer has three steps. ``start`` opens the trial's MLflow run and stores what every rebuild and every
repair needs before any training (the applied vector, the run id); ``epoch`` logs a fine-tune epoch;
``finish`` writes the outcome: user attributes and constraints in one pass, the durable record of a
finished trial (before Optuna is told), then the run's metrics, tags, model files and end in the background;
in a shared study the metrics, tags and model files are written before Optuna is told, and ``told`` ends the
run after the tell (docs/guides/scaling-out.md, "Killed?").
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from mlflow.entities import Metric, Param, RunTag

from prunetuna.faults import fault
from prunetuna.sparsity import SparsityVector
from prunetuna.store._durable import FinalRecord, TrialStore
from prunetuna.store._records import BudgetStatus, Tag, TrialEnd, write_trial
from prunetuna.store._tracking import MANIFEST_FILE, MAX_PARAM, WEIGHTS_FILE, StudyTracker

__all__ = ["CANDIDATES_FILE", "TrialModel", "TrialOutcome", "TrialWriter"]

CANDIDATES_FILE = "screening/candidates.json"
"""The trial run's artifact listing the candidates its screening drew (``search.screening.candidates``)."""


@dataclass(frozen=True)
class TrialModel:
    """A COMPLETE trial's fine-tuned weights, manifest and (drawn later) sparsity profile."""

    weights: dict[str, torch.Tensor]
    manifest: dict[str, object]
    profile: Callable[[], object] | None


@dataclass(frozen=True)
class TrialOutcome:
    """What a trial came to, decided before anything is written about its end."""

    number: int
    origin: str
    state: TrialEnd
    vector: SparsityVector = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)  # the MLflow run's params
    budget: BudgetStatus = BudgetStatus.NONE
    constraints: dict[str, float] = field(default_factory=dict)  # Optuna constraint values: feasible when <= 0
    screening: dict[str, Any] | None = None  # the pre-fine-tune point (search/_screening.py)
    candidates: tuple[dict[str, Any], ...] = ()  # search.screening.candidates: every draw, and why it was dropped
    epochs: tuple[float, ...] = ()  # the task score after each fine-tune epoch
    keep_epochs: bool = False  # stored in the trial when an early-stopping rule watched them
    metrics: dict[str, float] = field(default_factory=dict)
    feasible: bool | None = None  # None: the study has no constraint
    below_chance: bool = False  # COMPLETE, a built-in classifier at or below chance (1/classes): its fine-tune diverged
    stop_reason: str | None = None  # PRUNED: why (over budget, screened out, stopped early)
    fail_reason: str | None = None  # FAIL: the error
    traceback: str | None = None
    tracking_away: bool = False  # FAIL because the tracking store stayed away: run again, not the candidate's fault
    values: tuple[float, ...] = ()  # what Optuna is told (COMPLETE)
    model: TrialModel | None = None  # COMPLETE: what a rebuild needs

    @property
    def reason(self) -> str | None:
        return self.fail_reason or self.stop_reason

    def attributes(self) -> dict[str, Any]:
        """The trial's record fields this outcome sets (``write_trial``'s keywords)."""
        if self.tracking_away:
            return {"tracking_away": True}
        values: dict[str, Any] = {}
        if self.metrics and self.state is not TrialEnd.FAIL:  # a failed trial's costs go to its run only
            values["metrics"] = self.metrics
        if self.budget is not BudgetStatus.NONE:
            values["budget"] = self.budget
        if self.screening is not None:
            values["screening"] = self.screening
        if self.candidates:
            values["candidates"] = self.candidates
        if self.keep_epochs:
            values["epoch_accuracy"] = self.epochs
        if self.feasible is not None:
            values["feasible"] = self.feasible
        if self.below_chance:
            values["below_chance"] = True
        if self.stop_reason is not None:
            values["pruned_reason"] = self.stop_reason
        if self.fail_reason is not None:
            values["fail_reason"] = self.fail_reason
        return values

    def tags(self) -> dict[str, str]:
        """The run's final tags."""
        tags = {Tag.STATE: self.state.value}
        if self.budget is not BudgetStatus.NONE:
            tags[Tag.BUDGET] = self.budget.value
        if self.feasible is not None and self.state is TrialEnd.COMPLETE:
            tags[Tag.FEASIBLE] = str(self.feasible).lower()
        if self.below_chance and self.state is TrialEnd.COMPLETE:
            tags[Tag.BELOW_CHANCE] = "true"
        if self.stop_reason is not None:
            tags[Tag.PRUNED_REASON] = self.stop_reason
        if self.fail_reason is not None:
            tags[Tag.FAIL_REASON] = self.fail_reason
        return tags


class TrialWriter:
    """Records trials: ``start`` before the work, ``epoch`` during the fine-tune, ``finish`` once at the end."""

    def __init__(self, tracker: StudyTracker, store: TrialStore) -> None:
        self.tracker, self.store = tracker, store
        self.run_ids: dict[int, str] = {}  # trial number -> its MLflow run, until finished
        self._ends: dict[int, Callable[[], None]] = {}  # trial number -> its run's end, submitted once Optuna is told

    def start(
        self,
        trial: Any,
        number: int,
        origin: str,
        vector: SparsityVector,
        params: dict[str, object],
        *,
        quiet: bool = False,
    ) -> str | None:
        """The trial's MLflow child run, its id and the applied vector kept in the trial (the source of every
        rebuild, and of the repair of a run a killed process left open)."""
        if vector:
            write_trial(trial, sparsity=vector)
        if trial.user_attrs.get("mlflow_run_id") is not None:
            # a heartbeat retry copies the stale trial's attributes, its run id too: cleared before this trial's run
            # exists, so that reconciliation never takes the new run for a duplicate of the trial's (store/_reconcile)
            write_trial(trial, mlflow_run_id=None)
        try:
            run_id = self.tracker.start_trial(number, origin, params)
        except Exception:
            if not quiet:
                raise
            return None  # the trial's own error is the one to report
        write_trial(trial, mlflow_run_id=run_id)
        self.run_ids[number] = run_id
        return run_id

    @staticmethod
    def surplus(trial: Any, reason: str) -> None:
        """A worker's trial beyond ``n_trials``: its reason only, no run (it did no work)."""
        write_trial(trial, fail_reason=reason)

    @staticmethod
    def progress(trial: Any, **values: Any) -> None:
        """Record fields other workers read while the trial runs (its pre-fine-tune screening point)."""
        write_trial(trial, **values)

    def epoch(self, number: int, epoch: int, score: float, named: dict[str, float]) -> None:
        self.tracker.log_epoch(self.run_ids[number], epoch, score, named)

    def finish(self, trial: Any, outcome: TrialOutcome) -> None:
        """The outcome, written once: user attributes and constraints; for a finished trial its durable
        record (before Optuna is told); then its run's metrics, tags, files and end, in the background.

        In a shared study (``Workspace.shared``) a finished trial is acknowledged only once it can be recovered
        from the shared stores alone: its params, final metrics, tags and model files are written to the tracking
        store before this returns (before Optuna is told; :class:`TrackingAway` when the store stays away), and
        its run is ended by :meth:`told`, after the tell."""
        write_trial(trial, **outcome.attributes())
        for key, value in outcome.constraints.items():
            trial.set_constraint(key, value)
        run_id = self.run_ids.pop(outcome.number, None)
        if run_id is None and not outcome.tracking_away:  # it failed before its run was created: one holds the reason
            run_id = self.start(trial, outcome.number, outcome.origin, {}, outcome.params, quiet=True)
            self.run_ids.pop(outcome.number, None)
        if run_id is None:
            return
        if outcome.traceback is not None:
            self.tracker.log_text(run_id, outcome.traceback, "traceback.txt")
        if outcome.candidates:
            self.tracker.log_text(run_id, json.dumps(list(outcome.candidates), indent=1), CANDIDATES_FILE)
        tags = outcome.tags()
        if not outcome.state.finished:
            self.tracker.end_trial(run_id, outcome.state.value, outcome.metrics, tags)
            return
        number, model = outcome.number, outcome.model
        params = {k: str(v) for k, v in outcome.params.items()}
        record = FinalRecord(number, outcome.state.value, run_id, outcome.metrics, tags, params, list(outcome.epochs))
        self.store.write(record, model.weights if model else None, model.manifest if model else None)
        fault("recorded", number)
        model_dir = self.store.model_dir(number) if model is not None else None
        on_written = lambda: self.store.mark_synced(number, run_id)  # noqa: E731
        end = lambda: self.tracker.end_trial(run_id, outcome.state.value, outcome.metrics, tags, on_written)  # noqa: E731
        if not self.tracker.ack_first:
            if model_dir is not None:
                self.tracker.log_trial_model(run_id, model_dir, model.profile)
            end()
            return
        _write_now(self.tracker, run_id, params, outcome.metrics, {Tag.STATE: outcome.state.value, **tags}, model_dir)
        fault("uploaded", number)
        if model is not None and model.profile is not None:
            self.tracker.log_figure(run_id, model.profile)
        self._ends[number] = end

    def told(self, number: int) -> None:
        """Optuna was told that trial ``number`` finished: its run's end, when it waited for the tell."""
        end = self._ends.pop(number, None)
        if end is not None:
            end()


def _write_now(
    tracker: StudyTracker,
    run_id: str,
    params: dict[str, str],
    metrics: dict[str, float],
    tags: dict[str, str],
    model_dir: Path | None,
) -> None:
    """Everything a repair from the shared stores needs, landed when this returns: the run's earlier writes
    (params, epochs), its params again (identical values: MLflow accepts them; they may have been lost with an
    earlier write), final metrics and tags, then the weights and the manifest under ``model/``."""
    tracker.flush()
    stamp = int(time.time() * 1000)
    tracker.outage.call(
        tracker.client.log_batch,
        run_id,
        metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items()],
        params=[Param(k, v[:MAX_PARAM]) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in tags.items()],
    )
    if model_dir is not None:
        for name in (WEIGHTS_FILE, MANIFEST_FILE):
            tracker.outage.call(tracker.client.log_artifact, run_id, str(model_dir / name), "model")
