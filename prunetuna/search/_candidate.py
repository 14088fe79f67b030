"""A trial's candidate: the sampled vector pruned into a copy of the model, measured, and projected onto
the budget when it misses it; with ``search.screening.candidates`` K > 1, the best of K such candidates by their
pre-fine-tune score (:class:`CandidateScreen`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import FrozenTrial, Trial
from torch import nn

from prunetuna.faults import fault
from prunetuna.objectives import project_onto_budget, scale_onto_budget, within_budgets
from prunetuna.search._events import StepTimer
from prunetuna.search._plan import TrialPlan
from prunetuna.search._screening import (
    PRE_FINETUNE_METRIC,
    choose_candidate,
    cost_metrics,
    earlier_points,
    screen_point,
)
from prunetuna.search._warm_start import bisection_steps, preset_vector
from prunetuna.sparsity import SparsityVector, canonical
from prunetuna.store import BudgetStatus, write_trial
from prunetuna.training import recalibrate_batchnorm

__all__ = ["Candidate", "CandidateScreen", "Screened", "build_candidate", "draw_candidate"]


@dataclass
class Candidate:
    """The vector to fine-tune, its pruned model and costs, and what the budget did to it."""

    vector: SparsityVector
    model: nn.Module
    costs: dict[str, float]
    budget: BudgetStatus
    projection_t: float | None = None  # where the projection onto the budget stopped (None: not projected)
    sampled: SparsityVector | None = None  # the vector as sampled, before any projection
    accuracy_pruned: float | None = None  # the pre-fine-tune score, once screening measured it
    screened: tuple[dict[str, Any], ...] = ()  # every draw of the trial's screening: vector, score, why dropped


@dataclass
class Screened:
    """A trial's screening: the chosen candidate (pruned, recalibrated and scored) and every draw's record."""

    candidate: Candidate
    records: tuple[dict[str, Any], ...]
    seconds: float


def draw_candidate(plan: TrialPlan, trial: Trial, timer: StepTimer, screen: CandidateScreen | None = None) -> Candidate:
    """Sample, prune and measure; a candidate over a budget is moved onto it (``projection_t`` recorded). The
    candidate a screening chose for this trial (``screen``) is taken as it is, not pruned again."""
    preset = preset_vector(trial)  # an enqueued baseline's exact vector (its params are the nearest grid point)
    sampled = plan.space.suggest(trial)
    if preset is not None:
        sampled = preset
    screened = screen.chosen(trial.number, sampled) if screen is not None and preset is None else None
    fault("sampled", trial.number)
    if screened is not None:
        candidate = screened.candidate
        candidate.screened = screened.records
        timer.seconds["screen"] += screened.seconds
    else:
        relative = plan.config.search.projection == "relative" and preset is None  # a baseline's vector stays
        candidate = build_candidate(plan, sampled, relative, timer)
    if candidate.projection_t is not None:
        write_trial(trial, projection_t=candidate.projection_t)
    return candidate


def build_candidate(plan: TrialPlan, sampled: SparsityVector, relative: bool, timer: StepTimer) -> Candidate:
    """``sampled`` pruned and measured; with a budget, projected onto it (``relative``: scaled onto it even when
    within it, ``search.projection: relative``)."""
    space = plan.space
    with timer.step("prune"):
        pruned = space.apply(sampled, plan.batches)
    with timer.step("measure"):
        costs = plan.measure(pruned)
    if not plan.budgets:
        return Candidate(sampled, pruned, costs, BudgetStatus.NONE, sampled=sampled)
    if within_budgets(plan.budgets, costs) and not relative:
        return Candidate(sampled, pruned, costs, BudgetStatus.WITHIN, sampled=sampled)
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
    vector = canonical(projection.vector)
    with timer.step("prune"):
        pruned = space.apply(vector, plan.batches)
    with timer.step("measure"):
        costs = plan.measure(pruned)
    budget = BudgetStatus.PROJECTED if projection.fits else BudgetStatus.OVER
    return Candidate(vector, pruned, costs, budget, projection.t, sampled)


class _Params:
    """What ``PruningSpace.suggest`` asks of a trial, answered from given params (a draw), or recorded as
    distributions (the space's own, for the sampler's relative sample)."""

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.params = params
        self.distributions: dict[str, BaseDistribution] = {}

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        self.distributions[name] = FloatDistribution(low, high, step=step, log=log)
        return float(self.params[name]) if self.params is not None else low


class CandidateScreen:
    """``search.screening.candidates``: the sampler's chooser (:class:`~prunetuna.search._samplers.CandidateChooser`).

    For each of a sampled trial's K draws: the candidate built as a trial builds it (pruned, projected onto the
    budget), its BatchNorm statistics recalibrated on the calibration batches and its pre-fine-tune score
    measured; a vector drawn twice is scored once. :func:`~prunetuna.search._screening.choose_candidate` picks
    one; its candidate (model included) is kept for the trial's :func:`draw_candidate`, the others are dropped at
    once (K pruned copies are held only while the draws are scored).
    """

    def __init__(self, plan: TrialPlan, count: int) -> None:
        self.plan, self.count = plan, count
        recorder = _Params()
        plan.space.suggest(recorder)
        self.search_space = recorder.distributions
        self._chosen: dict[int, Screened] = {}

    def chosen(self, number: int, sampled: SparsityVector) -> Screened | None:
        """The screening of trial ``number`` when it chose ``sampled`` (kept until taken)."""
        screened = self._chosen.pop(number, None)
        return screened if screened is not None and screened.candidate.sampled == sampled else None

    def __call__(self, study: optuna.Study, trial: FrozenTrial, draws: list[dict[str, Any]]) -> dict[str, Any]:
        plan, timer = self.plan, StepTimer()
        relative = plan.config.search.projection == "relative"
        candidates: list[Candidate] = []
        with timer.step("screen"):
            for params in draws:
                sampled = plan.space.suggest(_Params(params))
                same = next((c for c in candidates if c.sampled == sampled), None)
                if same is None:
                    same = build_candidate(plan, sampled, relative, timer)
                    recalibrate_batchnorm(same.model, [x for x, _ in plan.batches])
                    same.accuracy_pruned = plan.workload.task.evaluate(same.model, plan.workload.datamodule)
                candidates.append(same)
            points = [
                screen_point(trial.number, plan.scoring, {**c.costs, PRE_FINETUNE_METRIC: c.accuracy_pruned})
                for c in candidates
            ]
            earlier = earlier_points(study.get_trials(deepcopy=False), trial.number)
            by_score = bool(plan.budgets) or plan.scoring.mode == "scalarized"
            fits = [c.budget is not BudgetStatus.OVER for c in candidates]
            choice = choose_candidate(points, fits, earlier, by_score, cost_metrics(plan.scoring))
        records = tuple(
            {
                "candidate": i + 1,
                "sampled": c.sampled,
                "vector": c.vector,
                "score": p.score,
                "metrics": {**c.costs, PRE_FINETUNE_METRIC: c.accuracy_pruned},
                "budget": c.budget.value,
                **({"hypervolume_gain": choice.gains[i]} if choice.gains else {}),
                "chosen": i == choice.index,
                "reason": _again(candidates, i, choice.index) or choice.reasons[i],
            }
            for i, (c, p) in enumerate(zip(candidates, points))
        )
        chosen = candidates[choice.index]
        self._chosen[trial.number] = Screened(chosen, records, timer.seconds["screen"])
        return draws[choice.index]


def _again(candidates: list[Candidate], i: int, chosen: int) -> str | None:
    """Why draw ``i`` was dropped when it repeats an earlier draw's vector (scored once), else None."""
    first = next(j for j, c in enumerate(candidates) if c is candidates[i])
    if i == chosen or first == i:
        return None
    return f"screened: candidate {i + 1} of {len(candidates)} is candidate {first + 1}'s vector again"
