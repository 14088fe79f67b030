"""A trial's candidate: the sampled vector pruned into a copy of the model, measured, and projected onto
the budget when it misses it."""

from __future__ import annotations

from dataclasses import dataclass

from optuna.trial import Trial
from torch import nn

from prunetuna.faults import fault
from prunetuna.objectives import project_onto_budget, scale_onto_budget, within_budgets
from prunetuna.search._events import StepTimer
from prunetuna.search._plan import TrialPlan
from prunetuna.search._warm_start import bisection_steps, preset_vector
from prunetuna.sparsity import SparsityVector, canonical
from prunetuna.store import BudgetStatus, write_trial

__all__ = ["Candidate", "draw_candidate"]


@dataclass
class Candidate:
    """The vector to fine-tune, its pruned model and costs, and what the budget did to it."""

    vector: SparsityVector
    model: nn.Module
    costs: dict[str, float]
    budget: BudgetStatus


def draw_candidate(plan: TrialPlan, trial: Trial, timer: StepTimer) -> Candidate:
    """Sample, prune and measure; a candidate over a budget is moved onto it (``projection_t`` recorded)."""
    space = plan.space
    preset = preset_vector(trial)  # an enqueued baseline's exact vector (its params are the nearest grid point)
    sampled = space.suggest(trial)
    if preset is not None:
        sampled = preset
    fault("sampled", trial.number)
    with timer.step("prune"):
        pruned = space.apply(sampled, plan.batches)
    with timer.step("measure"):
        costs = plan.measure(pruned)
    if not plan.budgets:
        return Candidate(sampled, pruned, costs, BudgetStatus.NONE)
    relative = plan.config.search.projection == "relative" and preset is None  # a baseline's vector stays
    if within_budgets(plan.budgets, costs) and not relative:
        return Candidate(sampled, pruned, costs, BudgetStatus.WITHIN)
    budget_costs = tuple(dict.fromkeys(b.cost for b in plan.budgets))
    widest = max((d.channels for d in space.dimensions), default=1)
    with timer.step("project"):
        if relative:
            projection = scale_onto_budget(
                sampled,
                plan.budgets,
                lambda vector: plan.structure_costs(vector, budget_costs),
                max_sparsity={d.name: space.high(d) for d in space.dimensions},
                channels=widest,
            )
        else:
            projection = project_onto_budget(
                sampled,
                plan.budgets,
                lambda vector: plan.structure_costs(vector, budget_costs),
                max_sparsity=space.highest(),
                step=None,  # as close to the budget as channel counts allow, not the step grid's next point up
                iterations=bisection_steps(1.0, widest),
            )
    write_trial(trial, projection_t=projection.t)
    vector = canonical(projection.vector)
    with timer.step("prune"):
        pruned = space.apply(vector, plan.batches)
    with timer.step("measure"):
        costs = plan.measure(pruned)
    return Candidate(vector, pruned, costs, BudgetStatus.PROJECTED if projection.fits else BudgetStatus.OVER)
