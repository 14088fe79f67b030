"""The study: validate everything, then ask Optuna for candidates until the study holds ``n_trials`` finished trials."""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import math
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import optuna
import torch
from optuna.trial import FrozenTrial, Trial, TrialState
from torch import nn

from prunetuna.baseline import baseline_key, prepare_baseline
from prunetuna.config import ExperimentConfig, config_section
from prunetuna.device import DeviceError
from prunetuna.errors import UserError
from prunetuna.manifest import study_manifest
from prunetuna.objectives import (
    OBJECTIVES,
    Budget,
    CostContext,
    LatencySettings,
    Scoring,
    evaluate_accuracy,
    fine_tune,
    measure_costs,
    parse_budgets,
    project_onto_budget,
    recalibrate_batchnorm,
    within_budgets,
)
from prunetuna.search._durable import TrialStore
from prunetuna.search._early_stopping import TrialPruningCallback, dominance_decision, epoch_records, make_pruner, optuna_decision
from prunetuna.search._faults import fault
from prunetuna.search._finish import RunState, TrialModel, finish_run
from prunetuna.search._latency_cache import latency_context
from prunetuna.search._outage import TrackingAway
from prunetuna.search._reconcile import close_finished_parent, reconcile
from prunetuna.search._samplers import make_sampler
from prunetuna.search._sensitivity import SensitivityScan, bounds_from_scan, cache_path, scan_grid, scan_sensitivity
from prunetuna.search._stores import Workspace, mask_url, open_storage
from prunetuna.search._tracking import StudyTracker
from prunetuna.spaces import GraphLimits, PruningSpace, preflight
from prunetuna.sparsity import APPLIED_ATTR, as_params, canonical, from_params
from prunetuna.workload import Workload, load_workload

__all__ = ["FINISHED_STATES", "SearchOutcome", "SearchStopped", "TrialPlan", "TrialRecord", "TrialRunner", "count_finished", "prepare_space", "run_search"]

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
        round_to=config.pruning.round_to,
        granularity=config.pruning.granularity,
        groups=config.pruning.groups,
        method=config.pruning.method,
        nm=tuple(config.pruning.nm),
        graph_limits=GraphLimits(seconds=config.pruning.graph_seconds, memory_gb=config.pruning.graph_memory_gb),
    )
    if not space.dimensions:
        raise UserError(
            "model: nothing to prune (no convolution or linear layer with 2+ output channels outside "
            f"the output layer and pruning.ignore {list(config.pruning.ignore)}); check the model or pruning.ignore"
        )
    if config.pruning.max_sparsity == 0:
        raise UserError("pruning.max_sparsity: 0 leaves nothing to search; set it in (0, 1)")
    return preflight(space, workload.model, workload.example, label=f"model {_model_source(config)}")[0]


def _model_source(config: ExperimentConfig) -> str:
    return config.model.target or config.model.builtin or "?"


def trial_settings(config: ExperimentConfig) -> dict[str, object]:
    """The pruning and fine-tune settings every child run carries as params."""
    flat: dict[str, object] = {}
    for section in ("pruning", "finetune"):
        for key, value in config_section(config, section)[section].items():
            flat[f"{section}.{key}"] = value
    return flat


SURPLUS = "surplus: the study already had n_trials trials finished or running when this one started (not run)"


class SurplusTrial(Exception):
    """A worker's trial beyond ``n_trials``: marked FAIL without work, not counted as a failure."""


@dataclass
class TrialPlan:
    """Everything a trial needs that is decided once per study."""

    config: ExperimentConfig
    workload: Workload
    space: PruningSpace
    scoring: Scoring
    budgets: list[Budget]
    context: CostContext
    dense: dict[str, float]
    cost_names: tuple[str, ...]
    batches: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


