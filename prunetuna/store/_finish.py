"""How a trial's MLflow run is ended: a finished trial's final record made durable first, then the background writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from prunetuna.store._durable import FinalRecord, TrialStore
from prunetuna.store._tracking import StudyTracker

__all__ = ["RunState", "TrialModel", "finish_run"]


@dataclass
class TrialModel:
    """A COMPLETE trial's fine-tuned weights, manifest and (drawn later) sparsity profile."""

    weights: dict[str, torch.Tensor]
    manifest: dict[str, object]
    profile: Callable[[], object] | None


@dataclass
class RunState:
    """A trial's MLflow run as the trial gets on: ended with these in ``TrialRunner.__call__``."""

    run_id: str | None = None
    state: str = "FAIL"
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)
    epochs: list[float] = field(default_factory=list)
    model: TrialModel | None = None


def finish_run(store: TrialStore, tracker: StudyTracker, number: int, run: RunState) -> None:
    """A finished trial's final record is made durable here, before Optuna is told; its MLflow writes follow
    in the background, and the record is marked synced once they have all landed."""
    run_id = run.run_id
    assert run_id is not None
    on_written = None
    if run.state in ("COMPLETE", "PRUNED"):
        record = FinalRecord(number, run.state, run_id, run.metrics, {"optuna.state": run.state, **run.tags},
                             {k: str(v) for k, v in run.params.items()}, run.epochs)
        model = run.model
        store.write(record, model.weights if model else None, model.manifest if model else None)
        if model is not None:
            tracker.log_trial_model(run_id, store.model_dir(number), model.profile)
        on_written = lambda: store.mark_synced(number, run_id)  # noqa: E731
    tracker.end_trial(run_id, run.state, run.metrics, run.tags, on_written)
