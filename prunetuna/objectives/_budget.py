"""Budgets on costs, and projection of an over-budget sample onto the budget.

A sample over budget is *projected*, not rejected: every ratio is moved toward ``max_sparsity``
by the same fraction t (as AMC does), and the smallest t on the step grid that fits is found by
bisection on the cheap costs. Rejecting would spend a trial on nothing; projecting turns every
sample into a feasible candidate worth fine-tuning, and the trial records both vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from prunetuna.objectives._costs import COSTS

__all__ = ["Budget", "Projection", "parse_budgets", "project_onto_budget", "within_budgets"]

ABSOLUTE_KEYS = {"flops_count": "flops", "params_count": "params", "size_bytes": "size", "latency_ms": "latency"}


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
        if key in ABSOLUTE_KEYS:
            budgets.append(Budget(key, ABSOLUTE_KEYS[key], float(limit), True))
        elif key in COSTS:
            budgets.append(Budget(key, key, float(limit), False))
        else:
            raise ValueError(f"unknown constraint {key!r}; choose from {', '.join([*COSTS, *ABSOLUTE_KEYS])}")
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


def _toward(vector: Mapping[str, float], t: float, max_sparsity: float | Mapping[str, float], step: float | None) -> dict[str, float]:
    moved = {}
    for name, ratio in vector.items():
        cap = max_sparsity[name] if isinstance(max_sparsity, Mapping) else max_sparsity
        target = ratio + t * (cap - ratio)
        snapped = target if step is None else math.ceil(target / step - 1e-9) * step
        moved[name] = round(min(max(snapped, ratio), max(cap, ratio)), 6)
    return moved


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
    cache: dict[tuple[float, ...], dict[str, float]] = {}

    def costs(candidate: dict[str, float]) -> dict[str, float]:
        key = tuple(candidate.values())
        if key not in cache:
            cache[key] = measure(candidate)
        return cache[key]

    high = _toward(vector, 1.0, max_sparsity, step)
    if not within_budgets(budgets, costs(high)):
        return Projection(high, costs(high), 1.0, len(cache), False)
    low_t, high_t = 0.0, 1.0
    for _ in range(iterations):
        middle_t = (low_t + high_t) / 2
        candidate = _toward(vector, middle_t, max_sparsity, step)
        if within_budgets(budgets, costs(candidate)):
            high_t, high = middle_t, candidate
        else:
            low_t = middle_t
    return Projection(high, costs(high), high_t, len(cache), True)
