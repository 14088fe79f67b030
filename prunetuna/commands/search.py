"""``prunetuna search``: run the study (or resume it) with a progress bar, one line per trial."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from prunetuna.commands._common import (
    ConfigArg,
    StorageOpt,
    ThreadsOpt,
    TrackingOpt,
    WorkdirOpt,
    err,
    say,
    setup,
    store_args,
    user_errors,
)
from prunetuna.store import TrialEnd

if TYPE_CHECKING:
    from prunetuna.search import SearchOutcome, TrialEvent, WorkerLauncher

__all__ = ["search", "summary_line"]


def summary_line(event: TrialEvent, dense: dict[str, float], metric: str = "accuracy") -> str:
    """One line per trial; ``metric``: the task score's name (a user module's metric is shown as logged)."""
    metrics = event.metrics
    if event.state != TrialEnd.COMPLETE.value:
        return f"trial {event.number:>3} {event.state}: {event.reason or ''}"
    if metric == "accuracy" or metric not in metrics:
        score = f"accuracy {metrics['accuracy']:.4f} ({(metrics['accuracy'] - dense['accuracy']) * 100:+.2f} pts)"
    else:
        score = f"{metric} {metrics[metric]:.4f} ({metrics[metric] - dense.get(metric, metrics[metric]):+.4f})"
    parts = [f"trial {event.number:>3}", score]
    for name in ("flops", "params"):
        if f"{name}_ratio" in metrics:
            parts.append(f"{name} {metrics[f'{name}_ratio']:.2f}x")
    parts.append(f"{event.seconds:.1f}s")
    if "accuracy_short" in metrics:  # search.promote fine-tuned it longer; the score above is after that
        parts.append(f"promoted from {metrics['accuracy_short']:.4f}")
    if event.origin != "sampler":
        parts.append(f"[{event.origin}]")
    return "  ".join(parts)


def _progress_events(
    name: str,
    prefix: str,
    shown: bool,
    workspace,
    launcher: WorkerLauncher | None,  # noqa: ANN001, ANN202
    metric: str = "accuracy",
):
    """The CLI's subscriber to the search's events: a progress bar and one line per trial."""
    from prunetuna.search import SearchEvents
    from prunetuna.store import mask_url

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not shown,
    )
    task = progress.add_task(name, total=None, visible=False)

    class Display(SearchEvents):
        dense: dict[str, float] = {}

        def started(self, outcome: SearchOutcome) -> None:
            self.dense = outcome.dense
            dense_score = outcome.dense.get(metric, outcome.dense["accuracy"])
            say(
                f"{prefix}study {name!r}: {outcome.finished}/{outcome.target} finished trials; dense {metric} "
                f"{dense_score:.4f}; "
                f"storage {mask_url(workspace.storage_url)}; tracking {mask_url(workspace.tracking_uri)}"
            )
            progress.update(task, total=outcome.target, completed=outcome.finished, visible=True)
            progress.start()

        def ready(self, outcome: SearchOutcome) -> Callable[[], object] | None:
            return launcher.start(outcome) if launcher is not None else None

        def waiting_for_creator(self) -> None:
            progress.console.print(
                f"{prefix}waiting for the worker that created the study to finish preparing it", markup=False
            )

        def trial_finished(self, event: TrialEvent, finished: int) -> None:
            progress.console.print(prefix + summary_line(event, self.dense, metric), markup=False)
            progress.update(task, completed=finished)

        def waiting(self, running: int) -> None:
            progress.console.print(
                f"{prefix}waiting for {running} trial(s) running elsewhere (other workers, or a killed "
                f"process: its trials are retried here once they miss three heartbeats)",
                markup=False,
            )

    return Display(), progress


def search(
    config: str = ConfigArg,
    n_trials: Optional[int] = typer.Option(
        None, "--n-trials", help="finished trials the study should reach (default search.n_trials)"
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="worker processes on this machine, sharing the study; threads split between them"
    ),
    threads: Optional[int] = ThreadsOpt,
    worker_id: Optional[int] = typer.Option(None, "--worker-id", hidden=True, help="set by --workers for its children"),
    workdir: Optional[Path] = WorkdirOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
) -> None:
    """Create the study, or resume it, and run trials until it holds N finished ones."""
    from prunetuna.runtime import prepare_torch

    with user_errors():
        cfg, workspace = setup(config, workdir, storage, tracking_uri)
        from prunetuna.search import WorkerLauncher

        launcher = WorkerLauncher(config, workspace, workers, threads, say) if workers > 1 else None
        if launcher is not None:
            threads, worker_id = launcher.threads, 0  # this process is worker 0
        prepare_torch(threads)
        from prunetuna.commands._signals import StopSignals
        from prunetuna.results import DrawnStudy
        from prunetuna.search import SearchStopped, run_search  # Lightning and torch: after the check

        prefix = f"[worker {worker_id}] " if worker_id is not None else ""
        started_by_launcher = worker_id is not None and launcher is None
        events, progress = _progress_events(
            cfg.name,
            prefix,
            not started_by_launcher,
            workspace,
            launcher,
            cfg.metric.name if cfg.metric is not None else "accuracy",
        )
        signals = StopSignals(prefix)
        try:
            with signals:  # SIGTERM as Ctrl-C; a second one stops at once
                try:
                    outcome = run_search(
                        cfg,
                        workspace,
                        n_trials=n_trials,
                        events=events,
                        presentation=None if started_by_launcher else DrawnStudy(),
                    )
                except KeyboardInterrupt:
                    progress.stop()
                    if launcher is not None:
                        launcher.interrupt()
                    say(
                        f"{prefix}interrupted: the running trial is marked FAIL and enqueued again; run the same "
                        f"command to resume {cfg.name!r}"
                    )
                    raise typer.Exit(signals.exit_code) from None
        except SearchStopped as exc:
            progress.stop()
            say(f"{prefix}prunetuna: {exc}")
            raise typer.Exit(1 if launcher is None else max([1, *launcher.wait()])) from None
        except typer.Exit:
            raise
        except BaseException:
            if launcher is not None:
                launcher.interrupt()
            raise
        progress.stop()
        say(
            f"{prefix}study {cfg.name!r}: {outcome.finished}/{outcome.target} finished trials ({outcome.ran} run now, "
            f"{outcome.failed} failed); see: prunetuna report {config}{store_args(workdir, storage, tracking_uri)}"
        )
        if launcher is not None and launcher.children:
            codes = launcher.wait()
            say(f"workers exited {[0, *codes]}")
            if max(codes):
                raise typer.Exit(max(codes))