class TrialRunner:
    """One trial: sample, prune a copy, measure costs (projecting onto the budget), fine-tune, log, score."""

    def __init__(self, plan: TrialPlan, tracker: StudyTracker, store: TrialStore) -> None:
        self.plan = plan
        self.tracker = tracker
        self.store = store
        self.settings = trial_settings(plan.config)
        self.current: Trial | None = None
        self.target: int | None = None
        self.manifest = study_manifest(plan.config)

    def _measure(self, model: nn.Module, names: tuple[str, ...]) -> dict[str, float]:
        return measure_costs(model, self.plan.context, self.plan.dense, names)

    def _candidate(self, trial: Trial) -> tuple[dict[str, float], nn.Module, dict[str, float], str]:
        """The vector to fine-tune, its pruned model and costs, and what the budget did (within/projected/over)."""
        plan = self.plan
        sampled = plan.space.suggest(trial)
        fault("sampled", trial.number)
        pruned = plan.space.apply(plan.workload.model, sampled, plan.workload.example, plan.batches)
        costs = self._measure(pruned, plan.cost_names)
        if not plan.budgets:
            return sampled, pruned, costs, ""
        if within_budgets(plan.budgets, costs):
            return sampled, pruned, costs, "within"
        budget_costs = tuple(dict.fromkeys(b.cost for b in plan.budgets))
        projection = project_onto_budget(
            sampled,
            plan.budgets,
            lambda v: self._measure(plan.space.apply(plan.workload.model, v, plan.workload.example, structure_only=True), budget_costs),
            max_sparsity={d.name: plan.space.high(d) for d in plan.space.dimensions},
            step=plan.space.step,
        )
        trial.set_user_attr("projection_t", projection.t)
        vector = canonical(projection.vector)
        pruned = plan.space.apply(plan.workload.model, vector, plan.workload.example, plan.batches)
        return vector, pruned, self._measure(pruned, plan.cost_names), "projected" if projection.fits else "over"

    def _model(self, number: int, pruned: nn.Module, vector: dict[str, float], metrics: dict[str, float], origin: str) -> TrialModel:
        """Everything needed to rebuild the candidate: its vector, fine-tuned weights and a manifest."""
        weights = self.plan.space.finalize(pruned).state_dict()
        info = {**self.manifest, "trial": number, "origin": origin, "sparsity": vector, "metrics": metrics,
                "input_shape": [1, *self.plan.workload.example.shape[1:]]}
        layers = self.plan.space.names

        def profile():  # noqa: ANN202 - drawn in the tracker's background writer; matplotlib imported there
            from prunetuna.plots import profile_plot

            return profile_plot({f"trial {number}": vector}, layers, f"trial {number}: sparsity per layer")

        return TrialModel(weights, info, profile)

    def _early_stopping(self, trial: Trial, costs: dict[str, float]) -> TrialPruningCallback | None:
        """The per-epoch stop rule the config names, for this candidate (None: train every epoch)."""
        plan = self.plan
        name = plan.config.search.pruner
        if name == "none" or plan.config.finetune.epochs < 2:
            return None
        if name == "dominated":
            metrics = [OBJECTIVES[c].metric for c in plan.scoring.costs]
            records = epoch_records(trial.study.get_trials(deepcopy=False, states=FINISHED_STATES), metrics)
            decide = dominance_decision([costs[m] for m in metrics], records, plan.config.search.min_dominating, plan.config.finetune.epochs)
        else:
            dense_accuracy = plan.dense["accuracy"]
            decide = optuna_decision(trial, lambda accuracy: plan.scoring.intermediate(accuracy, costs, dense_accuracy), name)
        return TrialPruningCallback(decide)

    def _check_not_surplus(self, trial: Trial) -> None:
        """Workers that start trials together could overshoot ``n_trials``; trial numbers are handed out
        atomically, so a trial with ``n_trials`` live or finished trials before it is surplus and stops here."""
        if self.target is None or trial.number < self.target:
            return  # fewer than n_trials trials can be ahead of it
        ahead = trial.study.get_trials(deepcopy=False, states=(*FINISHED_STATES, TrialState.RUNNING))
        if sum(t.number < trial.number for t in ahead) >= self.target:
            trial.set_user_attr("fail_reason", SURPLUS)
            trial.study.stop()
            raise SurplusTrial(SURPLUS)

    def __call__(self, trial: Trial) -> list[float]:
        """Run the trial; whatever fails in it (pruning, measuring, fine-tuning) leaves its reason in the
        trial's user attributes and in its MLflow run, with the traceback as an artifact."""
        self._check_not_surplus(trial)
        self.current = trial
        origin = str(trial.user_attrs.get("origin", "sampler"))  # enqueued baselines carry theirs
        run = RunState()
        try:
            return self._run(trial, origin, run)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            reason = f"{exc.__class__.__name__}: {exc}"[:1000]
            if isinstance(exc, TrackingAway):
                trial.set_user_attr("tracking_away", True)  # not the candidate's fault: run_search stops and enqueues it again
                raise
            trial.set_user_attr("fail_reason", reason)
            if run.run_id is None:  # it failed before its run was created: create one to hold the reason
                params = {**as_params(from_params(trial.params)), **self.settings}
                run.run_id = self._start_run(trial, origin, params, quiet=True)
            if run.run_id is not None:
                self.tracker.set_tag(run.run_id, "prunetuna.fail_reason", reason)
                self.tracker.log_text(run.run_id, traceback.format_exc(), "traceback.txt")
            raise
        finally:
            if run.run_id is not None:
                finish_run(self.store, self.tracker, trial.number, run)

    def _start_run(self, trial: Trial, origin: str, params: dict[str, object], *, quiet: bool = False) -> str | None:
        """The trial's MLflow child run, its id kept in the trial (so an interrupted run can be closed later)."""
        try:
            run_id = self.tracker.start_trial(trial.number, origin, params)
        except Exception:
            if not quiet:
                raise
            return None  # the trial's own error is the one to report
        trial.set_user_attr("mlflow_run_id", run_id)
        return run_id

    def _run(self, trial: Trial, origin: str, run: RunState) -> list[float]:
        plan = self.plan
        vector, pruned, costs, budget = self._candidate(trial)
        trial.set_user_attr(APPLIED_ATTR, vector)  # the one source of every rebuild (prunetuna.sparsity)
        feasible = True
        for item in plan.budgets:
            trial.set_constraint(item.key, item.excess(costs))
            feasible = feasible and item.excess(costs) <= 0
        params = {**as_params(vector), **self.settings}
        run.run_id = self._start_run(trial, origin, params)
        run.params = params
        fault("pruned", trial.number)
        tags = run.tags
        if budget:
            tags["prunetuna.budget"] = budget
        metrics = run.metrics = dict(costs)
        if budget == "over":
            reason = "; ".join(f"{b.key} {b.describe(costs)} > {b.limit:g}" for b in plan.budgets if b.excess(costs) > 0)
            trial.set_user_attr("budget", budget)
            trial.set_user_attr("metrics", metrics)
            run.state = "PRUNED"
            tags["prunetuna.pruned_reason"] = f"over budget even at max_sparsity: {reason}"
            raise optuna.TrialPruned(tags["prunetuna.pruned_reason"])
        if plan.batches:
            recalibrate_batchnorm(pruned, [x for x, _ in plan.batches])
            costs["accuracy_pruned"] = evaluate_accuracy(pruned, plan.workload.datamodule.val_dataloader())
        stopper = self._early_stopping(trial, costs)
        result = fine_tune(
            pruned,
            plan.workload.datamodule,
            epochs=plan.config.finetune.epochs,
            lr=plan.config.finetune.lr,
            max_batches=plan.config.finetune.max_batches,
            seed=plan.config.seed + trial.number,
            on_epoch=lambda epoch, accuracy: self._epoch(trial.number, run, epoch, accuracy),
            callbacks=[stopper] if stopper else (),
        )
        metrics = run.metrics = {"accuracy": result.accuracy, **costs}
        if stopper is not None:
            trial.set_user_attr("epoch_accuracy", result.history)
            if stopper.reason:
                trial.set_user_attr("metrics", metrics)
                trial.set_user_attr("pruned_reason", stopper.reason)
                tags["prunetuna.pruned_reason"] = stopper.reason
                run.state = "PRUNED"
                raise optuna.TrialPruned(stopper.reason)
        if plan.scoring.mode == "scalarized":
            metrics["score"] = plan.scoring.score(metrics)
        excess = plan.scoring.accuracy_excess(result.accuracy, plan.dense["accuracy"])
        if excess is not None:
            trial.set_constraint("accuracy_drop", excess)
            feasible = feasible and excess <= 0
        trial.set_user_attr("metrics", metrics)
        run.model = self._model(trial.number, pruned, vector, metrics, origin)
        if plan.budgets or excess is not None:
            trial.set_user_attr("feasible", feasible)
            tags["prunetuna.feasible"] = str(feasible).lower()
        if budget:
            trial.set_user_attr("budget", budget)
        values = plan.scoring.values(metrics)
        run.state = "COMPLETE"
        return values

    def _epoch(self, number: int, run: RunState, epoch: int, accuracy: float) -> None:
        run.epochs.append(accuracy)
        assert run.run_id is not None
        self.tracker.log_epoch(run.run_id, epoch, accuracy)
        fault("fine_tune", number)


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def _check_existing(storage: optuna.storages.BaseStorage, config: ExperimentConfig, directions: list[str]) -> dict[str, object]:
    """An existing study must score like the config; anything else would mix incomparable trials.

    Returns the existing study's user attributes (empty for a new study).
    """
    try:
        study_id = storage.get_study_id_from_name(config.name)
    except KeyError:
        return {}
    stored = [d.name.lower() for d in storage.get_study_directions(study_id)]
    attrs = storage.get_study_user_attrs(study_id)
    # A worker that created the study a moment ago may not have written its attributes yet: compare what is there.
    objectives, mode = attrs.get("objectives"), attrs.get("mode")
    if (stored != directions or (objectives is not None and list(objectives) != list(config.objectives))
            or (mode is not None and mode != config.mode)):
        raise UserError(
            f"objectives: study {config.name!r} already exists with objectives {objectives or stored} ({mode or 'mode unknown'}), "
            f"the config asks for {config.objectives} ({config.mode}); change 'name' to start a new study"
        )
    return attrs


