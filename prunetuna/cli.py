"""The ``prunetuna`` command: one verb per module in ``prunetuna.commands`` (docs/design.md, "CLI"), and the
``device`` group, the edge device's measuring agent (``prunetuna.device``: the ``[device]`` install, no torch)."""

from __future__ import annotations

import sys

import typer

from prunetuna.commands import user_errors
from prunetuna.commands.export import export
from prunetuna.commands.finetune import finetune
from prunetuna.commands.report import report
from prunetuna.commands.search import search
from prunetuna.commands.sensitivity import sensitivity
from prunetuna.commands.ui import ui
from prunetuna.device.cli import app as device_app
from prunetuna.runtime import require_search_install

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Search per-layer pruning ratios with Optuna, fine-tune with Lightning, track in MLflow.",
)
for verb in (search, report, finetune, export, sensitivity, ui):
    app.command()(verb)
app.add_typer(device_app, name="device")


@app.callback()
def _needs(ctx: typer.Context) -> None:
    """Every command but ``device`` needs the search install (torch, Lightning, Optuna, MLflow)."""
    if ctx.invoked_subcommand != "device" and "--help" not in sys.argv[1:]:
        with user_errors():
            require_search_install(ctx.invoked_subcommand)


def main() -> None:
    from prunetuna.runtime import quiet_libraries

    quiet_libraries()
    app()
