"""Budgets on costs, and projection of an over-budget sample onto the budget.

A sample over budget is *projected*, not rejected: every ratio is moved toward ``max_sparsity``
by the same fraction t (as AMC does), and the smallest t on the step grid that fits is found by
bisection on the cheap costs. Rejecting would spend a trial on nothing; projecting turns every
sample into a feasible candidate worth fine-tuning, and the trial records both vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, TypeVar

from prunetuna.config import ABSOLUTE_BUDGETS
from prunetuna.objectives._costs import COSTS
from prunetuna.registry import check_name
from prunetuna.sparsity import snap

__all__ = [
    "Budget",
    "Projection",
    "lowest_fitting",
    "parse_budgets",
    "project_onto_budget",
    "scale_onto_budget",
    "within_budgets",
]

V = TypeVar("V")


@dataclass(frozen=True)
class Budget:
    """``key: limit`` from the config: a ratio to dense (key = cost name) or an absolute amount."""

    key: str
    cost: str
    limit: float
    absolute: bool

    @property
    def metric(self) -> str:
        return COSTS[self.cost].metric if self.absolute else f"{self.cost}_ratio"

    def excess(self, metrics: Mapping[str, float]) -> float:
        """Relative amount over the limit: feasible when <= 0 (what Optuna's constraints expect)."""
        return (metrics[self.metric] - self.limit) / self.limit

    def describe(self, metrics: Mapping[str, float]) -> str:
        cost = COSTS[self.cost]
        value = metrics[self.metric]
        if self.absolute:
            return f"{value:,.4g} {cost.unit}"
        return f"{value:.3f} of dense ({metrics[cost.metric]:,.4g} {cost.unit})"


def parse_budgets(constraints: Mapping[str, float]) -> list[Budget]:
    budgets = []
    for key, limit in constraints.items():
        if key in ABSOLUTE_BUDGETS:
            budgets.append(Budget(key, ABSOLUTE_BUDGETS[key], float(limit), True))
        else:
            check_name("constraint", key, [*COSTS, *ABSOLUTE_BUDGETS])
            budgets.append(Budget(key, key, float(limit), False))
    return budgets


def within_budgets(budgets: Sequence[Budget], metrics: Mapping[str, float]) -> bool:
    return all(b.excess(metrics) <= 0 for b in budgets)


@dataclass(frozen=True)
class Projection:
    """The vector that fits (or the closest at t = 1), its measured costs, t, and how many candidates were measured."""

    vector: dict[str, float]
    metrics: dict[str, float]
    t: float
    evaluations: int
    fits: bool


def lowest_fitting(
    candidate: Callable[[float], V], fits: Callable[[V], bool], high: float = 1.0, iterations: int = 10
) -> V | None:
    """Bisection on a scalar knob in [0, ``high``]: the candidate of the smallest knob found that fits
    (None when even ``high`` does not); ``iterations`` halvings of the interval."""
    best = candidate(high)
    if not fits(best):
        return None
    low = 0.0
    for _ in range(iterations):
        middle = (low + high) / 2
        trying = candidate(middle)
        if fits(trying):
            high, best = middle, trying
        else:
            low = middle
    return best


def _toward(
    vector: Mapping[str, float], t: float, max_sparsity: float | Mapping[str, float], step: float | None
) -> dict[str, float]:
    moved = {}
    for name, ratio in vector.items():
        cap = max_sparsity[name] if isinstance(max_sparsity, Mapping) else max_sparsity
        target = ratio + t * (cap - ratio)
        snapped = target if step is None else snap(target, step, up=True)
        moved[name] = round(min(max(snapped, ratio), max(cap, ratio)), 6)
    return moved


def _memoized(
    measure: Callable[[dict[str, float]], dict[str, float]],
) -> tuple[Callable[[dict[str, float]], dict[str, float]], dict[tuple[float, ...], dict[str, float]]]:
    """``measure`` measured once per candidate (a bisection revisits its ends), and the cache (its size is the
    number of candidates measured)."""
    cache: dict[tuple[float, ...], dict[str, float]] = {}

    def costs(candidate: dict[str, float]) -> dict[str, float]:
        key = tuple(candidate.values())
        if key not in cache:
            cache[key] = measure(candidate)
        return cache[key]

    return costs, cache


def project_onto_budget(
    vector: Mapping[str, float],
    budgets: Sequence[Budget],
    measure: Callable[[dict[str, float]], dict[str, float]],
    *,
    max_sparsity: float | Mapping[str, float],
    step: float | None,
    iterations: int = 7,
) -> Projection:
    """Smallest uniform move toward ``max_sparsity`` (on the ``step`` grid) whose costs fit ``budgets``.

    ``step`` None moves continuously: with enough ``iterations`` the candidate lands as close to the budget
    as channel counts allow (what the search does; the grid's next point up can overshoot by a whole step).

    ``max_sparsity`` is one bound for every dimension or each dimension's own (from a sensitivity scan).
    """
    costs, cache = _memoized(measure)
    found = lowest_fitting(
        lambda t: (t, _toward(vector, t, max_sparsity, step)),
        lambda moved: within_budgets(budgets, costs(moved[1])),
        1.0,
        iterations,
    )
    if found is None:
        high = _toward(vector, 1.0, max_sparsity, step)
        return Projection(high, costs(high), 1.0, len(cache), False)
    t, fitted = found
    return Projection(fitted, costs(fitted), t, len(cache), True)


def scale_onto_budget(
    vector: Mapping[str, float],
    budgets: Sequence[Budget],
    measure: Callable[[dict[str, float]], dict[str, float]],
    *,
    max_sparsity: Mapping[str, float],
    channels: int,
) -> Projection:
    """The sample read as a *relative* allocation (AMC, MetaPruning): every ratio multiplied by one factor
    ``s`` (each capped at its dimension's ``max_sparsity``), the smallest ``s`` whose costs fit ``budgets``.

    Under a budget or over it, the candidate lands on it as closely as ``iterations`` halvings allow (channel
    resolution: halvings until ``s`` moves the largest ratio by under half a channel of a ``channels``-wide
    dimension), so every candidate costs about the budget and the sample decides only
    how the pruning is shared between dimensions. ``t`` is ``s``. A sample with nothing pruned, or one
    that misses even with every ratio at its cap, is moved toward ``max_sparsity`` instead
    (:func:`project_onto_budget`).
    """
    largest = max((r for r in vector.values() if r > 0), default=0.0)
    iterations = max(7, math.ceil(math.log2(2 * max(channels, 1))) + 1)
    if largest <= 0:
        return project_onto_budget(
            vector, budgets, measure, max_sparsity=max_sparsity, step=None, iterations=iterations
        )
    highest = max(max_sparsity[name] / ratio for name, ratio in vector.items() if ratio > 0)
    halvings = max(7, math.ceil(math.log2(max(highest * largest, 1e-6) * 2 * max(channels, 1))) + 1)
    costs, cache = _memoized(measure)

    def scaled(s: float) -> dict[str, float]:
        return {name: round(min(ratio * s, max(max_sparsity[name], 0.0)), 6) for name, ratio in vector.items()}

    found = lowest_fitting(
        lambda s: (s, scaled(s)), lambda pair: within_budgets(budgets, costs(pair[1])), highest, halvings
    )
    if found is None:
        return project_onto_budget(
            scaled(highest), budgets, measure, max_sparsity=max_sparsity, step=None, iterations=iterations
        )
    s, fitted = found
    return Projection(fitted, costs(fitted), s, len(cache), True)
