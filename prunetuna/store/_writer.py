"""A trial's outcome, decided once, and the one writer that records it: the trial's user attributes, its
durable local record, and its MLflow run (docs/design.md, "Trials").

The writer has three steps. ``start`` opens the trial's MLflow run and stores what every rebuild and every
repair needs before any training (the applied vector, the run id); ``epoch`` logs a fine-tune epoch;
``finish`` writes the outcome: user attributes and constraints in one pass, the durable record of a
finished trial (before Optuna is told), then the run's metrics, tags, model files and end in the background.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from prunetuna.sparsity import SparsityVector
from prunetuna.store._durable import FinalRecord, TrialStore
from prunetuna.store._keys import Tag, TrialEnd
from prunetuna.store._records import BudgetStatus, write_trial
from prunetuna.store._tracking import StudyTracker

__all__ = ["TrialModel", "TrialOutcome", "TrialWriter"]


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
    epochs: tuple[float, ...] = ()  # the task score after each fine-tune epoch
    keep_epochs: bool = False  # stored in the trial when an early-stopping rule watched them
    metrics: dict[str, float] = field(default_factory=dict)
    feasible: bool | None = None  # None: the study has no constraint
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
        if self.keep_epochs:
            values["epoch_accuracy"] = self.epochs
        if self.feasible is not None:
            values["feasible"] = self.feasible
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
        record (before Optuna is told); then its run's metrics, tags, files and end, in the background."""
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
        on_written = None
        tags = outcome.tags()
        if outcome.state.finished:
            record = FinalRecord(
                outcome.number,
                outcome.state.value,
                run_id,
                outcome.metrics,
                tags,
                {k: str(v) for k, v in outcome.params.items()},
                list(outcome.epochs),
            )
            model = outcome.model
            self.store.write(record, model.weights if model else None, model.manifest if model else None)
            if model is not None:
                self.tracker.log_trial_model(run_id, self.store.model_dir(outcome.number), model.profile)
            number = outcome.number
            on_written = lambda: self.store.mark_synced(number, run_id)  # noqa: E731
        self.tracker.end_trial(run_id, outcome.state.value, outcome.metrics, tags, on_written)
