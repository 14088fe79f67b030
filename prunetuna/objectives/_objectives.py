"""Objectives: a metric name and the direction Optuna optimizes it in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

__all__ = ["OBJECTIVES", "Objective", "Scoring", "objective_values"]


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
    "size": Objective("size", "minimize", "size_ratio"),
    "latency": Objective("latency", "minimize", "latency_ratio"),
}


def objective_values(names: Sequence[str], metrics: Mapping[str, float]) -> list[float]:
    """The values to tell Optuna, in the order of ``names``."""
    return [float(metrics[OBJECTIVES[name].metric]) for name in names]


@dataclass(frozen=True)
class Scoring:
    """How a candidate's metrics become Optuna values, by mode.

    - ``pareto``: one Optuna objective per listed objective (a multi-objective study);
    - ``tolerance``: minimize the one listed cost, subject to accuracy >= dense - ``accuracy_drop``;
    - ``scalarized``: maximize ``accuracy - sum(weight * cost ratio)`` (one number).
    """

    mode: Literal["pareto", "tolerance", "scalarized"]
    objectives: tuple[str, ...]
    accuracy_drop: float | None = None
    weights: tuple[tuple[str, float], ...] = ()

    @property
    def directions(self) -> list[str]:
        if self.mode == "tolerance":
            return ["minimize"]
        if self.mode == "scalarized":
            return ["maximize"]
        return [OBJECTIVES[name].direction for name in self.objectives]

    @property
    def costs(self) -> list[str]:
        return [name for name in self.objectives if name != "accuracy"]

    def score(self, metrics: Mapping[str, float]) -> float:
        return float(metrics["accuracy"]) - sum(w * float(metrics[OBJECTIVES[c].metric]) for c, w in self.weights)

    def score_of(self, metrics: Mapping[str, float]) -> float | None:
        """The scalarized score a trial records as ``metrics["score"]`` (None in the other modes)."""
        return self.score(metrics) if self.mode == "scalarized" else None

    def values(self, metrics: Mapping[str, float]) -> list[float]:
        if self.mode == "tolerance":
            return [float(metrics[OBJECTIVES[self.costs[0]].metric])]
        if self.mode == "scalarized":
            return [self.score(metrics)]
        return objective_values(self.objectives, metrics)

    def intermediate(self, accuracy: float, metrics: Mapping[str, float], dense_accuracy: float) -> float:
        """The value an epoch's accuracy gives in the study's direction, for Optuna's pruners (one objective)."""
        if self.mode == "tolerance":
            return dense_accuracy - accuracy  # minimized, like the study: the accuracy lost so far
        if self.mode == "scalarized":
            return self.score({**metrics, "accuracy": accuracy})
        return accuracy

    def accuracy_excess(self, accuracy: float, dense_accuracy: float) -> float | None:
        """In tolerance mode, the accuracy loss beyond the tolerance (feasible when <= 0)."""
        if self.accuracy_drop is None:
            return None
        return (dense_accuracy - accuracy) - self.accuracy_drop
