"""What the MLflow UI shows first: a saved view of the trials, the study's description and Pareto table, one line per
trial.

MLflow's UI reads all of it from the store: a run's description is its ``mlflow.note.content`` tag
(markdown); an experiment tag ``mlflow.sharedViewState.<key>`` holds a view (filter, sort order,
columns) that the URL ``#/experiments/<id>/runs?viewStateShareKey=<key>`` opens, and
``workflowType=machine_learning`` puts the UI in its "Model training" mode. A search filter or a sort
other than by start time lists the runs flat, so the trials show without expanding their parent.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlencode

from mlflow import MlflowClient
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException

from prunetuna.config import COST_INFO
from prunetuna.results._report import ReportTrial, StudyReport, gain_lines
from prunetuna.store import Tag, TrialEnd, lost_insert_race

__all__ = [
    "NOTE_TAG",
    "PARETO_TABLE",
    "VIEW_KEY",
    "DrawnStudy",
    "landing_url",
    "landing_view",
    "publish_summary",
    "publish_view",
    "trial_description",
]

NOTE_TAG = "mlflow.note.content"
VIEW_KEY = "prunetuna-trials"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
PARETO_TABLE = "pareto_trials.json"
TRIAL_FILTER = "tags.`prunetuna.role` = 'trial'"

# The trials' columns, in this order: objectives and costs, then where each trial came from.
VIEW_METRICS = ("accuracy", "score", "flops_ratio", "latency_ratio", "speedup", "params_ratio", "size_ratio")
VIEW_TAGS = (Tag.FEASIBLE, Tag.ORIGIN, Tag.BUDGET)
COST_LABELS = tuple((cost.name, cost.label) for cost in COST_INFO.values())
SAME_SPEED = 1.05  # a measured speedup within 5% of dense reads "as fast as dense"


def landing_view(mode: str = "pareto") -> dict[str, Any]:
    """The runs table MLflow's UI restores from the experiment tag: the trials, best first, with their metrics."""
    metrics = [m for m in VIEW_METRICS if m != "score" or mode == "scalarized"]
    return {
        "searchFilter": TRIAL_FILTER,
        "orderByKey": "metrics.`score`" if mode == "scalarized" else "metrics.`accuracy`",
        "orderByAsc": False,
        "selectedColumns": [f"metrics.`{m}`" for m in metrics] + [f"tags.`{t}`" for t in VIEW_TAGS],
    }


def landing_url(base: str, experiment_id: str) -> str:
    """The URL of that view on the UI served at ``base``, in "Model training" mode."""
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": VIEW_KEY})
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def publish_view(client: MlflowClient, experiment_id: str, mode: str = "pareto") -> None:
    """The experiment's landing view; every worker writes it at the end of its search, so two may insert it at once
    (the chaos soak's MLflow server answered one of them "UNIQUE constraint failed"): the loser writes it again."""
    view = json.dumps(landing_view(mode))
    try:
        client.set_experiment_tag(experiment_id, VIEW_TAG, view)
    except MlflowException as exc:
        if not lost_insert_race(exc):
            raise
        client.set_experiment_tag(experiment_id, VIEW_TAG, view)


def _cost_parts(metrics: Mapping[str, float], costs: Sequence[str]) -> list[str]:
    """FLOPs, then the study's other costs as ratios to dense; latency as the measured speed against dense."""
    parts = [
        f"{label} {metrics[f'{name}_ratio']:.2f}x"
        for name, label in COST_LABELS
        if f"{name}_ratio" in metrics and (name == "flops" or name in costs) and name != "latency"
    ]
    speedup = metrics.get("speedup")
    if speedup:
        if speedup >= SAME_SPEED:
            parts.append(f"{speedup:.1f}x faster")
        elif speedup <= 1 / SAME_SPEED:
            parts.append(f"{1 / speedup:.1f}x slower")
        else:
            parts.append("as fast as dense")
    return parts


def trial_description(trial: ReportTrial, dense: Mapping[str, float], costs: Sequence[str] = ()) -> str:
    """One line: ``trial 12: accuracy 0.979 (-0.5 pt), FLOPs 0.41x, 1.6x faster; Pareto`` (``costs``: the study's
    objectives and budgets, shown beside FLOPs)."""
    head = f"trial {trial.number}"
    metrics = trial.metrics
    if not trial.complete or "accuracy" not in metrics:
        return f"{head}: {trial.state.lower()}"
    drop = f" ({(metrics['accuracy'] - dense['accuracy']) * 100:+.1f} pt)" if "accuracy" in dense else ""
    line = ", ".join([f"{head}: accuracy {metrics['accuracy']:.3f}{drop}", *_cost_parts(metrics, costs)])
    notes = ["Pareto"] if trial.pareto else []
    if trial.origin != "sampler":
        notes.append(f"{trial.origin} baseline")
    if trial.budget == "projected":
        notes.append("projected onto the budget")
    if trial.feasible is False:
        notes.append("infeasible")
    return line + (f"; {', '.join(notes)}" if notes else "")


def study_costs(report: StudyReport) -> list[str]:
    """The costs a study cares about: its objectives and its budgets' costs."""
    budgets = [key.split("_")[0] for key in report.constraints]
    return list(dict.fromkeys([o for o in report.objectives if o != "accuracy"] + budgets))


def _front(report: StudyReport) -> list[ReportTrial]:
    shown = [t for t in report.trials if t.pareto and t.complete]
    return sorted(shown, key=lambda t: -t.metrics.get("accuracy", 0.0))


