"""Objectives (a metric name and the direction Optuna optimizes it in) and scoring modes (how a
candidate's metrics become Optuna values): both by name, in registries."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

from prunetuna.config import COST_INFO
from prunetuna.registry import Registry

__all__ = ["OBJECTIVES", "SCORING_MODES", "Objective", "Scoring", "ScoringMode", "objective_values"]


@dataclass(frozen=True)
class Objective:
    """``metric`` is the key in a trial's metrics that Optuna sees for this objective."""

    name: str
    direction: Literal["maximize", "minimize"]
    metric: str


OBJECTIVES: Registry[Objective] = Registry("objective")
OBJECTIVES.register("accuracy", Objective("accuracy", "maximize", "accuracy"))
for _cost in COST_INFO.values():
    # Costs enter Optuna as ratios to the dense model: same Pareto front, scale-free values.
    OBJECTIVES.register(_cost.name, Objective(_cost.name, "minimize", _cost.ratio))


def objective_values(names: Sequence[str], metrics: Mapping[str, float]) -> list[float]:
    """The values to tell Optuna, in the order of ``names``."""
    return [float(metrics[OBJECTIVES[name].metric]) for name in names]


class ScoringMode(ABC):
    """One scoring mode: the study's directions, a candidate's values, an epoch's intermediate value,
    and the accuracy constraint (None: the mode has none)."""

    @abstractmethod
    def directions(self, scoring: Scoring) -> list[str]: ...

    @abstractmethod
    def values(self, scoring: Scoring, metrics: Mapping[str, float]) -> list[float]: ...

    @abstractmethod
    def value_names(self, scoring: Scoring) -> list[str]:
        """The metric behind each Optuna value (what optuna-dashboard labels its axes with)."""

    def intermediate(
        self, scoring: Scoring, accuracy: float, metrics: Mapping[str, float], dense_accuracy: float
    ) -> float:
        return accuracy

    def accuracy_excess(self, scoring: Scoring, accuracy: float, dense_accuracy: float) -> float | None:
        return None

    def score_of(self, scoring: Scoring, metrics: Mapping[str, float]) -> float | None:
        """The one number a trial records as ``metrics["score"]`` (None: the mode has none)."""
        return None


class Pareto(ScoringMode):
    """One Optuna objective per listed objective (a multi-objective study)."""

    def directions(self, scoring: Scoring) -> list[str]:
        return [OBJECTIVES[name].direction for name in scoring.objectives]

    def values(self, scoring: Scoring, metrics: Mapping[str, float]) -> list[float]:
        return objective_values(scoring.objectives, metrics)

    def value_names(self, scoring: Scoring) -> list[str]:
        return [OBJECTIVES[name].metric for name in scoring.objectives]


class Tolerance(ScoringMode):
    """Minimize the one listed cost, subject to accuracy >= dense - ``accuracy_drop``."""

    def directions(self, scoring: Scoring) -> list[str]:
        return ["minimize"]

    def values(self, scoring: Scoring, metrics: Mapping[str, float]) -> list[float]:
        return [float(metrics[OBJECTIVES[scoring.costs[0]].metric])]

    def value_names(self, scoring: Scoring) -> list[str]:
        return [OBJECTIVES[scoring.costs[0]].metric]

    def intermediate(
        self, scoring: Scoring, accuracy: float, metrics: Mapping[str, float], dense_accuracy: float
    ) -> float:
        return dense_accuracy - accuracy  # minimized, like the study: the accuracy lost so far

    def accuracy_excess(self, scoring: Scoring, accuracy: float, dense_accuracy: float) -> float | None:
        if scoring.accuracy_drop is None:
            return None
        return (dense_accuracy - accuracy) - scoring.accuracy_drop


class Scalarized(ScoringMode):
    """Maximize ``accuracy - sum(weight * cost ratio)`` (one number)."""

    def directions(self, scoring: Scoring) -> list[str]:
        return ["maximize"]

    def values(self, scoring: Scoring, metrics: Mapping[str, float]) -> list[float]:
        return [scoring.score(metrics)]

    def value_names(self, scoring: Scoring) -> list[str]:
        return ["score"]

    def intermediate(
        self, scoring: Scoring, accuracy: float, metrics: Mapping[str, float], dense_accuracy: float
    ) -> float:
        return scoring.score({**metrics, "accuracy": accuracy})

    def score_of(self, scoring: Scoring, metrics: Mapping[str, float]) -> float | None:
        return scoring.score(metrics)


SCORING_MODES: Registry[ScoringMode] = Registry("mode")
SCORING_MODES.register("pareto", Pareto())
SCORING_MODES.register("tolerance", Tolerance())
SCORING_MODES.register("scalarized", Scalarized())


@dataclass(frozen=True)
class Scoring:
    """How a candidate's metrics become Optuna values, by ``mode`` (one of :data:`SCORING_MODES`)."""

    mode: str
    objectives: tuple[str, ...]
    accuracy_drop: float | None = None
    weights: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        SCORING_MODES.get(self.mode)  # an unknown mode is an error now, not at the first trial

    @property
    def strategy(self) -> ScoringMode:
        return SCORING_MODES.get(self.mode)

    @property
    def directions(self) -> list[str]:
        return self.strategy.directions(self)

    @property
    def costs(self) -> list[str]:
        return [name for name in self.objectives if name != "accuracy"]

    def score(self, metrics: Mapping[str, float]) -> float:
        return float(metrics["accuracy"]) - sum(w * float(metrics[OBJECTIVES[c].metric]) for c, w in self.weights)

    def values(self, metrics: Mapping[str, float]) -> list[float]:
        return self.strategy.values(self, metrics)

    @property
    def value_names(self) -> list[str]:
        return self.strategy.value_names(self)

    def intermediate(self, accuracy: float, metrics: Mapping[str, float], dense_accuracy: float) -> float:
        """The value an epoch's accuracy gives in the study's direction, for Optuna's pruners (one objective)."""
        return self.strategy.intermediate(self, accuracy, metrics, dense_accuracy)

    def accuracy_excess(self, accuracy: float, dense_accuracy: float) -> float | None:
        """In tolerance mode, the accuracy loss beyond the tolerance (feasible when <= 0)."""
        return self.strategy.accuracy_excess(self, accuracy, dense_accuracy)

    def score_of(self, metrics: Mapping[str, float]) -> float | None:
        """The scalarized score a trial records as ``metrics["score"]`` (None in the other modes)."""
        return self.strategy.score_of(self, metrics)
