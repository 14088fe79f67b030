"""Early stopping of fine-tunes: Optuna's pruners for one objective, a dominance rule for several.

Optuna's pruners do not apply to multi-objective studies. There, after epoch k, a candidate stops
when at least ``min_dominating`` earlier trials, at the same epoch k, had accuracy at least as high
and every cost at most as high (one of them strictly better): it is unlikely to reach the front.
The decision is a plain function of records; the Lightning callback only asks it and stops.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import lightning.pytorch as pl
import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from prunetuna.registry import Registry
from prunetuna.store import TrialRecord

__all__ = [
    "EARLY_STOPPING",
    "EarlyStoppingRule",
    "EpochRecord",
    "Promotion",
    "RungPoint",
    "StopContext",
    "StopDecision",
    "TrialPruningCallback",
    "dominance_decision",
    "dominated_count",
    "epoch_records",
    "make_pruner",
    "optuna_decision",
    "rung_points",
]

StopDecision = Callable[[int, float], "str | None"]
"""(epoch from 1, validation accuracy) -> a reason to stop, or None to go on."""


@dataclass(frozen=True)
class EpochRecord:
    """An earlier trial's accuracy after each epoch, and its cost ratios."""

    number: int
    accuracy: tuple[float, ...]
    costs: tuple[float, ...]


def dominated_count(accuracy: float, costs: Sequence[float], records: Sequence[EpochRecord], epoch: int) -> int:
    """How many records, at ``epoch``, are at least as accurate and as cheap, and strictly better in one."""
    count = 0
    for record in records:
        if len(record.accuracy) < epoch:
            continue
        other = record.accuracy[epoch - 1]
        no_worse = other >= accuracy and all(c <= own for c, own in zip(record.costs, costs))
        better = other > accuracy or any(c < own for c, own in zip(record.costs, costs))
        count += no_worse and better
    return count


def epoch_records(trials: Sequence[FrozenTrial], cost_metrics: Sequence[str]) -> list[EpochRecord]:
    """Records of the finished trials that kept their per-epoch accuracy."""
    records = []
    for trial in trials:
        record = TrialRecord.of(trial)
        curve, metrics = record.epoch_accuracy, record.metrics
        if (
            trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and curve
            and all(m in metrics for m in cost_metrics)
        ):
            records.append(EpochRecord(trial.number, tuple(curve), tuple(metrics[m] for m in cost_metrics)))
    return records


def dominance_decision(
    costs: Sequence[float], records: Sequence[EpochRecord], min_dominating: int, last_epoch: int
) -> StopDecision:
    def decide(epoch: int, accuracy: float) -> str | None:
        if epoch >= last_epoch:
            return None  # the run is over anyway
        count = dominated_count(accuracy, costs, records, epoch)
        if count >= min_dominating:
            return (
                f"dominated after epoch {epoch} (accuracy {accuracy:.4f}) by {count} earlier trials at the same epoch"
            )
        return None

    return decide


def optuna_decision(trial: Trial, value: Callable[[float], float], name: str) -> StopDecision:
    def decide(epoch: int, accuracy: float) -> str | None:
        trial.report(value(accuracy), step=epoch)
        if trial.should_prune():
            return f"stopped by the {name} pruner after epoch {epoch} (accuracy {accuracy:.4f})"
        return None

    return decide


@dataclass(frozen=True)
class StopContext:
    """What a rule may look at for one candidate: its trial, its costs and how its accuracy scores."""

    trial: Trial
    costs: Mapping[str, float]
    cost_metrics: Sequence[str]  # the metric keys of the study's costs, in order
    intermediate: Callable[[float], float]  # an epoch's accuracy -> the value in the study's direction
    min_dominating: int
    epochs: int


class EarlyStoppingRule(ABC):
    """An early-stopping rule (``search.pruner``): the Optuna pruner the study is created with, and the
    per-epoch decision for one candidate (None: train every epoch)."""

    def pruner(self, epochs: int) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()

    @abstractmethod
    def decision(self, context: StopContext) -> StopDecision | None: ...


class NoStopping(EarlyStoppingRule):
    def decision(self, context: StopContext) -> StopDecision | None:
        return None


class OptunaPrunerRule(EarlyStoppingRule):
    """One of Optuna's pruners (one objective): the trial reports each epoch's value and asks it."""

    def __init__(self, name: str, factory: Callable[[int], optuna.pruners.BasePruner]) -> None:
        self.name = name
        self.factory = factory

    def pruner(self, epochs: int) -> optuna.pruners.BasePruner:
        return self.factory(epochs)

    def decision(self, context: StopContext) -> StopDecision | None:
        return optuna_decision(context.trial, context.intermediate, self.name)


