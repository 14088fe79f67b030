"""Which install a command needs: ``prunetuna device`` runs on the small ``[device]`` install, the rest on ``[search]``."""

from __future__ import annotations

import importlib.util

from prunetuna.errors import UserError

__all__ = ["SEARCH_MODULES", "require_search_install"]

SEARCH_MODULES = ("torch", "lightning", "optuna", "mlflow", "torch_pruning")


def require_search_install(command: str | None) -> None:
    """Bad input (exit 2, one line) when ``command`` runs where only the ``[device]`` install is."""
    missing = [name for name in SEARCH_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"prunetuna {command or ''}: needs the search install (missing: {', '.join(missing)}): "
                        "bash scripts/install.sh (or pip install 'prunetuna[search]'); a board that only measures needs "
                        "'prunetuna device serve'")