def _run_link(experiment_id: str, run_id: str | None) -> str:
    """The run's page, relative to the UI's address (a link in a description resolves against the page)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning" if run_id else ""


def pareto_table(report: StudyReport, experiment_id: str) -> dict[str, list[Any]]:
    """The Pareto trials as columns: trial, origin, accuracy, drop, every cost ratio, speedup, feasible, run id and
    link."""
    front = _front(report)
    dense = report.dense
    metrics = [
        m
        for m in ("accuracy", "score", "flops_ratio", "params_ratio", "size_ratio", "latency_ratio", "speedup")
        if any(m in t.metrics for t in front)
    ]
    table: dict[str, list[Any]] = {"trial": [t.number for t in front], "origin": [t.origin for t in front]}
    for metric in metrics:
        table[metric] = [t.metrics.get(metric) for t in front]
        if metric == "accuracy" and "accuracy" in dense:
            table["drop_points"] = [(dense["accuracy"] - t.metrics["accuracy"]) * 100 for t in front]
    table["feasible"] = [t.feasible for t in front]
    table["run_id"] = [t.mlflow_run_id for t in front]
    table["run_link"] = [_run_link(experiment_id, t.mlflow_run_id) for t in front]
    return table


def parent_description(report: StudyReport, experiment_id: str) -> str:
    """Markdown: the study in one line, the report's gain lines, and the Pareto trials linked to their runs."""
    dense = report.dense
    states: dict[str, int] = {}
    for trial in report.trials:
        states[trial.state.lower()] = states.get(trial.state.lower(), 0) + 1
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "no trials yet"
    lines = [
        f"**Study {report.study}**: {len(report.trials)} trials ({counts}); objectives "
        f"{', '.join(report.objectives)}; "
        f"dense accuracy {dense.get('accuracy', float('nan')):.4f}.",
        "",
    ]
    lines += [f"- {line}" for line in gain_lines(report)]
    front = _front(report)
    if front:
        lines += [
            "",
            "Pareto-optimal trials (plots: `plots/pareto_front.png`, `plots/sparsity_profiles.png`; "
            f"table: `{PARETO_TABLE}`):",
            "",
        ]
        lines += ["| run | description |", "|---|---|"]
        for trial in front:
            name = f"trial-{trial.number}"
            link = f"[{name}]({_run_link(experiment_id, trial.mlflow_run_id)})" if trial.mlflow_run_id else name
            lines.append(f"| {link} | {trial_description(trial, dense, study_costs(report)).split(': ', 1)[1]} |")
    return "\n".join(lines)


def _replace_table(client: MlflowClient, run_id: str, table: dict[str, list[Any]]) -> None:
    """``log_table`` appends to a table already logged; the summary replaces it, written in the same format."""
    import pandas as pd

    if PARETO_TABLE not in {f.path for f in client.list_artifacts(run_id)}:
        client.log_table(run_id, data=table, artifact_file=PARETO_TABLE)
        return
    with tempfile.TemporaryDirectory(prefix="prunetuna-") as folder:
        path = Path(folder) / PARETO_TABLE
        pd.DataFrame(table).to_json(path, orient="split", index=False, date_format="iso")
        client.log_artifact(run_id, str(path))


def _note(client: MlflowClient, run_id: str, text: str) -> None:
    """A run's description. Two workers finishing together write it at once, and an ``mlflow server`` on SQLite
    may answer the second insert with ``UNIQUE constraint failed`` (found by experiments/benchmarks/chaos.py): the
    other's write landed, so it is written again over it (not reproduced by a test)."""
    for attempt in range(3):
        try:
            client.log_batch(run_id, tags=[RunTag(NOTE_TAG, text)])
            return
        except Exception as exc:
            if "UNIQUE constraint" not in str(exc) or attempt == 2:
                raise
            time.sleep(0.5)


def publish_summary(client: MlflowClient, experiment_id: str, parent_run_id: str | None, report: StudyReport) -> None:
    """The saved view, the parent run's description and Pareto table, and every trial run's one-line description."""
    publish_view(client, experiment_id, report.mode)
    dense, costs = report.dense, study_costs(report)
    ended = {end.value for end in TrialEnd}
    for trial in report.trials:
        if trial.mlflow_run_id and trial.state in ended:
            _note(client, trial.mlflow_run_id, trial_description(trial, dense, costs))
    if parent_run_id:
        _note(client, parent_run_id, parent_description(report, experiment_id))
        _replace_table(client, parent_run_id, pareto_table(report, experiment_id))


class DrawnStudy:
    """The search command's :class:`prunetuna.search.StudyPresentation`: per-trial sparsity profiles, then the
    study's plots (``<workdir>/plots``, logged to the parent run) and the summary above."""

    def trial_profile(self, number: int, vector: dict[str, float], layers: list[str]) -> object:
        from prunetuna.results._plots import (
            profile_plot,
        )  # matplotlib: imported in the tracker's writer, off the trial's path

        return profile_plot({f"trial {number}": vector}, layers, f"trial {number}: sparsity per layer")

    def publish(self, study: Any, layers: list[str], workdir: Path, tracker: Any) -> None:
        from prunetuna.faults import fault
        from prunetuna.results._plots import save_study_plots
        from prunetuna.results._report import build_report

        report = build_report(study)
        paths = save_study_plots(report, layers, workdir / "plots")
        tracker.log_parent_files(paths[:1])
        fault("plots")
        tracker.log_parent_files(paths[1:])
        if tracker.experiment_id is not None:
            tracker.outage.call(publish_summary, tracker.client, tracker.experiment_id, tracker.parent_run_id, report)
