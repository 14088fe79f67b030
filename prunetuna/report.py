"""``prunetuna report``: the Pareto-optimal trials beside the dense model, as a table or DESIGN.md's JSON."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

__all__ = ["build_report", "render_report"]


def _pareto_numbers(study: optuna.Study) -> set[int]:
    if len(study.directions) > 1:
        return {t.number for t in study.best_trials}
    try:
        return {study.best_trial.number}
    except ValueError:  # no complete trial yet
        return set()


def build_report(study: optuna.Study) -> dict[str, Any]:
    """The study as plain data: DESIGN.md's ``report --json`` schema."""
    pareto = _pareto_numbers(study)
    trials = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        trials.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "metrics": dict(attrs.get("metrics", {})),
                "sparsity": {k.removeprefix("sparsity."): v for k, v in trial.params.items() if k.startswith("sparsity.")},
                "pareto": trial.number in pareto,
                "feasible": attrs.get("feasible", True) if trial.state == TrialState.COMPLETE else None,
                "origin": attrs.get("origin", "sampler"),
                "mlflow_run_id": attrs.get("mlflow_run_id"),
            }
        )
    return {
        "study": study.study_name,
        "objectives": list(study.user_attrs.get("objectives", [])),
        "dense": dict(study.user_attrs.get("dense", {})),
        "trials": trials,
    }


def _ratio(metrics: dict[str, float], name: str) -> str:
    value = metrics.get(f"{name}_ratio")
    return "1.00" if value is None and "dense" in metrics else (f"{value:.2f}" if value is not None else "-")


def render_report(report: dict[str, Any], console: Console) -> None:
    """A table of the Pareto trials (best accuracy first) under a dense row, then one line of totals."""
    dense = report["dense"]
    costs = [name for name in ("flops", "params") if name in dense]
    table = Table(title=f"study {report['study']}: Pareto-optimal trials ({', '.join(report['objectives'])})")
    table.add_column("trial", justify="right")
    table.add_column("origin")
    table.add_column("accuracy", justify="right")
    table.add_column("drop (pts)", justify="right")
    for name in costs:
        table.add_column(name, justify="right")
        table.add_column(f"{name} ratio", justify="right")
    table.add_column("feasible")
    table.add_column("mlflow run")
    row = ["dense", "", f"{dense.get('accuracy', float('nan')):.4f}", "0.00"]
    for name in costs:
        row += [f"{dense[name]:,.0f}", "1.00"]
    table.add_row(*row, "", "", style="bold")
    pareto = [t for t in report["trials"] if t["pareto"] and t["metrics"]]
    pareto.sort(key=lambda t: -t["metrics"].get("accuracy", 0.0))
    for trial in pareto:
        metrics = trial["metrics"]
        accuracy = metrics.get("accuracy", float("nan"))
        drop = (dense.get("accuracy", accuracy) - accuracy) * 100
        row = [str(trial["number"]), trial["origin"], f"{accuracy:.4f}", f"{drop:.2f}"]
        for name in costs:
            row += [f"{metrics.get(name, float('nan')):,.0f}", _ratio(metrics, name)]
        row += ["yes" if trial["feasible"] else "no", trial["mlflow_run_id"] or ""]
        table.add_row(*row)
    console.print(table)
    states: dict[str, int] = {}
    for trial in report["trials"]:
        states[trial["state"]] = states.get(trial["state"], 0) + 1
    summary = ", ".join(f"{count} {state.lower()}" for state, count in sorted(states.items())) or "no trials"
    console.print(f"{len(report['trials'])} trials ({summary}); {len(pareto)} on the Pareto front")
