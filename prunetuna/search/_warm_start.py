"""The baselines every search is compared with: the uniform and the global-ranking allocations at each
level, enqueued once per study and fine-tuned like sampled trials (the report states the gain over them)."""

from __future__ import annotations

import math
from typing import Callable

import optuna

from prunetuna.objectives import Budget, project_onto_budget
from prunetuna.search._plan import TrialPlan
from prunetuna.sparsity import SparsityVector, as_params
from prunetuna.trial_record import TrialRecord, enqueue_attrs

__all__ = ["enqueue_baselines", "lowest_fitting"]


def lowest_fitting(candidate: Callable[[float], SparsityVector], fits: Callable[[SparsityVector], bool], high: float) -> SparsityVector | None:
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


def enqueue_baselines(study: optuna.Study, plan: TrialPlan) -> None:
    """Enqueue the uniform and the global-ranking allocations at each level not enqueued yet.

    Levels are the config's ``search.warm_start_levels``, else the ratio budget.
    """
    config, space = plan.config, plan.space
    ratio_budgets = [b for b in plan.budgets if not b.absolute and b.cost != "latency"]
    cost = ratio_budgets[0].cost if ratio_budgets else "flops"
    levels = list(config.search.warm_start_levels) or [b.limit for b in ratio_budgets]
    if not config.search.warm_start or not levels:
        return
    records = [TrialRecord.of(t) for t in study.get_trials(deepcopy=False)]
    done = {(r.origin, r.warm_start_level) for r in records}

    def ratio_of(vector: SparsityVector) -> float:
        return plan.structure_costs(vector, (cost,))[f"{cost}_ratio"]

    def step_up(vector: SparsityVector) -> SparsityVector:
        """Onto the step grid, rounding up so that the level still holds."""
        return {d.name: min(round(math.ceil(vector[d.name] / space.step - 1e-9) * space.step, 6), space.high(d)) for d in space.dimensions}

    allocations = {
        "uniform": lambda r: step_up(space.uniform(r)),
        "global": lambda r: step_up(space.global_allocation(plan.model, r, plan.workload.example, plan.batches)),
    }
    for level in levels:
        for origin, allocate in allocations.items():
            if (origin, level) in done:
                continue
            fits = lambda v, level=level: ratio_of(v) <= level + 1e-12  # noqa: E731
            vector = lowest_fitting(allocate, fits, space.max_sparsity)
            if vector is None:
                # Even its largest setting misses the level (global ranking spares some layers): project it,
                # as a sampled candidate would be, rather than drop the baseline.
                budget = Budget(cost, cost, level, False)
                projection = project_onto_budget(allocate(space.max_sparsity), [budget], lambda v: {f"{cost}_ratio": ratio_of(v)},
                                                 max_sparsity={d.name: space.high(d) for d in space.dimensions}, step=space.step)
                if not projection.fits:
                    continue  # the level cannot be met at all; the budget check has said so where it matters
                vector = projection.vector
            study.enqueue_trial(as_params(vector), user_attrs=enqueue_attrs(origin=origin, warm_start_level=level))
