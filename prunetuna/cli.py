"""The ``prunetuna`` command: search, report, ui."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from prunetuna._extras import require_search_install
from prunetuna.config import ExperimentConfig, load_config
from prunetuna.device.cli import app as device_app
from prunetuna.errors import UserError

if TYPE_CHECKING:
    from prunetuna.search import TrialRecord

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Search per-layer pruning ratios with Optuna, fine-tune with Lightning, track in MLflow.",
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
app.add_typer(device_app, name="device")  # the edge device's agent: the [device] install, no torch


@app.callback()
def _needs(ctx: typer.Context) -> None:
    """Every command but ``device`` needs the search install (torch, Lightning, Optuna, MLflow)."""
    if ctx.invoked_subcommand != "device" and "--help" not in sys.argv[1:]:
        with _user_errors():
            require_search_install(ctx.invoked_subcommand)

ConfigArg = typer.Argument(..., help="experiment YAML file", show_default=False)
WorkdirOpt = typer.Option(None, "--workdir", help="work dir (default runs/<name>)")
StorageOpt = typer.Option(None, "--storage", envvar="PRUNETUNA_STORAGE", show_envvar=True,
                          help="Optuna storage URL (default SQLite in the work dir)")
TrackingOpt = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else SQLite in the work dir)")
ThreadsOpt = typer.Option(None, "--threads", min=1, help="torch threads of this process (default: torch's)")


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input: one line on stderr, exit status 2, no traceback."""
    try:
        yield
    except UserError as exc:
        err.print(f"prunetuna: error: {exc}", markup=False)
        raise typer.Exit(2) from None


def _setup(config_path: str, workdir: Optional[Path], storage: Optional[str], tracking_uri: Optional[str]):
    from prunetuna.search import resolve_workspace

    config = load_config(config_path)
    return config, resolve_workspace(config.name, workdir, storage, tracking_uri)


def _store_args(workdir: Optional[Path], storage: Optional[str], tracking_uri: Optional[str]) -> str:
    """The ``--workdir/--storage/--tracking-uri`` a command was given, to repeat in the next command it suggests
    (a storage from ``$PRUNETUNA_STORAGE`` is left to the environment; a password shows masked)."""
    from prunetuna.search import mask_url

    parts = [f"--workdir {workdir}"] if workdir is not None else []
    if storage is not None and storage != os.environ.get("PRUNETUNA_STORAGE"):
        parts.append(f"--storage '{mask_url(storage)}'")
    if tracking_uri is not None:
        parts.append(f"--tracking-uri '{mask_url(tracking_uri)}'")
    return "".join(f" {p}" for p in parts)


def _table_console() -> Console:
    """stdout; when it is not a terminal (a pipe, a file) wide enough that tables are not truncated."""
    out = Console(highlight=False)
    return out if out.is_terminal else Console(highlight=False, width=200)


def _summary_line(record: TrialRecord, dense: dict[str, float]) -> str:
    metrics = record.metrics
    if record.state != "COMPLETE":
        return f"trial {record.number:>3} {record.state}: {record.reason or ''}"
    parts = [f"trial {record.number:>3}", f"accuracy {metrics['accuracy']:.4f} ({(metrics['accuracy'] - dense['accuracy']) * 100:+.2f} pts)"]
    for name in ("flops", "params"):
        if f"{name}_ratio" in metrics:
            parts.append(f"{name} {metrics[f'{name}_ratio']:.2f}x")
    parts.append(f"{record.seconds:.1f}s")
    if record.origin != "sampler":
        parts.append(f"[{record.origin}]")
    return "  ".join(parts)


