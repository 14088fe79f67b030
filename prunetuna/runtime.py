"""Process plumbing: which install a command needs, what every computing verb (search, export, sensitivity)
sets up before torch work at the CLI entry point, and lazy package exports.

A torchvision that does not import beside the installed torch (PyPI's torchvision beside the CPU
torch 2.13.0: "operator torchvision::nms does not exist") would otherwise surface as a traceback from
deep inside Lightning, which imports it through torchmetrics: it is bad input, named in one line.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import warnings
from importlib import metadata
from typing import Any, Callable

from prunetuna.errors import UserError

__all__ = [
    "SEARCH_MODULES",
    "check_torchvision",
    "lazy_exports",
    "prepare_torch",
    "quiet_libraries",
    "quiet_lightning",
    "quiet_mlflow_loggers",
    "require_search_install",
]

INSTALL_HINT = (
    "bash scripts/install.sh --vision (a torch and torchvision pair that import together), or pip uninstall torchvision"
)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def check_torchvision() -> None:
    """Raise :class:`UserError` when torchvision is installed but does not import beside this torch."""
    if importlib.util.find_spec("torchvision") is None:
        return
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - whatever it raises, the fix is the same
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:160]
        raise UserError(
            f"torchvision {_version('torchvision')} does not work beside torch {_version('torch')} ({first}); "
            f"install a matching pair: {INSTALL_HINT}"
        ) from None


def prepare_torch(threads: int | None) -> None:
    """A working torchvision, then ``threads`` torch threads (None: torch's default)."""
    check_torchvision()
    import torch

    if threads is not None:
        torch.set_num_threads(threads)


def quiet_libraries() -> None:
    """Process-wide settings of the libraries, made once at the CLI entry point (and by the tests' conftest):

    - MLflow and its migrations log at INFO on every start: warnings only, no download bars, no run URL
      printed on stdout; its HTTP client retries twice with a 30 s timeout (its default retries take minutes
      per call; the tracker's outage handling retries with a deadline instead);
    - Optuna would log every failed trial with its traceback: each gets one line from the CLI, its reason in
      the trial's user attributes and the traceback as an MLflow artifact; heartbeat retries are
      "experimental" (stable in use since 2.8), so that warning is dropped.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    quiet_mlflow_loggers()
    if importlib.util.find_spec("optuna") is None:
        return  # the [device] install: its commands need none of this (the others say what to install)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def quiet_mlflow_loggers() -> None:
    """MLflow and its migrations log at INFO ("Creating initial MLflow database tables..."): warnings only.
    MLflow's import sets its loggers up again, so the tracking store's opener calls this after importing it."""
    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


_LIGHTNING_QUIETED = False


def quiet_lightning() -> None:
    """Lightning's banners and advice are noise once per trial; keep warnings that matter. Called by the
    fine-tune once Lightning is imported (its import sets its own loggers to INFO), once per process."""
    global _LIGHTNING_QUIETED
    if _LIGHTNING_QUIETED:
        return
    _LIGHTNING_QUIETED = True
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*`isinstance\(treespec, LeafSpec\)`.*")


SEARCH_MODULES = ("torch", "lightning", "optuna", "mlflow", "torch_pruning")


def require_search_install(command: str | None) -> None:
    """Bad input (exit 2, one line) when ``command`` runs where only the ``[device]`` install is."""
    missing = [name for name in SEARCH_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(
            f"prunetuna {command or ''}: needs the search install (missing: {', '.join(missing)}): "
            "bash scripts/install.sh (or pip install 'prunetuna[search]'); a board that only measures needs "
            "'prunetuna device serve'"
        )


def lazy_exports(
    package: str, homes: dict[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` that import each public name from its private module on
    first use (PEP 562): ``prunetuna report`` needs the storage, not the trial loop's torch and Lightning."""
    home = {name: module for module, names in homes.items() for name in names}
    namespace = sys.modules[package].__dict__

    def getattr_(name: str) -> Any:
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # the next lookup is a plain attribute
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *home})

    return getattr_, dir_
