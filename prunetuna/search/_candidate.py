"""A trial's candidate: the sampled vector pruned into a copy of the model, measured, and projected onto
the budget when it misses it."""

from __future__ import annotations

from dataclasses import dataclass

from optuna.trial import Trial
from torch import nn

from prunetuna.faults import fault
from prunetuna.objectives import project_onto_budget, within_budgets
from prunetuna.search._events import StepTimer
from prunetuna.search._plan import TrialPlan
from prunetuna.sparsity import SparsityVector, canonical
from prunetuna.trial_record import BudgetStatus, write_trial

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
    sampled = space.suggest(trial)
    fault("sampled", trial.number)
    with timer.step("prune"):
        pruned = space.apply(sampled, plan.batches)
    with timer.step("measure"):
        costs = plan.measure(pruned)
    if not plan.budgets:
        return Candidate(sampled, pruned, costs, BudgetStatus.NONE)
    if within_budgets(plan.budgets, costs):
        return Candidate(sampled, pruned, costs, BudgetStatus.WITHIN)
    budget_costs = tuple(dict.fromkeys(b.cost for b in plan.budgets))
    with timer.step("project"):
        projection = project_onto_budget(
            sampled,
            plan.budgets,
            lambda vector: plan.structure_costs(vector, budget_costs),
            max_sparsity=space.highest(),
            step=space.step,
        )
    write_trial(trial, projection_t=projection.t)
    vector = canonical(projection.vector)
    with timer.step("prune"):
        pruned = space.apply(vector, plan.batches)
    with timer.step("measure"):
        costs = plan.measure(pruned)
    return Candidate(vector, pruned, costs, BudgetStatus.PROJECTED if projection.fits else BudgetStatus.OVER)
