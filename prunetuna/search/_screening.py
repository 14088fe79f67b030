"""Screening before fine-tuning: a candidate dominated before any fine-tune is stopped there.

A candidate is pruned, its BatchNorm statistics recalibrated and scored (``accuracy_pruned``) in a small
fraction of a fine-tune, and that pre-fine-tune score ranks candidates almost as their fine-tuned score
does (Spearman 0.95 in the embedded default's 30 trials, issue 14). So, right after it is measured,
the candidate's point (pre-fine-tune score, maximized; its costs, minimized) is compared with the
points of earlier candidates; when at least ``min_dominating`` of them are at least as good in every
coordinate and strictly better in one, it is stopped before its fine-tune (PRUNED, reason recorded).

The rule reads only the points stored in the trials' records (``TrialRecord.screening``), so a resumed
study decides as the first run would have, and it names no metric: the score is whatever
:func:`pre_finetune_score` gives (today the accuracy after pruning and recalibration, or the scalarized
score with it in place of the fine-tuned accuracy); a user metric (issue 12) plugs in there.
Enqueued baselines are never screened: the report compares the search with them fine-tuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from optuna.trial import FrozenTrial, TrialState

from prunetuna.objectives import OBJECTIVES, Scoring
from prunetuna.store import TrialRecord

__all__ = ["ScreenPoint", "Screening", "earlier_points", "pre_finetune_score", "screen_point"]

PRE_FINETUNE_METRIC = "accuracy_pruned"
"""The metric measured after pruning and BN recalibration, before any fine-tune."""


@dataclass(frozen=True)
class ScreenPoint:
    """A candidate before its fine-tune: its trial number, pre-fine-tune score (higher is better) and costs."""

    number: int
    score: float
    costs: tuple[float, ...]

    def dominates(self, other: ScreenPoint) -> bool:
        no_worse = self.score >= other.score and all(c <= o for c, o in zip(self.costs, other.costs))
        better = self.score > other.score or any(c < o for c, o in zip(self.costs, other.costs))
        return no_worse and better

    def stored(self) -> dict[str, object]:
        return {"score": self.score, "costs": list(self.costs)}


def pre_finetune_score(scoring: Scoring, metrics: Mapping[str, float]) -> float:
    """The candidate's score before its fine-tune, in the study's sense of better (higher): the
    scalarized score with the pre-fine-tune accuracy in scalarized mode, that accuracy otherwise."""
    accuracy = float(metrics[PRE_FINETUNE_METRIC])
    score = scoring.score_of({**metrics, "accuracy": accuracy})
    return accuracy if score is None else score


def cost_metrics(scoring: Scoring) -> list[str]:
    """The cost ratios a screened point carries: the study's cost objectives."""
    return [OBJECTIVES[name].metric for name in scoring.costs]


def screen_point(number: int, scoring: Scoring, metrics: Mapping[str, float]) -> ScreenPoint:
    return ScreenPoint(
        number, pre_finetune_score(scoring, metrics), tuple(float(metrics[m]) for m in cost_metrics(scoring))
    )


def earlier_points(trials: Iterable[FrozenTrial], number: int) -> list[ScreenPoint]:
    """The stored pre-fine-tune points of the trials numbered below ``number`` (finished, or running
    with their point written), whatever became of them after (fine-tuned, stopped, screened out)."""
    points = []
    for trial in trials:
        if trial.number >= number or trial.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
            continue
        stored = TrialRecord.of(trial).screening
        if stored and "score" in stored:
            points.append(
                ScreenPoint(trial.number, float(stored["score"]), tuple(float(c) for c in stored.get("costs", ())))
            )
    return points


@dataclass(frozen=True)
class Screening:
    """The rule: stop a candidate that ``min_dominating`` earlier points dominate."""

    min_dominating: int = 3

    def dominating(self, point: ScreenPoint, earlier: Sequence[ScreenPoint]) -> list[ScreenPoint]:
        return [other for other in earlier if len(other.costs) == len(point.costs) and other.dominates(point)]

    def decide(self, point: ScreenPoint, earlier: Sequence[ScreenPoint]) -> str | None:
        """A reason to stop before the fine-tune, or None to fine-tune."""
        dominating = self.dominating(point, earlier)
        if len(dominating) < self.min_dominating:
            return None
        numbers = ", ".join(str(p.number) for p in dominating[:5]) + (" ..." if len(dominating) > 5 else "")
        return (
            f"screened out before fine-tuning: pre-fine-tune score {point.score:.4f} and costs dominated by "
            f"{len(dominating)} earlier candidates (trials {numbers}; min_dominating {self.min_dominating})"
        )
