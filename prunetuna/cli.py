"""The ``prunetuna`` command: one verb per module in ``prunetuna.commands`` (docs/design.md, "CLI")."""

from __future__ import annotations

import typer

from prunetuna.commands.export import export
from prunetuna.commands.report import report
from prunetuna.commands.search import search
from prunetuna.commands.sensitivity import sensitivity
from prunetuna.commands.ui import ui

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Search per-layer pruning ratios with Optuna, fine-tune with Lightning, track in MLflow.",
)
for verb in (search, report, export, sensitivity, ui):
    app.command()(verb)


def main() -> None:
    from prunetuna.runtime import quiet_libraries

    quiet_libraries()
    app()