def _scoring(config: ExperimentConfig) -> Scoring:
    return Scoring(
        mode=config.mode,
        objectives=tuple(config.objectives),
        accuracy_drop=config.tolerance.accuracy_drop if config.tolerance else None,
        weights=tuple((config.scalarize or {}).items()),
    )


def _cost_names(config: ExperimentConfig, budgets: list[Budget]) -> tuple[str, ...]:
    names = ["flops", "params", "size"]
    if config.latency.every_trial or "latency" in config.objectives or any(b.cost == "latency" for b in budgets):
        names.append("latency")
    return tuple(names)


def _latency_settings(config: ExperimentConfig) -> LatencySettings:
    return LatencySettings(**config.latency.model_dump(exclude={"every_trial"}))


def _dense_costs(plan_context: CostContext, model: nn.Module, names: tuple[str, ...]) -> dict[str, float]:
    """Dense costs. Dense latency is measured once per search process, on the machine that measures
    the trials: the same model measured in two processes differed by 9% here, and workers may run on
    different machines, so a ratio is only sound against a reference taken where its trial ran."""
    try:
        return measure_costs(model, plan_context, None, names)
    except DeviceError as exc:  # the agent answered at start but refused the dense model, or stopped
        raise UserError(f"latency.url: {exc}") from None


