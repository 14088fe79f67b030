"""What a search decides once, before any trial: the workload, the space, how candidates are scored and
what they cost, the dense baseline, the calibration batches. Every input is checked here, before any
store is written (bad input leaves nothing behind)."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from prunetuna.allocations import SensitivityScan, bounds_from_scan, cached_scan
from prunetuna.config import CHEAP_COSTS, GRADIENT_IMPORTANCES, ExperimentConfig, config_section
from prunetuna.device import DeviceError
from prunetuna.errors import UserError
from prunetuna.objectives import (
    CACHE_CONFIRMATIONS,
    Budget,
    CostContext,
    LatencySettings,
    Scoring,
    latency_context,
    lower_median,
    measure_costs,
    parse_budgets,
)
from prunetuna.spaces import PruningSpace
from prunetuna.training import ClassifierTask, check_finetune
from prunetuna.workload import Workload, first_inputs, load_workload, prepare_baseline

__all__ = [
    "CheckedInputs",
    "TrialPlan",
    "build_plan",
    "calibration_batches",
    "chance_level",
    "check_inputs",
    "prepare_space",
    "trial_settings",
]


def prepare_space(config: ExperimentConfig, workload: Workload) -> PruningSpace:
    """The search space of the config's model; a model with nothing prunable is bad input."""
    source = config.model.target or config.model.builtin or "?"
    return PruningSpace.from_config(config.pruning, workload.model, workload.example, label=f"model {source}")


def trial_settings(config: ExperimentConfig) -> dict[str, object]:
    """The pruning and fine-tune settings (and `search.promote`, when on) every child run carries as params."""
    flat: dict[str, object] = {}
    for section in ("pruning", "finetune"):
        for key, value in config_section(config, section)[section].items():
            flat[f"{section}.{key}"] = value
    if config.search.promote.top:  # only when on: earlier runs' params stay as they were
        for key, value in config.search.promote.model_dump().items():
            flat[f"search.promote.{key}"] = value
    return flat


