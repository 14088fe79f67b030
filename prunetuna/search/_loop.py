"""The study: validate everything, then ask Optuna for candidates until the study holds ``n_trials`` finished trials."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Callable

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState
from torch import nn

from prunetuna.baseline import DenseBaseline, prepare_baseline
from prunetuna.config import ExperimentConfig, config_section
from prunetuna.errors import UserError
from prunetuna.objectives import OBJECTIVES, fine_tune, measure_costs, objective_values
from prunetuna.search._samplers import make_sampler
from prunetuna.search._stores import Workspace, mask_url, open_storage
from prunetuna.search._tracking import StudyTracker
from prunetuna.spaces import PruningSpace
from prunetuna.workload import Workload, load_workload

__all__ = ["FINISHED_STATES", "SearchOutcome", "SearchStopped", "count_finished", "TrialRecord", "TrialRunner", "prepare_space", "run_search"]

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class TrialRecord:
    """What one finished trial reports to the progress display."""

    number: int
    state: str
    origin: str
    metrics: dict[str, float]
    seconds: float
    reason: str | None = None


@dataclass
class SearchOutcome:
    study_name: str
    finished: int
    target: int
    ran: int
    failed: int
    dense: dict[str, float]
    records: list[TrialRecord] = field(default_factory=list)


class SearchStopped(Exception):
    """The study kept failing; the message says why and how to go on."""


def prepare_space(config: ExperimentConfig, workload: Workload) -> PruningSpace:
    """The search space of the config's model; a model with nothing prunable is bad input."""
    space = PruningSpace.from_model(
        workload.model,
        workload.example,
        max_sparsity=config.pruning.max_sparsity,
        step=config.pruning.step,
        importance=config.pruning.importance,
        ignore=config.pruning.ignore,
    )
    if not space.dimensions:
        raise UserError(
            "model: nothing to prune (no convolution or linear layer with 2+ output channels outside "
            f"the output layer and pruning.ignore {list(config.pruning.ignore)}); check the model or pruning.ignore"
        )
    if config.pruning.max_sparsity == 0:
        raise UserError("pruning.max_sparsity: 0 leaves nothing to search; set it in (0, 1)")
    return space


def trial_settings(config: ExperimentConfig) -> dict[str, object]:
    """The pruning and fine-tune settings every child run carries as params."""
    flat: dict[str, object] = {}
    for section in ("pruning", "finetune"):
        for key, value in config_section(config, section)[section].items():
            flat[f"{section}.{key}"] = value
    return flat


class TrialRunner:
    """One trial: sample, prune a copy, measure costs, fine-tune, log to MLflow, return the objective values."""

    def __init__(
        self,
        config: ExperimentConfig,
        workload: Workload,
        space: PruningSpace,
        dense: DenseBaseline,
        tracker: StudyTracker,
        dense_model: nn.Module,
    ) -> None:
        self.config = config
        self.workload = workload
        self.space = space
        self.dense = dense
        self.tracker = tracker
        self.dense_model = dense_model
        self.settings = trial_settings(config)
        self.cost_names = tuple(dict.fromkeys(["flops", "params", *config.constraints]))

    def __call__(self, trial: Trial) -> list[float]:
        origin = str(trial.user_attrs.get("origin", "sampler"))  # enqueued baselines carry theirs
        vector = self.space.suggest(trial)
        pruned = self.space.apply(self.dense_model, vector, self.workload.example)
        costs = measure_costs(pruned, self.workload.example, self.dense.costs, self.cost_names)
        feasible = True
        for name, budget in self.config.constraints.items():
            excess = costs[f"{name}_ratio"] - budget
            trial.set_constraint(name, excess)
            feasible = feasible and excess <= 0
        if self.config.constraints:
            trial.set_user_attr("feasible", feasible)
        params = {**{f"sparsity.{k}": v for k, v in vector.items()}, **self.settings}
        run_id = self.tracker.start_trial(trial.number, origin, params)
        trial.set_user_attr("mlflow_run_id", run_id)
        state, metrics = "FAIL", dict(costs)
        try:
            result = fine_tune(
                pruned,
                self.workload.datamodule,
                epochs=self.config.finetune.epochs,
                lr=self.config.finetune.lr,
                max_batches=self.config.finetune.max_batches,
                seed=self.config.seed + trial.number,
                on_epoch=lambda epoch, accuracy: self.tracker.log_epoch(run_id, epoch, accuracy),
            )
            metrics = {"accuracy": result.accuracy, **costs}
            trial.set_user_attr("metrics", metrics)
            values = objective_values(self.config.objectives, metrics)
            state = "COMPLETE"
            return values
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{exc.__class__.__name__}: {exc}"[:1000])
            self.tracker.set_tag(run_id, "prunetuna.fail_reason", f"{exc.__class__.__name__}: {exc}"[:1000])
            self.tracker.log_text(run_id, traceback.format_exc(), "traceback.txt")
            raise
        finally:
            self.tracker.end_trial(run_id, state, metrics, {"prunetuna.feasible": str(feasible).lower()})


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def _check_existing(storage: optuna.storages.BaseStorage, config: ExperimentConfig, directions: list[str]) -> None:
    """An existing study must have the config's objectives; anything else would mix incomparable trials."""
    try:
        study_id = storage.get_study_id_from_name(config.name)
    except KeyError:
        return
    stored = [d.name.lower() for d in storage.get_study_directions(study_id)]
    attrs = storage.get_study_user_attrs(study_id)
    objectives = attrs.get("objectives")
    if stored != directions or (objectives is not None and list(objectives) != list(config.objectives)):
        raise UserError(
            f"objectives: study {config.name!r} already exists with objectives {objectives or stored}, "
            f"the config asks for {config.objectives}; change 'name' to start a new study"
        )