def _check_reachable(space: PruningSpace, model: nn.Module, context: CostContext, dense: dict[str, float], budgets: list[Budget]) -> None:
    """A budget that even every dimension at max_sparsity misses is bad input, found before any fine-tune."""
    if not budgets:
        return
    names = tuple(dict.fromkeys(b.cost for b in budgets))
    floor = measure_costs(space.apply(model, {d.name: space.high(d) for d in space.dimensions}, context.example, structure_only=True),
                          context, dense, names)
    bounded = any(d.high is not None for d in space.dimensions)
    where = ("at its bound from the sensitivity scan" if bounded else f"at max_sparsity {space.max_sparsity:g}")
    knob = "pruning.bounds_from_sensitivity.max_drop" if bounded else "pruning.max_sparsity"
    for budget in budgets:
        if budget.excess(floor) > 0:
            raise UserError(
                f"constraints.{budget.key}: {budget.limit:g} cannot be met: with every dimension {where} "
                f"the lowest reachable is {budget.describe(floor)}; raise the budget or {knob}"
            )


PARENT_WAIT_S = 600.0  # how long a worker waits for the parent run of a study another worker is preparing
NEVER_STARTED_S = 600.0  # a RUNNING trial this old without an MLflow run never got going (killed inside Optuna's ask)


