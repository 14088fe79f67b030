"""``prunetuna sensitivity``: accuracy with one dimension pruned at a time (no fine-tune): a table, JSON, a plot, an
MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from prunetuna.commands._common import (
    ConfigArg,
    StorageOpt,
    ThreadsOpt,
    TrackingOpt,
    WorkdirOpt,
    err,
    say,
    setup,
    table_console,
    user_errors,
)

__all__ = ["sensitivity"]


def sensitivity(
    config: str = ConfigArg,
    threads: Optional[int] = ThreadsOpt,
    workdir: Optional[Path] = WorkdirOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
) -> None:
    """Accuracy (BN recalibrated, no fine-tune) with one dimension pruned at a time: a table, JSON, a plot, an MLflow
    run."""
    from prunetuna.runtime import prepare_torch

    with user_errors():
        cfg, workspace = setup(config, workdir, storage, tracking_uri)
        prepare_torch(threads)
        from prunetuna.commands._sensitivity_run import log_sensitivity, scan_study
        from prunetuna.results import save_figure, sensitivity_plot

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )
        task = progress.add_task(f"{cfg.name}: pruned candidates (one dimension each)", total=None, visible=False)

        def on_step(done: int, total: int) -> None:
            if not progress.live.is_started:
                progress.start()
            progress.update(task, completed=done, total=total, visible=True)

        try:
            result = scan_study(cfg, workspace, on_step)
        finally:
            progress.stop()
        plot = workspace.workdir / "plots" / "sensitivity.png"
        plot.parent.mkdir(parents=True, exist_ok=True)
        save_figure(sensitivity_plot(result.scan.as_dict(), cfg.name), plot)
        run_id = log_sensitivity(cfg, workspace, result, [plot])
    scan, bounds = result.scan, result.bounds
    table = Table(
        title=f"study {cfg.name}: accuracy with one dimension pruned (dense {scan.dense_accuracy:.4f}; no fine-tune)"
    )
    table.add_column("dimension")
    for ratio in scan.grid:
        table.add_column(f"{ratio:g}", justify="right")
    if bounds:
        table.add_column("bound", justify="right")
    for name, row in scan.accuracy.items():
        cells = [f"{a:.3f}" for a in row]
        if bounds:
            cells.append(f"{bounds[name]:g}")
        table.add_row(name, *cells)
    table_console().print(table)
    say(f"saved {result.json_path} and {plot}; MLflow run {run_id}")
