"""The baselines every search is compared with: the uniform and the global-ranking allocations at each
level, enqueued once per study and fine-tuned like sampled trials (the report states the gain over them)."""

from __future__ import annotations

import optuna

from prunetuna.names import COSTS
from prunetuna.objectives import Budget, lowest_fitting, project_onto_budget
from prunetuna.search._plan import TrialPlan
from prunetuna.sparsity import SparsityVector, as_params
from prunetuna.trial_record import TrialRecord, enqueue_attrs

__all__ = ["enqueue_baselines"]


def enqueue_baselines(study: optuna.Study, plan: TrialPlan) -> None:
    """Enqueue the uniform and the global-ranking allocations at each level not enqueued yet.

    Levels are the config's ``search.warm_start_levels``, else the ratio budget.
    """
    config, space = plan.config, plan.space
    ratio_budgets = [b for b in plan.budgets if not b.absolute and COSTS[b.cost].cheap]
    cost = ratio_budgets[0].cost if ratio_budgets else "flops"
    levels = list(config.search.warm_start_levels) or [b.limit for b in ratio_budgets]
    if not config.search.warm_start or not levels:
        return
    records = [TrialRecord.of(t) for t in study.get_trials(deepcopy=False)]
    done = {(r.origin, r.warm_start_level) for r in records}

    def ratio_of(vector: SparsityVector) -> float:
        return plan.structure_costs(vector, (cost,))[f"{cost}_ratio"]

    allocations = {
        "uniform": lambda r: space.snap(space.uniform(r), up=True),  # onto the grid, rounding up: the level still holds
        "global": lambda r: space.snap(space.global_allocation(r, plan.batches), up=True),
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
                                                 max_sparsity=space.highest(), step=space.step)
                if not projection.fits:
                    continue  # the level cannot be met at all; the budget check has said so where it matters
                vector = projection.vector
            study.enqueue_trial(as_params(vector), user_attrs=enqueue_attrs(origin=origin, warm_start_level=level))