def _open_study(storage: optuna.storages.BaseStorage, config: ExperimentConfig, directions: list[str]) -> tuple[optuna.Study, bool]:
    """The study, and whether this process created it: exactly one of the workers starting together did."""
    pruner = make_pruner(config.search.pruner, config.finetune.epochs)
    try:
        study = optuna.create_study(storage=storage, study_name=config.name, directions=directions, pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=config.name, storage=storage, pruner=pruner), False
    study.set_user_attr("created_at", time.time())
    return study, True


def _published_parent(study: optuna.Study, on_wait: Callable[[int], None] | None = None) -> str | None:
    """The parent run id the study's creator published; waits while a creator is still preparing the
    study (its warm start, its parent run), so that workers starting together share its run."""
    deadline = time.monotonic() + PARENT_WAIT_S
    told = False
    while True:
        attrs = study.user_attrs
        if "mlflow_parent_run_id" in attrs:
            return str(attrs["mlflow_parent_run_id"])
        created_at = attrs.get("created_at")
        # created_at is written just after the study: a study with no trials and no attribute is that moment
        fresh = (created_at is None and not study.get_trials(deepcopy=False)) or (
            created_at is not None and time.time() - float(created_at) < PARENT_WAIT_S)
        if not fresh or time.monotonic() > deadline:
            return None  # its creator is gone: StudyTracker.start_parent settles it (earliest run wins)
        if on_wait is not None and not told:
            on_wait(0)
            told = True
        time.sleep(0.5)


def _fail_never_started(study: optuna.Study) -> None:
    """A process killed inside Optuna's ask leaves a RUNNING trial that never beat, so Optuna never finds
    it stale; one that old without an MLflow run is failed here (nothing of it ran)."""
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "mlflow_run_id" in trial.user_attrs or trial.datetime_start is None:
            continue
        if (now - trial.datetime_start).total_seconds() > NEVER_STARTED_S:
            with contextlib.suppress(Exception):  # another worker may have failed it first
                study.tell(trial.number, state=TrialState.FAIL)


def _retry_later(study: optuna.Study, trial: Trial | None) -> None:
    """Ctrl-C fails the running trial; enqueue its parameters so that the next run tries it again."""
    if trial is None:
        return
    frozen = study.get_trials(deepcopy=False)[trial.number]
    if frozen.state == TrialState.FAIL and "fail_reason" not in frozen.user_attrs:
        study.enqueue_trial(frozen.params, user_attrs={"origin": frozen.user_attrs.get("origin", "sampler"), "retry_of": frozen.number})


