"""Files written whole or not at all: under a temporary name beside the target, then renamed over it
(``os.replace`` is atomic on one file system), so a killed process, another worker or a reader such as
MLflow never sees half a file. Torch-free."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

__all__ = ["atomic_write", "write_atomically"]

T = TypeVar("T")


def write_atomically(path: Path, write: Callable[[Path], T]) -> T:
    """``write(temporary)`` fills a temporary file beside ``path``, which then replaces ``path``; what
    ``write`` returns is returned. When it raises, ``path`` is unchanged and the temporary file is gone."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        result = write(temporary)
        os.replace(temporary, path)
        return result
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` entirely or is unchanged."""
    write_atomically(path, lambda temporary: temporary.write_bytes(data))