@app.command()
def search(
    config: str = ConfigArg,
    n_trials: Optional[int] = typer.Option(None, "--n-trials", help="finished trials the study should reach (default search.n_trials)"),
    workers: int = typer.Option(1, "--workers", min=1, help="worker processes on this machine, sharing the study; threads split between them"),
    threads: Optional[int] = ThreadsOpt,
    worker_id: Optional[int] = typer.Option(None, "--worker-id", hidden=True, help="set by --workers for its children"),
    workdir: Optional[Path] = WorkdirOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
) -> None:
    """Create the study, or resume it, and run trials until it holds N finished ones."""
    from prunetuna.runtime import prepare_torch

    with _user_errors():
        cfg, workspace = _setup(config, workdir, storage, tracking_uri)
        launcher = _WorkerLauncher(config, workspace, workers, threads) if workers > 1 else None
        if launcher is not None:
            threads, worker_id = launcher.threads, 0  # this process is worker 0
        prepare_torch(threads)
        from prunetuna.search import SearchOutcome, SearchStopped, mask_url, run_search  # Lightning and torch: after the check
        from prunetuna.search._signals import StopSignals
        prefix = f"[worker {worker_id}] " if worker_id is not None else ""
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            console=err, transient=False, disable=worker_id is not None and launcher is None,
        )
        task = progress.add_task(cfg.name, total=None, visible=False)
        dense: dict[str, float] = {}

        def on_start(outcome: SearchOutcome) -> None:
            dense.update(outcome.dense)
            err.print(f"{prefix}study {cfg.name!r}: {outcome.finished}/{outcome.target} finished trials; dense accuracy "
                      f"{outcome.dense['accuracy']:.4f}; storage {mask_url(workspace.storage_url)}; "
                      f"tracking {mask_url(workspace.tracking_uri)}", markup=False)
            progress.update(task, total=outcome.target, completed=outcome.finished, visible=True)
            progress.start()

        def on_trial(record: TrialRecord, finished: int) -> None:
            progress.console.print(prefix + _summary_line(record, dense), markup=False)
            progress.update(task, completed=finished)

        def on_wait(running: int) -> None:
            if running == 0:
                progress.console.print(f"{prefix}waiting for the worker that created the study to finish preparing it", markup=False)
                return
            progress.console.print(f"{prefix}waiting for {running} trial(s) running elsewhere (other workers, or a killed "
                                   f"process: its trials are retried here once they miss three heartbeats)", markup=False)

        started_by_launcher = worker_id is not None and launcher is None
        signals = StopSignals(prefix)
        try:
            with signals:  # SIGTERM as Ctrl-C; a second one stops at once
                try:
                    outcome = run_search(cfg, workspace, n_trials=n_trials, on_start=on_start, on_trial=on_trial, on_wait=on_wait,
                                         on_ready=launcher.start if launcher is not None else None, plots=not started_by_launcher)
                except KeyboardInterrupt:
                    progress.stop()
                    if launcher is not None:
                        launcher.interrupt()
                    err.print(f"{prefix}interrupted: the running trial is marked FAIL and enqueued again; "
                              f"run the same command to resume {cfg.name!r}", markup=False)
                    raise typer.Exit(signals.exit_code) from None
        except SearchStopped as exc:
            progress.stop()
            err.print(f"{prefix}prunetuna: {exc}", markup=False)
            raise typer.Exit(1 if launcher is None else max([1, *launcher.wait()])) from None
        except typer.Exit:
            raise
        except BaseException:
            if launcher is not None:
                launcher.interrupt()
            raise
        progress.stop()
        err.print(f"{prefix}study {cfg.name!r}: {outcome.finished}/{outcome.target} finished trials ({outcome.ran} run now, "
                  f"{outcome.failed} failed); see: prunetuna report {config}{_store_args(workdir, storage, tracking_uri)}", markup=False)
        if launcher is not None and launcher.children:
            codes = launcher.wait()
            err.print(f"workers exited {[0, *codes]}", markup=False)
            if max(codes):
                raise typer.Exit(max(codes))