def calibration_batches(workload: Workload, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``count`` training batches: BN recalibration and gradient-based importance. Drawn under a
    forked RNG seeded 0, so they are the same in every process and torch's global RNG is left as it was."""
    if count == 0:
        return []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return [_pair(batch) for batch in itertools.islice(workload.datamodule.train_dataloader(), count)]


def chance_level(workload: Workload) -> float | None:
    """1/classes of the built-in classifier, the classes counted from the dense model's logits on the example; None
    for a user's LightningModule (its metric has no chance level prunetuna knows) or outputs that are not logits."""
    if not isinstance(workload.task, ClassifierTask):
        return None
    model = workload.model
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(workload.example)
    model.train(was_training)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[-1] < 2:
        return None
    return 1.0 / logits.shape[-1]


def _pair(batch: object) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of an ``(x, y)`` batch; a dict batch's inputs with no labels (BN recalibration reads inputs
    only)."""
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[0], batch[1]
    return first_inputs(batch), torch.empty(0)


def _scoring(config: ExperimentConfig) -> Scoring:
    return Scoring(
        mode=config.mode,
        objectives=tuple(config.objectives),
        accuracy_drop=config.tolerance.accuracy_drop if config.tolerance else None,
        weights=tuple((config.scalarize or {}).items()),
    )


def _cost_names(config: ExperimentConfig, budgets: list[Budget]) -> tuple[str, ...]:
    names = list(CHEAP_COSTS)
    if config.latency.every_trial or "latency" in config.objectives or any(b.cost == "latency" for b in budgets):
        names.append("latency")
    return tuple(names)


@dataclass(frozen=True)
class CheckedInputs:
    """What the config's inputs come to, checked before any store is written: the workload, the space, how
    candidates are scored and what they cost (``dense`` holds the dense model's costs only)."""

    config: ExperimentConfig
    workload: Workload
    space: PruningSpace
    scoring: Scoring
    budgets: tuple[Budget, ...]
    context: CostContext
    dense: dict[str, float]
    cost_names: tuple[str, ...]

    @property
    def model(self) -> nn.Module:
        return self.workload.model

    def measure(self, model: nn.Module, names: tuple[str, ...] | None = None) -> dict[str, float]:
        """Costs of ``model`` (default: every cost a trial records), with ratios to the dense model."""
        return measure_costs(model, self.context, self.dense, names or self.cost_names)

    def structure_costs(self, vector: dict[str, float], names: tuple[str, ...]) -> dict[str, float]:
        """Costs of the vector's pruned structure (weights not copied): what budgets and baselines bisect on."""
        return self.measure(self.space.apply(vector, structure_only=True), names)


@dataclass(frozen=True)
class TrialPlan(CheckedInputs):
    """Everything a trial needs that is decided once per study, built once and complete (:func:`build_plan`):
    the checked inputs with the dense model's score in ``dense``, the calibration batches, and the space
    narrowed by the sensitivity scan when the config asks for it."""

    batches: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
    scan: SensitivityScan | None = None  # the sensitivity scan, when bounds or the sensitivity baseline need it
    chance: float | None = None  # the built-in classifier's 1/classes (None for a user's module)
    finetune_batches: int | None = None  # per epoch: finetune.max_batches, or .max_images in batches (None: all)


def _readings(cost_names: tuple[str, ...]) -> int:
    return 1 if set(cost_names) <= set(CHEAP_COSTS) else CACHE_CONFIRMATIONS


def check_reachable(plan: CheckedInputs) -> None:
    """A budget that even every dimension at max_sparsity misses is bad input, found before any fine-tune."""
    if not plan.budgets:
        return
    space = plan.space
    names = tuple(dict.fromkeys(b.cost for b in plan.budgets))
    # A measured cost (latency) is read as often as the latency cache confirms an entry, the lower median
    # kept: one reading taken while the machine is busy would refuse a reachable budget.
    readings = [plan.structure_costs(space.highest(), names) for _ in range(_readings(names))]
    floor = {key: lower_median([r[key] for r in readings], key=float) for key in readings[0]}
    bounded = any(d.high is not None for d in space.dimensions)
    where = "at its bound from the sensitivity scan" if bounded else f"at max_sparsity {space.max_sparsity:g}"
    knob = "pruning.bounds_from_sensitivity.max_drop" if bounded else "pruning.max_sparsity"
    for budget in plan.budgets:
        if budget.excess(floor) > 0:
            raise UserError(
                f"constraints.{budget.key}: {budget.limit:g} cannot be met: with every dimension {where} "
                f"the lowest reachable is {budget.describe(floor)}; raise the budget or {knob}"
            )


def check_inputs(config: ExperimentConfig) -> CheckedInputs:
    """Load the workload, build the space and measure the dense costs; every budget is checked reachable.
    Costs depend on the architecture only, so this runs before the dense model is trained."""
    workload = load_workload(config)
    check_finetune(config.finetune)  # finetune.trainer and .callbacks: Lightning accepts them here, the targets resolve
    if config.pruning.importance in GRADIENT_IMPORTANCES and not isinstance(workload.task, ClassifierTask):
        raise UserError(
            f"pruning.importance: {config.pruning.importance!r} takes gradients of a cross-entropy; with a "
            "LightningModule use l1, l2 or bn_scale"
        )
    space = prepare_space(config, workload)
    budgets = parse_budgets(config.constraints)
    cost_names = _cost_names(config, budgets)
    # With latency measured: a cache by architecture and the device's description (an unreachable agent: UserError).
    context = latency_context(
        workload.example, LatencySettings(**config.latency.model_dump(exclude={"every_trial"})), "latency" in cost_names
    )
    # Dense latency is measured once per search process, on the machine that measures the trials: the same
    # model measured in two processes differed by 9% here, and workers may run on different machines, so a
    # ratio is only sound against a reference taken where its trial ran.
    try:
        dense = measure_costs(workload.model, context, None, cost_names)
    except DeviceError as exc:  # the agent answered at start but refused the dense model, or stopped
        raise UserError(f"latency.url: {exc}") from None
    inputs = CheckedInputs(config, workload, space, _scoring(config), tuple(budgets), context, dense, cost_names)
    check_reachable(inputs)
    return inputs


def build_plan(inputs: CheckedInputs, workdir: Path) -> TrialPlan:
    """The plan, complete: the dense baseline trained (or loaded), the calibration batches drawn, and the space
    narrowed by the sensitivity scan when the config asks for it."""
    config, workload, space = inputs.config, inputs.workload, inputs.space
    baseline = prepare_baseline(config, workload, workdir)
    dense = {"accuracy": baseline.accuracy, **workload.task.named(baseline.accuracy), **inputs.dense}
    batches = tuple(calibration_batches(workload, config.pruning.calibration_batches))
    scan = None
    wants_baseline = config.search.warm_start and "sensitivity" in config.search.baselines
    if config.pruning.bounds_from_sensitivity is not None or wants_baseline:
        scan = cached_scan(config, workload, space, list(batches), workdir)  # scored with the task
    if config.pruning.bounds_from_sensitivity is not None:
        space = space.with_bounds(bounds_from_scan(scan, config.pruning.bounds_from_sensitivity.max_drop, space.step))
    fields = {f.name: getattr(inputs, f.name) for f in dataclasses.fields(CheckedInputs)}
    per_epoch = config.finetune.batches_per_epoch(
        workload.datamodule.train_dataloader().batch_size if config.finetune.max_images else None
    )
    plan = TrialPlan(
        **{
            **fields,
            "space": space,
            "dense": dense,
            "batches": batches,
            "scan": scan,
            "chance": chance_level(workload),
        },
        finetune_batches=per_epoch,
    )
    if space is not inputs.space:
        check_reachable(plan)  # within the tighter bounds too
    return plan
