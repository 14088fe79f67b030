"""Objectives: a metric name and the direction Optuna optimizes it in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

__all__ = ["OBJECTIVES", "Objective", "objective_values"]


@dataclass(frozen=True)
class Objective:
    """``metric`` is the key in a trial's metrics that Optuna sees for this objective."""

    name: str
    direction: Literal["maximize", "minimize"]
    metric: str


OBJECTIVES: dict[str, Objective] = {
    "accuracy": Objective("accuracy", "maximize", "accuracy"),
    # Costs enter Optuna as ratios to the dense model: same Pareto front, scale-free values.
    "flops": Objective("flops", "minimize", "flops_ratio"),
    "params": Objective("params", "minimize", "params_ratio"),
}


def objective_values(names: Sequence[str], metrics: Mapping[str, float]) -> list[float]:
    """The values to tell Optuna, in the order of ``names``."""
    return [float(metrics[OBJECTIVES[name].metric]) for name in names]
