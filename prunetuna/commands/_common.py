"""What every verb shares: its options, the one-line handling of bad input, the study's workspace."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console

from prunetuna.config import load_config
from prunetuna.errors import UserError

__all__ = [
    "BestOpt",
    "ConfigArg",
    "MaxDropOpt",
    "MaxFlopsOpt",
    "StorageOpt",
    "ThreadsOpt",
    "TrackingOpt",
    "check_trial_choice",
    "WorkdirOpt",
    "err",
    "say",
    "setup",
    "store_args",
    "table_console",
    "user_errors",
]

err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigArg = typer.Argument(..., help="experiment YAML file", show_default=False)
WorkdirOpt = typer.Option(None, "--workdir", help="work dir (default runs/<name>)")
StorageOpt = typer.Option(
    None,
    "--storage",
    envvar="PRUNETUNA_STORAGE",
    show_envvar=True,
    help="Optuna storage URL (default SQLite in the work dir)",
)
TrackingOpt = typer.Option(
    None, "--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else SQLite in the work dir)"
)
ThreadsOpt = typer.Option(None, "--threads", min=1, help="torch threads of this process (default: torch's)")
# How export and finetune choose a trial (the same bounds pick the same trial in both).
BestOpt = typer.Option(False, "--best", help="the best finished trial (highest accuracy within the bounds)")
MaxFlopsOpt = typer.Option(None, "--max-flops", help="with --best: at most this FLOPs ratio to dense")
MaxDropOpt = typer.Option(
    None, "--max-drop", help="with --best: at most this accuracy drop (0.01 = one point); then the cheapest"
)


def say(line: str) -> None:
    """One plain line on stderr (no rich markup: paths and URLs are printed as they are)."""
    err.print(line, markup=False)


@contextmanager
def user_errors() -> Iterator[None]:
    """Bad input: one line on stderr, exit status 2, no traceback (docs/design.md, "Exit codes")."""
    try:
        yield
    except UserError as exc:
        say(f"prunetuna: error: {exc}")
        raise typer.Exit(2) from None


# noqa: ANN201
def setup(config_path: str, workdir: Optional[Path], storage: Optional[str], tracking_uri: Optional[str]):
    """The validated config and the study's workspace (work dir, storage URL, tracking URI)."""
    from prunetuna.store import resolve_workspace

    config = load_config(config_path)
    return config, resolve_workspace(config.name, workdir, storage, tracking_uri)


def store_args(workdir: Optional[Path], storage: Optional[str], tracking_uri: Optional[str]) -> str:
    """The ``--workdir/--storage/--tracking-uri`` a command was given, to repeat in the next command it suggests
    (a storage from ``$PRUNETUNA_STORAGE`` is left to the environment; a password shows masked)."""
    from prunetuna.store import mask_url

    parts = [f"--workdir {workdir}"] if workdir is not None else []
    if storage is not None and storage != os.environ.get("PRUNETUNA_STORAGE"):
        parts.append(f"--storage '{mask_url(storage)}'")
    if tracking_uri is not None:
        parts.append(f"--tracking-uri '{mask_url(tracking_uri)}'")
    return "".join(f" {p}" for p in parts)


def table_console() -> Console:
    """stdout; when it is not a terminal (a pipe, a file) wide enough that tables are not truncated."""
    out = Console(highlight=False)
    return out if out.is_terminal else Console(highlight=False, width=200)


def check_trial_choice(
    verb: str, trial: int | None, best: bool, max_flops: float | None, max_drop: float | None
) -> None:
    """Exactly one of ``--trial N`` and ``--best``; the bounds only with ``--best`` (bad input otherwise)."""
    if (trial is None) == (not best):
        raise UserError(f"{verb}: give exactly one of --trial N or --best")
    if trial is not None and (max_flops is not None or max_drop is not None):
        raise UserError(f"{verb}: --max-flops and --max-drop go with --best, not --trial")