class _WorkerLauncher:
    """``--workers N``: this process prepares the study (dense baseline, parent run) and then runs trials as
    worker 0; once the study is ready, N - 1 more processes join it. CPU threads are split between them."""

    def __init__(self, config_path: str, workspace, workers: int, threads: Optional[int]) -> None:  # noqa: ANN001
        self.config_path = config_path
        self.workspace = workspace
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self.children: list[subprocess.Popen] = []

    def start(self, outcome):  # noqa: ANN001, ANN201 - SearchOutcome in, the join callable out
        """Start workers 1..N-1 on the prepared study; returns what waits for them (run_search's on_ready)."""
        common = [self.config_path, "--workdir", str(self.workspace.workdir), "--n-trials", str(outcome.target), "--threads", str(self.threads)]
        # The URLs may hold passwords: through the environment, not the command line others can read.
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "PRUNETUNA_STORAGE": self.workspace.storage_url,
               "MLFLOW_TRACKING_URI": self.workspace.tracking_uri}
        err.print(f"starting {self.workers - 1} more worker process(es) on the study, {self.threads} thread(s) each "
                  f"(this process is worker 0)", markup=False)
        for i in range(1, self.workers):  # one by one: if a start fails, the ones started are still waited for
            self.children.append(subprocess.Popen([sys.executable, "-m", "prunetuna", "search", *common, "--worker-id", str(i)], env=env))
        return self.join

    def join(self) -> list[int]:
        if any(child.poll() is None for child in self.children):
            err.print("waiting for the other workers to finish their trials", markup=False)
        return self.wait()

    def wait(self) -> list[int]:
        return [child.wait() for child in self.children]

    def interrupt(self) -> None:
        """After Ctrl-C: the terminal's SIGINT reached the children too, so give them time to mark their trials;
        pass it on only to those still running after that (it was sent to this process alone)."""
        import signal

        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGINT)
        self.wait()


@app.command()
def report(
    config: str = ConfigArg,
    as_json: bool = typer.Option(False, "--json", help="print DESIGN.md's JSON schema instead of a table"),
    workdir: Optional[Path] = WorkdirOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
) -> None:
    """The Pareto-optimal trials beside the dense model."""
    from prunetuna.report import build_report, render_report
    from prunetuna.search import load_study

    with _user_errors():
        cfg, workspace = _setup(config, workdir, storage, tracking_uri)
        data = build_report(load_study(workspace, cfg.name))
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        render_report(data, _table_console())


@app.command()
def export(
    config: str = ConfigArg,
    trial: Optional[int] = typer.Option(None, "--trial", help="the trial number to export"),
    best: bool = typer.Option(False, "--best", help="the best finished trial (highest accuracy within the bounds)"),
    max_flops: Optional[float] = typer.Option(None, "--max-flops", help="with --best: at most this FLOPs ratio to dense"),
    max_drop: Optional[float] = typer.Option(None, "--max-drop", help="with --best: at most this accuracy drop (0.01 = one point); then the cheapest"),
    fmt: str = typer.Option(..., "--format", help="onnx | torchscript | pt"),
    out: Path = typer.Option(..., "--out", help="output file; a JSON model card is written beside it (<out>.json)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing output"),
    threads: Optional[int] = ThreadsOpt,
    register: Optional[str] = typer.Option(None, "--register", help="also log it to the MLflow Model Registry as a new version of this model"),
    workdir: Optional[Path] = WorkdirOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
) -> None:
    """Rebuild a trial, check it reproduces its logged accuracy, and write it as ONNX, TorchScript or pt (and register it)."""
    from prunetuna.runtime import prepare_torch

    with _user_errors():
        if (trial is None) == (not best):
            raise UserError("export: give exactly one of --trial N or --best")
        if trial is not None and (max_flops is not None or max_drop is not None):
            raise UserError("export: --max-flops and --max-drop go with --best, not --trial")
        cfg, workspace = _setup(config, workdir, storage, tracking_uri)
        if register is not None:
            from prunetuna.registry import check_model_name

            check_model_name(workspace, register)
        prepare_torch(threads)
        from prunetuna.export import ExportCheckFailed, export_trial

        try:
            card = export_trial(cfg, workspace, fmt=fmt, out=out, trial=trial, max_flops=max_flops, max_drop=max_drop, force=force)
        except ExportCheckFailed as exc:
            err.print(f"prunetuna: export check failed: {exc}", markup=False)
            raise typer.Exit(1) from None
    metrics = card["metrics"]
    err.print(f"trial {card['trial']} -> {out} ({fmt}): accuracy {metrics['accuracy']:.4f} re-checked, "
              f"flops ratio {metrics.get('flops_ratio', float('nan')):.3f}, max |output - torch| "
              f"{card['checks']['max_abs_diff_vs_torch']:.2g} ({card['checks']['max_rel_diff_vs_torch']:.2g} of the largest output); "
              f"model card {out}.json", markup=False)
    if register is not None:
        from prunetuna.registry import register_export

        with _user_errors():
            version = register_export(cfg, workspace, card, out, register)
        err.print(f"registered {version.model_uri} (run {version.run_id}); serve it with: mlflow models serve -m {version.model_uri} "
                  "--env-manager local", markup=False)


