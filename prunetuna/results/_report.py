"""``prunetuna report``: the Pareto-optimal trials beside the dense model, as a table or the JSON of docs/design.md."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

from prunetuna.config import COST_INFO
from prunetuna.results._report_lines import device_line, failure_lines, promoted_line
from prunetuna.store import StudyRecord, TrialEnd, TrialRecord

__all__ = [
    "SLOW_FOR_FLOPS",
    "BaselineGain",
    "ReportTrial",
    "StudyReport",
    "build_report",
    "gain_lines",
    "render_report",
]

SLOW_FOR_FLOPS = 0.8
"""A candidate is flagged when its measured speedup is below this share of its FLOPs reduction."""

COST_METRICS = tuple((cost.name, cost.metric) for cost in COST_INFO.values())


def _speed_flag(metrics: dict[str, float]) -> bool | None:
    if "speedup" not in metrics or not metrics.get("flops_reduction"):
        return None
    return metrics["speedup"] < SLOW_FOR_FLOPS * metrics["flops_reduction"]


@dataclass(frozen=True)
class ReportTrial:
    """One trial as the report shows it (``report --json``'s ``trials[]``, docs/design.md)."""

    number: int
    state: str  # a TrialEnd, RUNNING or WAITING
    metrics: dict[str, float]
    sparsity: dict[str, float]
    pareto: bool
    feasible: bool | None
    origin: str
    mlflow_run_id: str | None
    budget: str | None
    slow_for_flops: bool | None
    below_chance: bool = False  # COMPLETE at or below 1/classes (the built-in classifier): its fine-tune diverged
    fail_reason: str | None = None  # FAIL: the error that ended it
    candidates: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # screening.candidates > 1: the draws

    @property
    def complete(self) -> bool:
        return self.state == TrialEnd.COMPLETE.value

    def ratio(self, cost: str) -> float | None:
        return self.metrics.get(f"{cost}_ratio")


@dataclass(frozen=True)
class BaselineGain:
    """The best searched trial at equal or lower cost than one baseline trial (``report --json``'s ``baselines[]``)."""

    origin: str
    trial: int
    cost: str
    cost_ratio: float
    accuracy: float
    best_searched_trial: int | None
    best_searched_cost_ratio: float | None
    gain_points: float | None


@dataclass(frozen=True)
class StudyReport:
    """The study as the report shows it: ``as_json()`` is the ``report --json`` schema of docs/design.md."""

    study: str
    objectives: list[str]
    mode: str
    method: str
    flops_kind: str
    constraints: dict[str, float]
    tolerance: float | None
    metric: dict[str, str]  # the task score: metrics[name] (and the "accuracy" slot, negated for mode min)
    dense: dict[str, float]
    latency_device: dict[str, Any] | None  # where latency was measured (this machine or the device agent)
    dimensions: list[dict[str, Any]]
    best: int | None
    baselines: list[BaselineGain]
    trials: list[ReportTrial]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def baseline_gains(items: Sequence[ReportTrial], cost: str) -> list[BaselineGain]:
    """For each baseline trial (origin other than sampler): the best searched trial at equal or lower cost.

    Only a searched candidate that costs no more than the baseline is compared with it (a cheaper baseline
    would otherwise lose for spending less); ``best_searched_cost_ratio`` records the one compared.
    """
    measured = [t for t in items if t.complete and t.ratio(cost) is not None]
    searched = [t for t in measured if t.origin == "sampler" and t.feasible is not False]
    gains = []
    for base in (t for t in measured if t.origin != "sampler"):
        limit = base.ratio(cost)
        rivals = [t for t in searched if t.ratio(cost) <= limit + 1e-12]
        best = max(rivals, key=lambda t: (t.metrics["accuracy"], -t.ratio(cost)), default=None)
        gains.append(
            BaselineGain(
                base.origin,
                base.number,
                cost,
                limit,
                base.metrics["accuracy"],
                best.number if best else None,
                best.ratio(cost) if best else None,
                (best.metrics["accuracy"] - base.metrics["accuracy"]) * 100 if best else None,
            )
        )
    return gains


def build_report(study: optuna.Study) -> StudyReport:
    """The study's report (``mode`` and ``best`` included).

    The Pareto front is Optuna's ``study.best_trials``: non-dominated among the trials that meet every constraint.
    """
    trials = study.get_trials(deepcopy=False)
    front = {t.number for t in study.best_trials} if any(t.state == TrialState.COMPLETE for t in trials) else set()
    attrs = StudyRecord.of(study.user_attrs)
    items = []
    for trial in trials:
        record = TrialRecord.of(trial)
        items.append(
            ReportTrial(
                number=trial.number,
                state=trial.state.name,
                metrics=record.metrics,
                sparsity=record.sparsity,
                pareto=trial.number in front,
                feasible=record.is_feasible if trial.state == TrialState.COMPLETE else None,
                origin=record.origin,
                mlflow_run_id=record.mlflow_run_id,
                budget=record.budget.value or None,
                slow_for_flops=_speed_flag(record.metrics),
                below_chance=record.below_chance and trial.state == TrialState.COMPLETE,
                fail_reason=record.fail_reason if trial.state == TrialState.FAIL else None,
                candidates=list(record.candidates),
            )
        )
    cost = next(iter(attrs.costs), "flops")
    return StudyReport(
        study=study.study_name,
        objectives=list(attrs.objectives),
        mode=attrs.mode,
        method=attrs.method,
        flops_kind="dense" if attrs.method == "structured" else "effective (non-zero multiply-adds)",
        constraints=attrs.constraints,
        tolerance=attrs.tolerance,
        metric=attrs.metric,
        dense=attrs.dense,
        latency_device=attrs.latency_device,
        dimensions=[{"name": name, "layers": attrs.dimension_layers.get(name)} for name in attrs.dimensions],
        best=min(front) if attrs.mode != "pareto" and front else None,
        baselines=baseline_gains(items, cost),
        trials=items,
    )


def gain_lines(report: StudyReport) -> list[str]:
    """One line per baseline: what the best searched candidate at equal or lower cost gained over it, both
    costs printed; no gain is stated when no searched candidate costs as little as the baseline."""
    lines = []
    for gain in report.baselines:
        cost, base = gain.cost, f"{gain.cost_ratio:.4f}"
        if gain.gain_points is None:
            lines.append(
                f"{gain.origin} (trial {gain.trial}, {cost} {base}): no searched candidate at equal or lower "
                f"{cost} yet; no gain stated (candidates at higher cost are not compared with it)"
            )
        else:
            lines.append(
                f"best searched vs {gain.origin} at equal or lower {cost}: {gain.gain_points:+.2f} points "
                f"(trial {gain.best_searched_trial} at {cost} {gain.best_searched_cost_ratio:.4f} vs "
                f"trial {gain.trial} at {cost} {base})"
            )
    return lines


def render_report(report: StudyReport, console: Console) -> None:
    """A table of the Pareto trials (best accuracy first) under a dense row, then one line of totals."""
    dense = report.dense
    costs = [(name, metric) for name, metric in COST_METRICS if metric in dense]
    title = (
        f"study {report.study}: "
        + ("Pareto-optimal trials" if report.mode == "pareto" else f"best trial ({report.mode})")
        + f" — objectives {', '.join(report.objectives)}; method {report.method}"
    )
    if report.flops_kind != "dense":
        title += f" (FLOPs and params {report.flops_kind}; latency and size on dense kernels)"
    if report.constraints:
        title += f"; budget {report.constraints}"
    table = Table(title=title)
    metric = report.metric or {"name": "accuracy", "mode": "max"}
    name = metric["name"]
    scale, unit = (100, "pts") if name == "accuracy" else (1, "diff")

    def value(metrics: dict[str, float]) -> float:
        return metrics.get(name, metrics.get("accuracy", float("nan")))

    shown = [t for t in report.trials if (t.pareto or t.origin != "sampler") and t.metrics and t.complete]
    # the score right after pruning and BN recalibration, before the fine-tune (the accuracy slot: negated for min)
    pruned = any("accuracy_pruned" in t.metrics for t in shown)
    sign = -1.0 if metric["mode"] == "min" else 1.0
    columns = ("trial", "origin", *([f"{name} pruned"] if pruned else []), name, f"vs dense ({unit})")
    for column in (*columns, *[f"{cost} ratio" for cost, _ in costs]):
        table.add_column(column, justify="right" if column not in ("origin",) else "left")
    has_speed = any(metric == "latency_ms" for _, metric in costs)
    if has_speed:
        table.add_column("speedup", justify="right")
        table.add_column("FLOPs red.", justify="right")
    table.add_column("feasible")
    table.add_column("mlflow run")
    row = ["dense", "", *([""] if pruned else []), f"{value(dense):.4f}", "+0.00", *["1.00"] * len(costs)]
    if has_speed:
        row += ["1.00x", "1.00x"]
    table.add_row(*row, "", "", style="bold")
    shown.sort(key=lambda t: -t.metrics.get("accuracy", 0.0))
    for trial in shown:
        metrics = trial.metrics
        score = value(metrics)
        row = [
            str(trial.number),
            trial.origin + (" (projected)" if trial.budget == "projected" else "") + (" (chance)" * trial.below_chance),
            *([f"{sign * metrics['accuracy_pruned']:.4f}" if "accuracy_pruned" in metrics else "-"] if pruned else []),
            f"{score:.4f}",
            f"{(score - value(dense)) * scale:+.{2 if scale == 100 else 4}f}",
        ]  # the metric's own sign (mode min: + is worse)
        row += [f"{metrics[f'{cost}_ratio']:.3f}" if f"{cost}_ratio" in metrics else "-" for cost, _ in costs]
        if has_speed:
            flag = " (!)" if trial.slow_for_flops else ""
            row += [
                f"{metrics['speedup']:.2f}x{flag}" if "speedup" in metrics else "-",
                f"{metrics['flops_reduction']:.2f}x" if "flops_reduction" in metrics else "-",
            ]
        row += ["yes" if trial.feasible else "no", trial.mlflow_run_id or ""]
        table.add_row(*row)
    console.print(table)
    states: dict[str, int] = {}
    for trial in report.trials:
        states[trial.state] = states.get(trial.state, 0) + 1
    summary = ", ".join(f"{count} {state.lower()}" for state, count in sorted(states.items())) or "no trials"
    console.print(f"{len(report.trials)} trials ({summary}); {len(shown)} shown")
    for line in [*failure_lines(report.trials), promoted_line(report.trials)]:
        if line:
            console.print(line, markup=False, highlight=False)
    if report.dimensions:
        covered = ", ".join(
            f"{d['name']} ({d['layers']} layers)" if d.get("layers") else d["name"] for d in report.dimensions
        )
        console.print(f"{len(report.dimensions)} dimensions (sparsity.<name>, with the layers each prunes): {covered}")
    if has_speed and report.latency_device:
        console.print(f"latency measured on {device_line(report.latency_device)}")
    for line in gain_lines(report):
        console.print(line)
    if low := ", ".join(str(t.number) for t in report.trials if t.below_chance):
        console.print(f"(chance) trials {low} ended at or below chance (accuracy <= 1/classes): fine-tune diverged")
    if has_speed and any(t.slow_for_flops for t in shown):
        console.print(
            f"(!) measured speedup below {SLOW_FOR_FLOPS:.0%} of the FLOPs reduction: fixed per-operator costs and "
            "channel counts that miss the fast kernels eat the savings; try pruning.round_to: 8 or 16, a wider "
            "model, latency.batch_size as deployed, latency as an objective, or measuring on the target "
            "(latency.backend: remote)"
        )
    if report.mode == "tolerance":
        best = next((t for t in report.trials if t.number == report.best), None)
        limit = f"{report.tolerance * 100:.2f} pts" if scale == 100 else f"{report.tolerance:g}"
        if best is None:
            console.print(
                f"no candidate within tolerance ({name} {'drop' if metric['mode'] == 'max' else 'increase'} <= "
                f"{limit}) yet"
            )
        else:
            cost = report.objectives[-1] if report.objectives[-1] != "accuracy" else report.objectives[0]
            console.print(
                f"smallest candidate within tolerance ({limit}): trial {best.number}, "
                f"{cost} {best.metrics.get(f'{cost}_ratio', float('nan')):.3f} of dense, {name} "
                f"{value(best.metrics):.4f}"
            )
