"""What a trial comes to, decided apart from its effects: each function turns what the trial measured into a
frozen :class:`~prunetuna.store.TrialOutcome` (stops are returned, not raised), which the runner hands to the
one writer and then to Optuna."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from prunetuna.search._plan import TrialPlan
from prunetuna.sparsity import SparsityVector
from prunetuna.store import BudgetStatus, TrialEnd, TrialModel, TrialOutcome

__all__ = ["completed", "drawn", "failed", "over_budget", "stopped"]


def drawn(
    plan: TrialPlan,
    number: int,
    origin: str,
    vector: SparsityVector,
    costs: Mapping[str, float],
    budget: BudgetStatus,
    params: dict[str, object],
    screened: Sequence[Mapping[str, Any]] = (),
) -> TrialOutcome:
    """A candidate drawn and measured, nothing decided yet (state FAIL until it is): its budget constraints, and
    the candidates its screening drew (``search.screening.candidates``)."""
    constraints = {item.key: item.excess(costs) for item in plan.budgets}
    return TrialOutcome(
        number,
        origin,
        TrialEnd.FAIL,
        dict(vector),
        params,
        budget,
        constraints,
        metrics=dict(costs),
        feasible=all(v <= 0 for v in constraints.values()) if constraints else None,
        candidates=tuple(dict(record) for record in screened),
    )


def over_budget(plan: TrialPlan, base: TrialOutcome) -> TrialOutcome | None:
    """PRUNED before any training when the candidate stays over a budget even at max_sparsity."""
    if base.budget is not BudgetStatus.OVER:
        return None
    costs = base.metrics
    reason = "; ".join(f"{b.key} {b.describe(costs)} > {b.limit:g}" for b in plan.budgets if b.excess(costs) > 0)
    return stopped(base, f"over budget even at max_sparsity: {reason}")


def stopped(base: TrialOutcome, reason: str, **changes: object) -> TrialOutcome:
    """PRUNED with its reason (over budget, screened out, stopped early); ``changes`` what it measured."""
    return dataclasses.replace(base, state=TrialEnd.PRUNED, stop_reason=reason, feasible=None, **changes)


def completed(
    plan: TrialPlan,
    base: TrialOutcome,
    metrics: dict[str, float],
    epochs: Sequence[float],
    keep_epochs: bool,
    model: TrialModel | None,
) -> TrialOutcome:
    """COMPLETE after its fine-tune: the score, the accuracy-drop constraint, feasibility, Optuna's values, and
    whether a built-in classifier ended at or below chance (1/classes: a fine-tune that diverged, marked)."""
    metrics = dict(metrics)
    score = plan.scoring.score_of(metrics)
    if score is not None:
        metrics["score"] = score
    constraints = dict(base.constraints)
    excess = plan.scoring.accuracy_excess(metrics["accuracy"], plan.dense["accuracy"])
    if excess is not None:
        constraints["accuracy_drop"] = excess
    feasible = all(v <= 0 for v in constraints.values()) if constraints else None
    return dataclasses.replace(
        base,
        state=TrialEnd.COMPLETE,
        below_chance=plan.chance is not None and metrics["accuracy"] <= plan.chance + 1e-9,
        metrics=metrics,
        epochs=tuple(epochs),
        keep_epochs=keep_epochs,
        constraints=constraints,
        feasible=feasible,
        values=tuple(plan.scoring.values(metrics)),
        model=model,
    )


def failed(
    number: int,
    origin: str,
    params: dict[str, object],
    error: BaseException,
    traceback: str,
    base: TrialOutcome | None,
    *,
    tracking_away: bool = False,
) -> TrialOutcome:
    """FAIL with the error as its reason (and what was measured before it, for the run)."""
    reason = f"{error.__class__.__name__}: {error}"[:1000]
    if base is None:
        return TrialOutcome(
            number,
            origin,
            TrialEnd.FAIL,
            params=params,
            fail_reason=reason,
            traceback=traceback,
            tracking_away=tracking_away,
        )
    return dataclasses.replace(
        base,
        state=TrialEnd.FAIL,
        fail_reason=reason,
        traceback=traceback,
        tracking_away=tracking_away,
        feasible=None,
        stop_reason=None,
    )