class DominanceRule(EarlyStoppingRule):
    """Any number of objectives: stop a candidate that enough earlier trials dominate at the same epoch."""

    def decision(self, context: StopContext) -> StopDecision | None:
        finished = context.trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        records = epoch_records(finished, context.cost_metrics)
        costs = [context.costs[m] for m in context.cost_metrics]
        return dominance_decision(costs, records, context.min_dominating, context.epochs)


EARLY_STOPPING: Registry[EarlyStoppingRule] = Registry("pruner")
EARLY_STOPPING.register("none", NoStopping())
EARLY_STOPPING.register(
    "median",
    OptunaPrunerRule("median", lambda epochs: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)),
)
EARLY_STOPPING.register(
    "hyperband",
    OptunaPrunerRule(
        "hyperband", lambda epochs: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    ),
)
EARLY_STOPPING.register("dominated", DominanceRule())


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner the config names (``dominated`` and ``none`` prune nothing through Optuna);
    an unknown name is an error."""
    return EARLY_STOPPING.get(name).pruner(epochs)


class TrialPruningCallback(pl.Callback):
    """Fed the task score after each epoch (:meth:`observe`: the built-in classifier's accuracy or the user
    module's metric, as the task reports it), asks ``decide``; on a reason, keeps it and stops the fit."""

    def __init__(self, decide: StopDecision) -> None:
        self.decide = decide
        self.reason: str | None = None
        self.epoch_accuracy: list[float] = []
        self._trainer: pl.Trainer | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def observe(self, epoch: int, score: float) -> None:
        self.epoch_accuracy.append(float(score))
        if self.reason is not None:
            return
        reason = self.decide(epoch, float(score))
        if reason:
            self.reason = reason
            if self._trainer is not None:
                self._trainer.should_stop = True


@dataclass(frozen=True)
class RungPoint:
    """A candidate after its short fine-tune: trial number, score (higher is better), costs, within budget."""

    number: int
    score: float
    costs: tuple[float, ...]
    feasible: bool = True

    def stored(self) -> dict[str, object]:
        return {"score": self.score, "costs": list(self.costs), "feasible": self.feasible}

    def beats(self, other: RungPoint, budgeted: bool) -> bool:
        """Under a budget only the score counts (the budget already equalizes the cost); otherwise dominance."""
        if budgeted:
            return self.score > other.score
        no_worse = self.score >= other.score and all(c <= o for c, o in zip(self.costs, other.costs))
        return no_worse and (self.score > other.score or any(c < o for c, o in zip(self.costs, other.costs)))


def rung_points(trials: Sequence[FrozenTrial], number: int) -> list[RungPoint]:
    """The short fine-tune points stored by the trials numbered below ``number`` (``TrialRecord.promotion``)."""
    points = []
    for trial in trials:
        stored = TrialRecord.of(trial).promotion if trial.number < number else None
        if stored and "score" in stored:
            points.append(
                RungPoint(
                    trial.number,
                    float(stored["score"]),
                    tuple(float(c) for c in stored.get("costs", ())),
                    bool(stored.get("feasible", True)),
                )
            )
    return points


@dataclass(frozen=True)
class Promotion:
    """Successive halving's second rung, decided as each candidate finishes its short fine-tune (as ASHA
    does, so no worker waits for a rung to fill): promoted when fewer than ``top`` earlier candidates beat
    its short score (see :meth:`RungPoint.beats`); enqueued baselines always are."""

    top: int

    def decide(
        self, point: RungPoint, earlier: Sequence[RungPoint], baseline: bool, budgeted: bool
    ) -> tuple[bool, str]:
        if baseline:
            return True, "promoted: an enqueued baseline (always compared after the longer fine-tune)"
        if budgeted and not point.feasible:
            return False, "not promoted: over the budget"
        rivals = [p for p in earlier if (p.feasible or not budgeted) and p.beats(point, budgeted)]
        if len(rivals) < self.top:
            return True, f"promoted: {len(rivals)} earlier candidates beat its short fine-tune score (top {self.top})"
        numbers = ", ".join(str(p.number) for p in rivals[:5]) + (" ..." if len(rivals) > 5 else "")
        return False, f"not promoted: {len(rivals)} earlier candidates beat its short score (trials {numbers})"
