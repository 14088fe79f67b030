"""Each finished trial's final record on local disk, written before Optuna is told: the source MLflow is repaired from.

``<workdir>/trials/<number>/`` holds ``record.json`` (state, metrics, tags, per-epoch accuracy, the
MLflow run id) and, for a COMPLETE trial, ``model/state_dict.pt`` and ``model/manifest.json``, the
files uploaded to the run's ``model/``. Every file is written to a temporary name and renamed, so a
killed process leaves either the whole file or none; ``record.json`` is written last, so a record
implies its model files (``has_model``; ``search.keep_weights: front`` rewrites it without them before removing
them). ``synced`` is added once every MLflow write of the trial has landed.
Like the SQLite stores (synchronous=NORMAL), this holds against a killed process, not a power cut.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import torch

from prunetuna.files import atomic_write, write_atomically
from prunetuna.store._tracking import MANIFEST_FILE, WEIGHTS_FILE

__all__ = ["FinalRecord", "TrialStore"]

RECORD_FILE = "record.json"
SYNCED_FILE = "synced"
MODEL_DIR = "model"


@dataclass
class FinalRecord:
    """What a finished trial's MLflow run must hold in the end."""

    number: int
    state: str  # COMPLETE | PRUNED
    run_id: str | None
    metrics: dict[str, float]
    tags: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    epochs: list[float] = field(default_factory=list)  # val_accuracy per fine-tune epoch (step = epoch)
    has_model: bool = False
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    def owner_alive(self) -> bool:
        """Whether the process that wrote it still runs here (its own MLflow writes may still be landing)."""
        if self.host != socket.gethostname() or self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class TrialStore:
    """The final records of the trials this work dir's processes ran."""

    def __init__(self, workdir: Path) -> None:
        self.root = Path(workdir) / "trials"

    def folder(self, number: int) -> Path:
        return self.root / str(number)

    def model_dir(self, number: int) -> Path:
        return self.folder(number) / MODEL_DIR

    def write(
        self, record: FinalRecord, weights: Mapping[str, torch.Tensor] | None = None, manifest: dict | None = None
    ) -> None:
        """The record (and the model files, when given), durable when this returns."""
        folder = self.folder(record.number)
        (folder / MODEL_DIR).mkdir(parents=True, exist_ok=True)
        (folder / SYNCED_FILE).unlink(missing_ok=True)  # a trial number is written once; this is a rewrite of it
        if weights is not None:
            write_atomically(folder / MODEL_DIR / WEIGHTS_FILE, lambda temporary: torch.save(dict(weights), temporary))
            atomic_write(folder / MODEL_DIR / MANIFEST_FILE, json.dumps(manifest or {}, indent=2, default=str).encode())
            record.has_model = True
        atomic_write(folder / RECORD_FILE, json.dumps(asdict(record), default=str).encode())

    def drop_model(self, number: int) -> None:
        """Remove the trial's model files (``search.keep_weights: front``), the record first saying it has none."""
        record = self.load(number)
        if record is not None and record.has_model:
            record.has_model = False
            atomic_write(self.folder(number) / RECORD_FILE, json.dumps(asdict(record), default=str).encode())
        for name in (WEIGHTS_FILE, MANIFEST_FILE):
            (self.model_dir(number) / name).unlink(missing_ok=True)

    def load(self, number: int) -> FinalRecord | None:
        path = self.folder(number) / RECORD_FILE
        try:
            data = json.loads(path.read_bytes())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return None
        return FinalRecord(**data)

    def mark_synced(self, number: int, run_id: str) -> None:
        folder = self.folder(number)
        if folder.is_dir():
            atomic_write(folder / SYNCED_FILE, run_id.encode())

    def is_synced(self, number: int, run_id: str) -> bool:
        try:
            return (self.folder(number) / SYNCED_FILE).read_text() == run_id
        except (FileNotFoundError, NotADirectoryError):
            return False
