"""The baselines every search is compared with: the uniform, the global-ranking and (``search.baselines``) the
sensitivity-threshold allocations at each level, enqueued once per study and fine-tuned like sampled trials
(the report states the gain over them).

Each baseline takes the least pruning that fits its level, at channel resolution: its ratio is found by
bisection on continuous values (not on the step grid, whose next point up prunes more than the level
needs: FLOPs 0.077 at a level of 0.1 on the embedded default, issue 14). The exact vector is enqueued
as the trial's applied vector (user attribute ``sparsity``, what is pruned, measured, rebuilt and
reported); its Optuna params are the nearest point of the space's own grid, so that they stay within
the distributions the sampler knows (the same split as a projected candidate's: params as sampled,
``sparsity`` as applied)."""

from __future__ import annotations

import math
from typing import Callable

import optuna
from optuna.trial import Trial

from prunetuna.allocations import ThresholdAllocation, fit_threshold
from prunetuna.config import COST_INFO
from prunetuna.objectives import Budget, lowest_fitting, project_onto_budget
from prunetuna.search._plan import TrialPlan
from prunetuna.spaces import sampler_params
from prunetuna.sparsity import SparsityVector, canonical
from prunetuna.store import APPLIED_ATTR, TrialRecord, enqueue_attrs

__all__ = ["Baselines", "bisection_steps", "enqueue_baselines", "preset_vector"]


def bisection_steps(high: float, channels: int) -> int:
    """Halvings of [0, high] until an interval is under half a channel of a ``channels``-wide dimension."""
    return max(7, math.ceil(math.log2(max(high, 1e-6) * 2 * max(channels, 1))) + 1)


def preset_vector(trial: Trial) -> SparsityVector | None:
    """The applied vector an enqueued baseline starts with (its exact vector), else None. A sampled trial's
    (a retry copies its attributes) is drawn and projected again, as the first time."""
    record = TrialRecord.of(trial)
    return record.sparsity if APPLIED_ATTR in trial.user_attrs and record.origin != "sampler" else None


class Baselines:
    """The uniform, global-ranking and sensitivity-threshold allocations of a plan, fitted to a level of one cost.

    ``origins``: which of them (``search.baselines``); ``sensitivity`` needs the plan's scan.
    """

    def __init__(self, plan: TrialPlan, cost: str, origins: tuple[str, ...] = ("uniform", "global")) -> None:
        self.plan, self.cost, space = plan, cost, plan.space
        known: dict[str, Callable[[float], SparsityVector]] = {
            "uniform": space.uniform,
            "global": lambda r: canonical(space.global_allocation(r, plan.batches)),
        }
        self.threshold: ThresholdAllocation | None = None
        if "sensitivity" in origins and plan.scan is not None:
            self.threshold = ThresholdAllocation(plan.scan, {d.name: space.high(d) for d in space.dimensions})
            highest = self.threshold.highest
            known["sensitivity"] = lambda r: self.threshold(r / max(space.max_sparsity, 1e-12) * highest)
        self.allocations = {origin: known[origin] for origin in origins if origin in known}
        widest = max((d.channels for d in space.dimensions), default=1)
        # A uniform ratio moves every dimension; the global ranking removes channels one at a time across all of them.
        self.channels = {"uniform": widest, "global": sum(d.channels for d in space.dimensions)}
        self.channels["sensitivity"] = self.channels["global"]

    def ratio_of(self, vector: SparsityVector) -> float:
        return self.plan.structure_costs(vector, (self.cost,))[f"{self.cost}_ratio"]

    def fit(self, origin: str, level: float) -> SparsityVector | None:
        """The ``origin`` allocation with the least pruning whose cost fits ``level`` (None: unreachable)."""
        space, allocate = self.plan.space, self.allocations[origin]
        fits = lambda v: self.ratio_of(v) <= level + 1e-12  # noqa: E731
        if origin == "sensitivity" and self.threshold is not None:
            fitted = fit_threshold(self.threshold, fits, {d.name: d.channels for d in space.dimensions})
            vector = fitted.vector if fitted is not None else None
        else:
            steps = bisection_steps(space.max_sparsity, self.channels[origin])
            vector = lowest_fitting(allocate, fits, space.max_sparsity, iterations=steps)
            if vector is None and not COST_INFO[self.cost].cheap:
                # A measured cost: one slow reading of the largest setting is not the answer; the latency
                # cache measures it again and keeps the lower reading.
                vector = lowest_fitting(allocate, fits, space.max_sparsity, iterations=steps)
        if vector is not None:
            return vector
        if canonical(allocate(space.max_sparsity)) == canonical(space.highest()):
            return None  # already every dimension at its highest: projecting moves nothing
        # Even its largest setting misses the level (global ranking spares some layers): project it,
        # as a sampled candidate would be, rather than drop the baseline.
        budget = Budget(self.cost, self.cost, level, False)
        projection = project_onto_budget(
            allocate(space.max_sparsity),
            [budget],
            lambda v: {f"{self.cost}_ratio": self.ratio_of(v)},
            max_sparsity=space.highest(),
            step=None,
            iterations=bisection_steps(1.0, self.channels["uniform"]),
        )
        return projection.vector if projection.fits else None


def enqueue_baselines(study: optuna.Study, plan: TrialPlan) -> None:
    """Enqueue the baselines' allocations (``search.baselines``) at each level not enqueued yet.

    Levels are the config's ``search.warm_start_levels``, else the ratio budget's limit. They are levels of the
    first ratio budget's cost, a counted one (FLOPs, parameters) before measured latency: under a latency budget
    alone the baselines are fitted to the measured latency ratio (a bisection of about a dozen measurements
    each; a baseline that cannot be fitted is tried again when the search is resumed), so that they are
    compared with the search at equal latency (NetAdapt's comparison).
    """
    config, space = plan.config, plan.space
    ratio_budgets = sorted((b for b in plan.budgets if not b.absolute), key=lambda b: not COST_INFO[b.cost].cheap)
    cost = ratio_budgets[0].cost if ratio_budgets else "flops"
    levels = list(config.search.warm_start_levels) or [b.limit for b in ratio_budgets if b.cost == cost]
    if not config.search.warm_start or not levels:
        return
    records = [TrialRecord.of(t) for t in study.get_trials(deepcopy=False)]
    done = {(r.origin, r.warm_start_level) for r in records}
    baselines = Baselines(plan, cost, tuple(config.search.baselines))
    for level in levels:
        for origin in baselines.allocations:
            if (origin, level) in done:
                continue
            vector = baselines.fit(origin, level)
            if vector is None:
                continue  # the level cannot be met at all; the budget check has said so where it matters
            study.enqueue_trial(
                sampler_params(space, vector),
                user_attrs=enqueue_attrs(origin=origin, warm_start_level=level, sparsity=canonical(vector)),
            )
