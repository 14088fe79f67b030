"""Plots of a study: Pareto front, sparsity profiles, optimization history (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure

from prunetuna.config import COST_INFO, COST_NAMES
from prunetuna.files import write_atomically
from prunetuna.results._report import StudyReport

__all__ = ["history_plot", "pareto_plot", "profile_plot", "save_study_plots"]

COST_LABELS = {cost.name: f"{cost.label} ratio" for cost in COST_INFO.values()}
ORIGIN_MARKERS = {"uniform": "s", "global": "D", "sensitivity": "^"}


def profile_plot(vectors: dict[str, dict[str, float]], layers: Sequence[str], title: str) -> Figure:
    """Bars of each vector's sparsity per layer, in layer order (one bar group per layer)."""
    figure = Figure(figsize=(max(6.0, 0.45 * len(layers) + 2), 3.6), layout="constrained")
    axes = figure.add_subplot()
    width = 0.8 / max(len(vectors), 1)
    for index, (label, vector) in enumerate(vectors.items()):
        positions = [i + (index - (len(vectors) - 1) / 2) * width for i in range(len(layers))]
        axes.bar(positions, [vector.get(layer, 0.0) for layer in layers], width=width, label=label)
    axes.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=7)
    axes.set_ylabel("sparsity (share of channels removed)")
    axes.set_ylim(0, 1)
    axes.set_title(title, fontsize=9)
    if 1 < len(vectors) <= 12:
        axes.legend(fontsize=7, ncols=2)
    return figure


def pareto_plot(report: StudyReport) -> Figure:
    """Accuracy against each cost ratio: every finished trial, the Pareto front, the dense model and baselines."""
    measured = [c for c in COST_NAMES if any(f"{c}_ratio" in t.metrics for t in report.trials)]
    # The study's own costs first; latency too when measured (does the front hold on the device?).
    costs = [c for c in measured if c in report.objectives or c == "latency"] or measured[:1]
    figure = Figure(figsize=(4.2 * max(len(costs), 1), 3.8), layout="constrained")
    dense = report.dense.get("accuracy")
    for index, cost in enumerate(costs or ["flops"]):
        axes = figure.add_subplot(1, max(len(costs), 1), index + 1)
        done = [t for t in report.trials if t.complete and f"{cost}_ratio" in t.metrics]
        axes.scatter(
            [t.metrics[f"{cost}_ratio"] for t in done],
            [t.metrics["accuracy"] for t in done],
            s=14,
            c="0.7",
            label="trials",
        )
        front = sorted((t for t in done if t.pareto), key=lambda t: t.metrics[f"{cost}_ratio"])
        style = "o-" if cost in report.objectives else "o"  # a front is a line only on its own axes
        axes.plot(
            [t.metrics[f"{cost}_ratio"] for t in front],
            [t.metrics["accuracy"] for t in front],
            style,
            c="C0",
            ms=4,
            label="Pareto",
        )
        for origin, marker in ORIGIN_MARKERS.items():
            points = [t for t in done if t.origin == origin]
            if points:
                axes.scatter(
                    [t.metrics[f"{cost}_ratio"] for t in points],
                    [t.metrics["accuracy"] for t in points],
                    marker=marker,
                    s=40,
                    c="C3",
                    label=origin,
                    zorder=3,
                )
        if dense is not None:
            axes.scatter([1.0], [dense], marker="*", s=120, c="k", label="dense", zorder=3)
        axes.set_xlabel(COST_LABELS[cost])
        axes.set_ylabel("validation accuracy")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.suptitle(f"study {report.study}", fontsize=10)
    return figure


def history_plot(report: StudyReport) -> Figure:
    """Accuracy and the first cost per trial number, with the best accuracy so far."""
    done = sorted((t for t in report.trials if t.complete), key=lambda t: t.number)
    figure = Figure(figsize=(7, 3.6), layout="constrained")
    axes = figure.add_subplot()
    numbers = [t.number for t in done]
    accuracy = [t.metrics["accuracy"] for t in done]
    axes.plot(numbers, accuracy, "o", ms=4, c="C0", label="accuracy")
    best, so_far = [], float("-inf")
    for value in accuracy:
        so_far = max(so_far, value)
        best.append(so_far)
    axes.step(numbers, best, where="post", c="C0", alpha=0.6, label="best so far")
    axes.set_xlabel("trial")
    axes.set_ylabel("validation accuracy")
    cost = next((c for c in COST_NAMES if done and f"{c}_ratio" in done[0].metrics), None)
    if cost:
        twin = axes.twinx()
        twin.plot(numbers, [t.metrics[f"{cost}_ratio"] for t in done], "x", ms=4, c="C1", label=COST_LABELS[cost])
        twin.set_ylabel(COST_LABELS[cost])
        twin.legend(loc="lower right", fontsize=7)
    axes.legend(loc="lower left", fontsize=7)
    axes.set_title(f"study {report.study}: optimization history", fontsize=9)
    return figure


def save_study_plots(report: StudyReport, layers: Sequence[str], folder: Path) -> list[Path]:
    """Write the study's plots as PNG files in ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    front = sorted(
        (t for t in report.trials if t.pareto and t.complete),
        key=lambda t: -t.metrics["accuracy"],
    )
    figures = {
        "pareto_front.png": pareto_plot(report),
        "sparsity_profiles.png": profile_plot(
            {f"trial {t.number}": t.sparsity for t in front},
            layers,
            f"study {report.study}: sparsity of the Pareto trials",
        ),
        "optimization_history.png": history_plot(report),
    }
    paths = []
    for name, figure in figures.items():
        path = folder / name
        save_figure(figure, path)
        paths.append(path)
    return paths


def save_figure(figure: Figure, path: Path) -> None:
    """Write ``figure`` as a PNG under a temporary name, then rename: a worker writing the same plot, or
    MLflow reading it, never sees half a file."""
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=110, format="png"))


def sensitivity_plot(scan: dict[str, Any], study: str) -> Figure:
    """Accuracy against the ratio of one dimension (the others dense), a line per dimension."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    for name, row in scan["accuracy"].items():
        axes.plot(scan["grid"], row, "o-", ms=3, label=name)
    axes.axhline(scan["dense_accuracy"], c="k", ls="--", lw=1, label="dense")
    axes.set_xlabel("sparsity of the one pruned dimension")
    axes.set_ylabel("accuracy (BN recalibrated, no fine-tune)")
    axes.set_title(f"study {study}: sensitivity per dimension", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=6, ncols=2)
    return figure