@app.command()
def sensitivity(
    config: str = ConfigArg,
    threads: Optional[int] = ThreadsOpt,
    workdir: Optional[Path] = WorkdirOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
) -> None:
    """Accuracy (BN recalibrated, no fine-tune) with one dimension pruned at a time: a table, JSON, a plot, an MLflow run."""
    from prunetuna.runtime import prepare_torch

    with _user_errors():
        cfg, workspace = _setup(config, workdir, storage, tracking_uri)
        prepare_torch(threads)
        from prunetuna.search import run_sensitivity
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn(), console=err, transient=False)
        task = progress.add_task(f"{cfg.name}: pruned candidates (one dimension each)", total=None, visible=False)

        def on_step(done: int, total: int) -> None:
            if not progress.live.is_started:
                progress.start()
            progress.update(task, completed=done, total=total, visible=True)

        try:
            result = run_sensitivity(cfg, workspace, on_step)
        finally:
            progress.stop()
    scan = result["scan"]
    table = Table(title=f"study {cfg.name}: accuracy with one dimension pruned (dense {scan['dense_accuracy']:.4f}; no fine-tune)")
    table.add_column("dimension")
    for ratio in scan["grid"]:
        table.add_column(f"{ratio:g}", justify="right")
    if result.get("bounds"):
        table.add_column("bound", justify="right")
    for name, row in scan["accuracy"].items():
        cells = [f"{a:.3f}" for a in row]
        if result.get("bounds"):
            cells.append(f"{result['bounds'][name]:g}")
        table.add_row(name, *cells)
    _table_console().print(table)
    err.print(f"saved {result['json']} and {result['plot']}; MLflow run {result['run_id']}", markup=False)


@app.command()
def ui(
    config: str = ConfigArg,
    port: int = typer.Option(5000, "--port", help="port of the MLflow UI"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (default loopback only)"),
    optuna: bool = typer.Option(False, "--optuna", help="also serve optuna-dashboard on the study's storage (optional install: the ui extra)"),
    optuna_port: int = typer.Option(8080, "--optuna-port", help="port of optuna-dashboard"),
    open_browser: bool = typer.Option(False, "--open", help="open the pages in the browser once they are up"),
    workdir: Optional[Path] = WorkdirOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
) -> None:
    """Open the MLflow UI on the study's trials (and optuna-dashboard on its storage); SIGTERM or Ctrl-C stops both."""
    from prunetuna.ui import serve

    with _user_errors():
        cfg, workspace = _setup(config, workdir, storage, tracking_uri)
        code = serve(workspace, cfg.name, host=host, port=port, optuna_port=optuna_port if optuna else None,
                     open_browser=open_browser, say=lambda line: err.print(line, markup=False))
    raise typer.Exit(code)


def main() -> None:
    app()


__all__ = ["ExperimentConfig", "app", "main"]
