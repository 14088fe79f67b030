"""Choose a finished trial and rebuild its pruned, fine-tuned model. :func:`rebuild_model` is the one rebuild
path: ``export`` (from the study and its MLflow run), ``load_pruned`` (from a study or a ``pt`` file) and the
Model Registry all rebuild through it."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Collection

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from prunetuna.config import ExperimentConfig
from prunetuna.errors import UserError
from prunetuna.spaces import PruningSpace, SparsityVector
from prunetuna.store import StudyRecord, StudyTracker, TrialRecord, Workspace, mask_url, weights_removed
from prunetuna.workload import Workload, load_workload

__all__ = ["RebuiltTrial", "rebuild_model", "rebuild_trial", "removed_weights", "select_trial"]


def _cost_of(study: optuna.Study) -> str:
    costs = StudyRecord.of(study.user_attrs).costs
    return costs[0] if costs else "flops"


def select_trial(
    study: optuna.Study,
    *,
    number: int | None = None,
    max_flops: float | None = None,
    max_drop: float | None = None,
    removed: Collection[str] = (),
) -> FrozenTrial:
    """``--trial N``, or the best feasible finished trial within ``--max-flops`` (ratio) and ``--max-drop``
    (fraction); neither one whose run is in ``removed`` (its weights removed by ``search.keep_weights: front``)."""
    trials = study.get_trials(deepcopy=False)
    if number is not None:
        if not 0 <= number < len(trials):
            raise UserError(f"--trial {number}: study {study.study_name!r} has trials 0..{len(trials) - 1}")
        trial = trials[number]
        if trial.state != TrialState.COMPLETE or not TrialRecord.of(trial).has_metrics:
            done = [t.number for t in trials if t.state == TrialState.COMPLETE][:10]
            raise UserError(
                f"--trial {number}: the trial is {trial.state.name}, not COMPLETE; finished trials include {done}"
            )
        if TrialRecord.of(trial).mlflow_run_id in removed:
            front = [t.number for t in study.best_trials][:10]
            raise UserError(
                f"--trial {number}: its weights were removed when it fell off the study's front (search.keep_weights: "
                f"front kept only the front's weights); choose a trial on the front (--best) or one of {front}"
            )
        return trial
    records = {
        t.number: TrialRecord.of(t)
        for t in trials
        if t.state == TrialState.COMPLETE and TrialRecord.of(t).mlflow_run_id not in removed
    }
    done = [
        t for t in trials if t.number in records and records[t.number].has_metrics and records[t.number].is_feasible
    ]
    if not done:
        raise UserError(
            f"--best: study {study.study_name!r} has no finished feasible trial yet; run 'prunetuna search' first"
        )
    dense = StudyRecord.of(study.user_attrs).dense
    floor = dense.get("accuracy", 0.0) - max_drop if max_drop is not None else None

    def shortfall(trial: FrozenTrial) -> float:
        metrics = records[trial.number].metrics
        over = max(0.0, metrics.get("flops_ratio", 1.0) - max_flops) if max_flops is not None else 0.0
        under = max(0.0, floor - metrics["accuracy"]) if floor is not None else 0.0
        return over + under

    eligible = [t for t in done if shortfall(t) == 0.0]
    if not eligible:
        closest = min(done, key=shortfall)
        metrics = records[closest.number].metrics
        bounds = " and ".join(
            b
            for b in (
                f"flops ratio <= {max_flops:g}" if max_flops is not None else "",
                f"accuracy drop <= {max_drop:g}" if max_drop is not None else "",
            )
            if b
        )
        raise UserError(
            f"--best: no finished trial has {bounds}; the closest is trial {closest.number} "
            f"(flops ratio {metrics.get('flops_ratio', float('nan')):.3f}, accuracy {metrics['accuracy']:.4f}, dense "
            f"{dense.get('accuracy', float('nan')):.4f})"
        )
    if max_flops is None and max_drop is not None:
        cost = f"{_cost_of(study)}_ratio"
        return min(
            eligible, key=lambda t: (records[t.number].metrics.get(cost, 1.0), -records[t.number].metrics["accuracy"])
        )
    return max(
        eligible,
        key=lambda t: (records[t.number].metrics["accuracy"], -records[t.number].metrics.get("flops_ratio", 1.0)),
    )


@dataclass
class RebuiltTrial:
    """A trial's pruned model with its fine-tuned weights, and what it was built from."""

    trial: FrozenTrial
    model: nn.Module
    workload: Workload
    sparsity: dict[str, float]
    metrics: dict[str, float]  # the search's, or the final fine-tune's
    weights_run_id: str | None = None  # the MLflow run the weights came from


