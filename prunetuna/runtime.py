"""What every computing verb (search, export, sensitivity) sets up before torch work, at the CLI entry point.

A torchvision that does not import beside the installed torch (PyPI's torchvision beside the CPU
torch 2.13.0: "operator torchvision::nms does not exist") would otherwise surface as a traceback from
deep inside Lightning, which imports it through torchmetrics: it is bad input, named in one line.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata

from prunetuna.errors import UserError

__all__ = ["check_torchvision", "prepare_torch"]

INSTALL_HINT = "bash scripts/install.sh --vision (a torch and torchvision pair that import together), or pip uninstall torchvision"


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
        raise UserError(f"torchvision {_version('torchvision')} does not work beside torch {_version('torch')} ({first}); "
                        f"install a matching pair: {INSTALL_HINT}") from None


def prepare_torch(threads: int | None) -> None:
    """A working torchvision, then ``threads`` torch threads (None: torch's default)."""
    check_torchvision()
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
