"""``prunetuna ui``: the MLflow UI on the study's trials (and optuna-dashboard on its storage)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from prunetuna.commands._common import ConfigArg, StorageOpt, TrackingOpt, WorkdirOpt, say, setup, user_errors

__all__ = ["ui"]


def ui(
    config: str = ConfigArg,
    port: int = typer.Option(5000, "--port", help="port of the MLflow UI"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (default loopback only)"),
    optuna: bool = typer.Option(
        False, "--optuna", help="also serve optuna-dashboard on the study's storage (optional install: the ui extra)"
    ),
    optuna_port: int = typer.Option(8080, "--optuna-port", help="port of optuna-dashboard"),
    open_browser: bool = typer.Option(False, "--open", help="open the pages in the browser once they are up"),
    workdir: Optional[Path] = WorkdirOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
) -> None:
    """Open the MLflow UI on the study's trials (and optuna-dashboard on its storage); SIGTERM or Ctrl-C stops both."""
    from prunetuna.results import serve

    with user_errors():
        cfg, workspace = setup(config, workdir, storage, tracking_uri)
        code = serve(
            workspace,
            cfg.name,
            host=host,
            port=port,
            optuna_port=optuna_port if optuna else None,
            open_browser=open_browser,
            say=lambda line: say(line),
        )
    raise typer.Exit(code)
