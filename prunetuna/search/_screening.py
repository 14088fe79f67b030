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

__all__ = [
    "Choice",
    "ScreenPoint",
    "Screening",
    "choose_candidate",
    "earlier_points",
    "hypervolume",
    "pre_finetune_score",
    "screen_point",
]

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


# Several candidates per trial (``search.screening.candidates``, EagleEye-style): the trial's sampler draws K
# vectors, each is pruned, projected onto the budget, recalibrated and scored (search/_candidate.py), and only the
# one chosen here is fine-tuned; the others are recorded in the trial with why they were dropped.


@dataclass(frozen=True)
class Choice:
    """Which of a trial's drawn candidates is fine-tuned, and why each other one was dropped (None: the chosen)."""

    index: int
    reasons: tuple[str | None, ...]
    gains: tuple[float, ...] = ()  # hypervolume each draw adds to the earlier points (the unbudgeted rule only)


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The volume (all coordinates minimized) that ``points`` dominate up to ``reference``: slices along the last
    coordinate, exact; for the handful of coordinates a study has."""
    inside = sorted((tuple(p) for p in points if all(a < r for a, r in zip(p, reference))), key=lambda p: p[-1])
    if not inside:
        return 0.0
    if len(reference) == 1:
        return reference[0] - inside[0][0]
    total = 0.0
    for i, point in enumerate(inside):
        upper = inside[i + 1][-1] if i + 1 < len(inside) else reference[-1]
        if upper > point[-1]:
            total += (upper - point[-1]) * hypervolume([p[:-1] for p in inside[: i + 1]], reference[:-1])
    return total


def _gains(points: Sequence[ScreenPoint], earlier: Sequence[ScreenPoint]) -> list[float]:
    """What each point adds to the hypervolume of the earlier points (score maximized, costs minimized); reference
    score 0 (or below the lowest score, for a negated metric), reference cost ratio 1 (or the highest)."""
    everyone = [*points, *earlier]
    low, high = min(p.score for p in everyone), max(p.score for p in everyone)
    reference = (-min(0.0, low - (high - low) - 1e-9), *(max(1.0, *c) for c in zip(*(p.costs for p in everyone))))
    front = [(-p.score, *p.costs) for p in earlier if not any(o.dominates(p) for o in earlier)]
    before = hypervolume(front, reference)
    return [hypervolume([*front, (-p.score, *p.costs)], reference) - before for p in points]


def choose_candidate(
    points: Sequence[ScreenPoint],
    fits: Sequence[bool],
    earlier: Sequence[ScreenPoint],
    by_score: bool,
    cost_names: Sequence[str] = (),
) -> Choice:
    """The candidate to fine-tune among a trial's draws, by their pre-fine-tune points.

    ``by_score`` (a budget, or one scalarized objective): the highest score among those that fit the budget.
    Otherwise (a front to extend): the most hypervolume added to the ``earlier`` trials' stored points, then
    the fewest earlier points dominating it, then the highest score. Ties go to the earlier draw.
    ``cost_names`` name the points' costs in the reasons.
    """
    count = len(points)
    by_score = by_score or not points[0].costs
    earlier = [p for p in earlier if len(p.costs) == len(points[0].costs)]
    if by_score:
        keys = [(fit, p.score) for fit, p in zip(fits, points)]
        gains: list[float] = []
    else:
        gains = _gains(points, earlier)
        keys = [
            (fit, gain, -sum(o.dominates(p) for o in earlier), p.score) for fit, gain, p in zip(fits, gains, points)
        ]
    index = max(range(count), key=lambda i: (keys[i], -i))
    chosen = points[index]

    def reason(i: int) -> str | None:
        if i == index:
            return None
        head = f"screened: candidate {i + 1} of {count}"
        point = points[i]
        if not fits[i] and fits[index]:
            return f"{head} stays over the budget even at max_sparsity; candidate {index + 1} fits it"
        if by_score:
            return (
                f"{head} scored {point.score:.4f} after pruning and BN recalibration, "
                f"{'below' if point.score < chosen.score else 'no better than'} the chosen {chosen.score:.4f}"
                f" (candidate {index + 1})"
            )
        return (
            f"{head} (score {point.score:.4f} after pruning and BN recalibration, "
            f"{', '.join(f'{n} {c:.4f}' for n, c in zip(cost_names or ['cost'] * len(point.costs), point.costs))}, "
            f"dominated by {-keys[i][2]} earlier points) adds "
            f"{gains[i]:.4g} hypervolume to the earlier pre-fine-tune points; the chosen candidate {index + 1} "
            f"(score {chosen.score:.4f}, dominated by {-keys[index][2]}) adds {gains[index]:.4g}"
        )

    return Choice(index, tuple(reason(i) for i in range(count)), tuple(gains))