def rebuild_model(
    config: ExperimentConfig,
    dense: nn.Module,
    example: torch.Tensor,
    sparsity: SparsityVector,
    weights: dict[str, torch.Tensor],
    what: str,
) -> nn.Module:
    """The config's ``dense`` model pruned with ``sparsity`` and loaded with the fine-tuned ``weights``, in eval mode.

    The channel counts depend only on the vector (the space is built without its pre-flight: the vector names
    what the search kept), so no dense baseline is needed; every weight comes from ``weights``. ``what`` names
    the source in errors (``--trial 3``, a file).
    """
    space = PruningSpace.from_config(config.pruning, dense, example, label=what, check=False)
    try:
        model = space.finalize(space.apply(sparsity, structure_only=True))
    except ValueError as exc:
        raise UserError(
            f"{what}: its sparsity vector does not fit this config's search space ({exc}); "
            "use the config the study was searched with (same model and pruning section)"
        ) from None
    try:
        model.load_state_dict(_with_metadata(weights, model), strict=True)
    except RuntimeError as exc:
        raise UserError(
            f"{what}: the logged weights do not fit the rebuilt model ({' '.join(str(exc).split())[:200]})"
        ) from None
    return model.eval()


def _with_metadata(weights: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``weights`` with the state-dict metadata (each module's ``version``) of ``model`` where they carry none.

    A logged state dict can lose its ``_metadata`` on the way (a plain ``dict`` copy, a store); modules whose loader
    reads their version (torchvision's MNASNet refuses ``None``) then fail to load. The rebuilt model is built by the
    same code as the one that was saved, so its own metadata is the saved one.
    """
    if getattr(weights, "_metadata", None) is not None:
        return weights
    restored = OrderedDict(weights)
    restored._metadata = model.state_dict()._metadata  # type: ignore[attr-defined]
    return restored


def removed_weights(config: ExperimentConfig, workspace: Workspace) -> set[str]:
    """The runs whose weights ``search.keep_weights: front`` removed (``select_trial``'s ``removed``)."""
    tracker = StudyTracker(workspace, config.name)
    tracker.connect(create=False)
    return weights_removed(tracker)


def rebuild_trial(
    config: ExperimentConfig, workspace: Workspace, trial: FrozenTrial, *, finetuned: bool = False
) -> RebuiltTrial:
    """The trial's model: the config's workload pruned with its vector, loaded with the weights its MLflow run
    logged; ``finetuned``: those of its latest finished ``prunetuna finetune`` run, with that run's metrics."""
    workload = load_workload(config)
    record = TrialRecord.of(trial)
    run_id = record.mlflow_run_id
    tracker = StudyTracker(workspace, config.name)
    metrics = record.metrics
    if finetuned:
        from prunetuna.export._finetuned import finished_finetune

        tracker.connect(create=False)
        done = finished_finetune(config, tracker, trial.number, run_id)
        run_id, metrics = done.run_id, done.metrics
    try:
        weights = tracker.download_weights(run_id)
    except Exception as exc:  # noqa: BLE001 - a missing artifact is reported as bad input
        raise UserError(
            f"--trial {trial.number}: its weights (MLflow run {run_id}, artifact model/state_dict.pt) cannot be read "
            "from "
            f"{mask_url(tracker.workspace.tracking_uri)} ({exc.__class__.__name__}); pass the study's --tracking-uri"
        ) from None
    source = config.model.target or config.model.builtin or "?"
    model = rebuild_model(
        config, workload.model, workload.example, record.sparsity, weights, f"--trial {trial.number} (model {source})"
    )
    return RebuiltTrial(trial, model, workload, record.sparsity, metrics, run_id)