def calibration_batches(workload: Workload, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``count`` training batches: BN recalibration and gradient-based importance."""
    if count == 0:
        return []
    torch.manual_seed(0)
    return [(batch[0], batch[1]) for batch in itertools.islice(workload.datamodule.train_dataloader(), count)]


def cached_scan(config: ExperimentConfig, workload: Workload, space: PruningSpace, batches: list, workdir: Path,
                on_step: Callable[[int, int], None] | None = None) -> SensitivityScan:
    """The sensitivity scan of the dense baseline, computed once and kept in the work dir."""
    grid = scan_grid(space)
    path = cache_path(workdir, baseline_key(config), space, grid)
    if path.is_file():
        data = json.loads(path.read_text())
        return SensitivityScan(data["dense_accuracy"], data["grid"], data["accuracy"])
    scan = scan_sensitivity(space, workload.model, workload.example, batches, workload.datamodule.val_dataloader(), grid, on_step)
    path.write_text(json.dumps(scan.as_dict(), indent=2))
    return scan


def _lowest_fitting(candidate: Callable[[float], dict[str, float]], fits: Callable[[dict[str, float]], bool], high: float) -> dict[str, float] | None:
    """Bisection on a scalar knob in [0, high]: the smallest whose vector fits (None when even ``high`` does not)."""
    if not fits(candidate(high)):
        return None
    low = 0.0
    for _ in range(10):
        middle = (low + high) / 2
        if fits(candidate(middle)):
            high = middle
        else:
            low = middle
    return candidate(high)


def _warm_start(study: optuna.Study, plan: TrialPlan) -> None:
    """Enqueue the uniform and the global-ranking allocations at each level, once per study.

    Levels are the config's ``search.warm_start_levels``, else the ratio budget. They are
    fine-tuned like sampled trials, so the report can state what the search gained over them.
    """
    config, space = plan.config, plan.space
    ratio_budgets = [b for b in plan.budgets if not b.absolute and b.cost != "latency"]
    cost = ratio_budgets[0].cost if ratio_budgets else "flops"
    levels = list(config.search.warm_start_levels) or [b.limit for b in ratio_budgets]
    if not config.search.warm_start or not levels:
        return
    done = {(t.user_attrs.get("origin"), t.user_attrs.get("warm_start_level")) for t in study.get_trials(deepcopy=False)}
    model, example = plan.workload.model, plan.workload.example

    def ratio_of(vector: dict[str, float]) -> float:
        pruned = space.apply(model, vector, example, structure_only=True)
        return measure_costs(pruned, plan.context, plan.dense, (cost,))[f"{cost}_ratio"]

    def step_up(vector: dict[str, float]) -> dict[str, float]:
        """Onto the step grid, rounding up so that the level still holds."""
        return {d.name: min(round(math.ceil(vector[d.name] / space.step - 1e-9) * space.step, 6), space.high(d)) for d in space.dimensions}

    allocations = {
        "uniform": lambda r: step_up(space.uniform(r)),
        "global": lambda r: step_up(space.global_allocation(model, r, example, plan.batches)),
    }
    for level in levels:
        for origin, allocate in allocations.items():
            if (origin, level) in done:
                continue
            fits = lambda v, level=level: ratio_of(v) <= level + 1e-12  # noqa: E731
            vector = _lowest_fitting(allocate, fits, space.max_sparsity)
            if vector is None:
                # Even its largest setting misses the level (global ranking spares some layers): project it,
                # as a sampled candidate would be, rather than drop the baseline.
                budget = Budget(cost, cost, level, False)
                projection = project_onto_budget(allocate(space.max_sparsity), [budget],
                                                 lambda v: {f"{cost}_ratio": ratio_of(v)},
                                                 max_sparsity={d.name: space.high(d) for d in space.dimensions}, step=space.step)
                if not projection.fits:
                    continue  # the level cannot be met at all; the budget check has said so where it matters
                vector = projection.vector
            study.enqueue_trial(as_params(vector),
                                user_attrs={"origin": origin, "warm_start_level": level})


def _log_study_plots(study: optuna.Study, space: PruningSpace, workspace: Workspace, tracker: StudyTracker) -> None:
    """Pareto front, sparsity profiles and history: written to ``<workdir>/plots`` and logged to the parent run;
    then the summary the MLflow UI shows first (saved view, descriptions, Pareto table)."""
    from prunetuna.plots import save_study_plots
    from prunetuna.report import build_report
    from prunetuna.search._summary import publish_summary

    report = build_report(study)
    paths = save_study_plots(report, space.names, workspace.workdir / "plots")
    tracker.log_parent_files(paths[:1])
    fault("plots")
    tracker.log_parent_files(paths[1:])
    if tracker.experiment_id is not None:
        tracker.outage.call(publish_summary, tracker.client, tracker.experiment_id, tracker.parent_run_id, report)


def run_search(
    config: ExperimentConfig,
    workspace: Workspace,
    *,
    n_trials: int | None = None,
    on_start: Callable[[SearchOutcome], None] | None = None,
    on_trial: Callable[[TrialRecord, int], None] | None = None,
    on_ready: Callable[[SearchOutcome], Callable[[], object] | None] | None = None,
    on_wait: Callable[[int], None] | None = None,
    plots: bool = True,
) -> SearchOutcome:
    """Create or resume the study and run trials until it holds ``n_trials`` finished ones (all workers counted).

    ``on_ready`` is called once the study, the dense baseline and the parent run exist, before the first
    trial (not when the study is already complete): where ``--workers`` starts more processes on the study.
    What it returns, if anything, is called after this process's last trial, before the plots are drawn.
    ``on_wait(running)`` is called once when this process waits for trials running elsewhere (other
    workers, or a killed process whose trials are failed and retried once they stop beating), and
    ``on_wait(0)`` when it waits for the worker that created the study to finish preparing it.
    ``plots``: draw the study's plots at the end (workers started by ``--workers`` leave it to the launcher).
    """
    # Optuna would log every failed trial with its traceback; each gets one line here, the reason in its
    # user attributes and the traceback as an MLflow artifact instead.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat retries: stable in use since 2.8
    target = n_trials if n_trials is not None else config.search.n_trials
    if target < 1:
        raise UserError(f"--n-trials: must be at least 1, got {target}")
    # Everything that can be wrong with the input is checked before any store is written.
    workload = load_workload(config)
    space = prepare_space(config, workload)
    scoring = _scoring(config)
    budgets = parse_budgets(config.constraints)
    cost_names = _cost_names(config, budgets)
    context = latency_context(workload.example, _latency_settings(config), "latency" in cost_names)  # agent unreachable: UserError
    storage = open_storage(workspace, create=True, heartbeat=config.search.heartbeat)
    stored = _check_existing(storage, config, scoring.directions)
    # Costs depend on the architecture only, so budgets are checked before the dense model is trained.
    dense = _dense_costs(context, workload.model, cost_names)
    _check_reachable(space, workload.model, context, dense, budgets)
    tracker = StudyTracker(workspace, config.name)
    tracker.connect(create=True)

    baseline = prepare_baseline(config, workload, workspace.workdir)
    dense = {"accuracy": baseline.accuracy, **dense}
    batches = calibration_batches(workload, config.pruning.calibration_batches)
    if config.pruning.bounds_from_sensitivity is not None:
        scan = cached_scan(config, workload, space, batches, workspace.workdir)
        space = space.with_bounds(bounds_from_scan(scan, config.pruning.bounds_from_sensitivity.max_drop, space.step))
        _check_reachable(space, workload.model, context, dense, budgets)  # within the tighter bounds too
    study, created = _open_study(storage, config, scoring.directions)
    if context.cache is not None:
        context.cache.attach(study)
    store = TrialStore(workspace.workdir)
    if not created:
        optuna.storages.fail_stale_trials(study)  # trials of killed processes: failed and enqueued again
        reconcile(study, tracker, store)  # runs those and earlier kills left incomplete: repaired from the work dir
    for key, value in {
        "objectives": list(config.objectives),
        "mode": config.mode,
        "dense": dense,
        "latency_settings": context.latency.__dict__,
        **({"latency_device": context.cache.device} if context.cache is not None else {}),
        "dimensions": space.names,
        "dimension_layers": {d.name: len(d.layers) for d in space.dimensions},
        "method": config.pruning.method,
        "constraints": dict(config.constraints),
        "tolerance": config.tolerance.accuracy_drop if config.tolerance else None,
    }.items():
        if stored.get(key) != value:
            study.set_user_attr(key, value)
    finished = count_finished(study)
    outcome = SearchOutcome(config.name, finished, target, 0, 0, dense)
    if on_start is not None:
        on_start(outcome)
    if finished >= target:
        close_finished_parent(study, tracker, lambda: _log_study_plots(study, space, workspace, tracker) if plots else None)
        return outcome

    parent_params = {
        "seed": config.seed,
        "objectives": ",".join(config.objectives),
        "constraints": str(dict(config.constraints)),
        "search.sampler": config.search.sampler,
        "storage": mask_url(workspace.storage_url),
        "mode": config.mode,
        "tolerance": config.tolerance.accuracy_drop if config.tolerance else "",
        "scalarize": str(config.scalarize or ""),
        **{f"latency.{k}": v for k, v in context.latency.__dict__.items()},
        **({f"device.{k}": v for k, v in context.cache.device.items()} if context.cache is not None else {}),
        **{f"dense.{k}": v for k, v in dense.items()},
        **trial_settings(config),
    }
    # Seeded per trial number: a resumed session continues the search instead of replaying it, and
    # workers sharing the study draw different points.
    study.sampler = make_sampler(config.search.sampler, config.seed, target)
    plan = TrialPlan(config, workload, space, scoring, budgets, context, dense, cost_names, batches)
    if created:
        # The one process that created the study enqueues the baselines and creates the parent run; the
        # others wait for the run id it publishes (one parent, whatever the workers' clocks say).
        _warm_start(study, plan)
        parent = tracker.start_parent(None, parent_params)
        study.set_user_attr("mlflow_parent_run_id", parent)
    else:
        hint = _published_parent(study, on_wait)
        parent = tracker.start_parent(hint, parent_params)
        if hint != parent:
            study.set_user_attr("mlflow_parent_run_id", parent)
        _warm_start(study, plan)  # a resumed study whose config now asks for baselines
    runner = TrialRunner(plan, tracker, store)
    stop_reason: list[str] = []
    away: list[str] = []
    surplus: list[int] = []
    runner.target = target

    def record(study: optuna.Study, trial: FrozenTrial) -> None:
        fault("told", trial.number)
        if trial.user_attrs.get("tracking_away"):  # the tracking store stayed away: stop, and run this trial next time
            study.enqueue_trial(trial.params, user_attrs={"origin": trial.user_attrs.get("origin", "sampler"), "retry_of": trial.number})
            away.append(trial.user_attrs.get("fail_reason", "tracking store away"))
            study.stop()
            return
        if trial.user_attrs.get("fail_reason") == SURPLUS:
            surplus.append(trial.number)
            return
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
    waited = False
    join = None
    try:
        tracker.log_parent_metrics({f"dense_{k}": v for k, v in dense.items()})
        if on_ready is not None:
            tracker.flush()
            join = on_ready(outcome)
        while not stop_reason and not away:
            outcome.finished = count_finished(study)
            if outcome.finished >= target:
                break
            running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if outcome.finished + running >= target:
                # The rest is running elsewhere: wait for it, and fail (and enqueue again) the trials of
                # processes that stopped beating, then run those here.
                if on_wait is not None and not waited:
                    on_wait(running)
                waited = True
                time.sleep(min(2.0, config.search.heartbeat))
                optuna.storages.fail_stale_trials(study)
                _fail_never_started(study)
                tracker.flush()
                reconcile(study, tracker, store)
                continue
            surplus.clear()
            study.optimize(
                runner,
                n_trials=target - outcome.finished,
                callbacks=[optuna.study.MaxTrialsCallback(target, states=FINISHED_STATES), record],
                catch=(Exception,),
                gc_after_trial=False,
            )
        status = "FINISHED"
    except KeyboardInterrupt:
        _retry_later(study, runner.current)
        raise
    finally:
        try:
            if join is not None and (status == "FINISHED" or stop_reason or away):
                join()  # the workers started by on_ready: the plots should show their trials too
            if outcome.ran and plots:
                with contextlib.suppress(TrackingAway):  # reported once; drawn again by the next start
                    _log_study_plots(study, space, workspace, tracker)
            with contextlib.suppress(Exception):  # best effort: never hides the error that ended the search
                tracker.flush()  # this process's own run ends are written before runs are judged interrupted
                reconcile(study, tracker, store)  # writes that failed, trials Optuna failed as stale meanwhile
        finally:
            tracker.end_parent(status)
    if away:
        raise SearchStopped(f"study {config.name!r} stopped: the tracking store is away (above); rerun the same command once it is back")
    if stop_reason:
        raise SearchStopped(
            f"study {config.name!r} stopped after {outcome.failed} failed trials in this run "
            f"(search.max_failures = {config.search.max_failures}); last: {stop_reason[0]}"
        )
    return outcome