def run_search(
    config: ExperimentConfig,
    workspace: Workspace,
    *,
    n_trials: int | None = None,
    on_start: Callable[[SearchOutcome], None] | None = None,
    on_trial: Callable[[TrialRecord, int], None] | None = None,
) -> SearchOutcome:
    """Create or resume the study and run trials until it holds ``n_trials`` finished ones (all workers counted)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    target = n_trials if n_trials is not None else config.search.n_trials
    if target < 1:
        raise UserError(f"--n-trials: must be at least 1, got {target}")
    # Everything that can be wrong with the input is checked before any store is written.
    workload = load_workload(config)
    space = prepare_space(config, workload)
    directions = [OBJECTIVES[name].direction for name in config.objectives]
    storage = open_storage(workspace, create=True)
    _check_existing(storage, config, directions)
    tracker = StudyTracker(workspace, config.name)
    tracker.connect(create=True)

    dense = prepare_baseline(config, workload, workspace.workdir)
    study = optuna.create_study(storage=storage, study_name=config.name, directions=directions, load_if_exists=True)
    study.set_user_attr("objectives", list(config.objectives))
    study.set_user_attr("dense", dense.as_metrics())
    study.set_user_attr("dimensions", space.names)
    study.set_user_attr("method", config.pruning.method)
    finished = count_finished(study)
    outcome = SearchOutcome(config.name, finished, target, 0, 0, dense.as_metrics())
    if on_start is not None:
        on_start(outcome)
    if finished >= target:
        return outcome

    parent_params = {
        "seed": config.seed,
        "objectives": ",".join(config.objectives),
        "constraints": str(dict(config.constraints)),
        "search.sampler": config.search.sampler,
        "storage": mask_url(workspace.storage_url),
        "dense.accuracy": dense.accuracy,
        **{f"dense.{k}": v for k, v in dense.costs.items()},
        **trial_settings(config),
    }
    parent = tracker.start_parent(study.user_attrs.get("mlflow_parent_run_id"), parent_params)
    study.set_user_attr("mlflow_parent_run_id", parent)
    tracker.log_parent_metrics({"dense_accuracy": dense.accuracy, **{f"dense_{k}": v for k, v in dense.costs.items()}})
    # A resumed session reseeds with the trial count, so it continues the search instead of replaying it.
    study.sampler = make_sampler(config.search.sampler, config.seed + len(study.trials))
    runner = TrialRunner(config, workload, space, dense, tracker, workload.model)

    stop_reason: list[str] = []

    def record(study: optuna.Study, trial: FrozenTrial) -> None:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete and trial.datetime_start else 0.0
        item = TrialRecord(
            trial.number, trial.state.name, str(trial.user_attrs.get("origin", "sampler")),
            dict(trial.user_attrs.get("metrics", {})), seconds, trial.user_attrs.get("fail_reason"),
        )
        outcome.records.append(item)
        outcome.ran += 1
        if trial.state == TrialState.FAIL:
            outcome.failed += 1
            if outcome.failed >= config.search.max_failures:
                stop_reason.append(item.reason or "unknown error")
                study.stop()
        outcome.finished = count_finished(study)
        if on_trial is not None:
            on_trial(item, outcome.finished)

    status = "FAILED"
    try:
        while outcome.finished < target and not stop_reason:
            study.optimize(
                runner,
                n_trials=target - outcome.finished,
                callbacks=[optuna.study.MaxTrialsCallback(target, states=FINISHED_STATES), record],
                catch=(Exception,),
                gc_after_trial=False,
            )
            outcome.finished = count_finished(study)
        status = "FINISHED"
    finally:
        tracker.end_parent(status)
    if stop_reason:
        raise SearchStopped(
            f"study {config.name!r} stopped after {outcome.failed} failed trials in this run "
            f"(search.max_failures = {config.search.max_failures}); last: {stop_reason[0]}"
        )
    return outcome
