"""``prunetuna report``: the Pareto-optimal trials beside the dense model, as a table or docs/design.md's JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from prunetuna.commands._common import ConfigArg, StorageOpt, TrackingOpt, WorkdirOpt, setup, table_console, user_errors

__all__ = ["report"]


def report(
    config: str = ConfigArg,
    as_json: bool = typer.Option(
        False, "--json", help='print the JSON of docs/design.md ("report --json") instead of a table'
    ),
    workdir: Optional[Path] = WorkdirOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
) -> None:
    """The Pareto-optimal trials beside the dense model."""
    from prunetuna.results import build_report, render_report
    from prunetuna.store import load_study

    with user_errors():
        cfg, workspace = setup(config, workdir, storage, tracking_uri)
        data = build_report(load_study(workspace, cfg.name))
    if as_json:
        sys.stdout.write(json.dumps(data.as_json(), indent=2) + "\n")
    else:
        render_report(data, table_console())
