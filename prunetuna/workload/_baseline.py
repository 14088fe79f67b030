"""The dense baseline: trained once with Lightning when no checkpoint is given, cached in the work dir."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import torch

from prunetuna.config import ExperimentConfig, config_section
from prunetuna.errors import UserError
from prunetuna.files import atomic_write, write_atomically
from prunetuna.training import ModuleTask, check_finetune, trainer_setup
from prunetuna.workload._build import Workload

__all__ = ["DenseBaseline", "baseline_key", "prepare_baseline"]

T = TypeVar("T")


@dataclass
class DenseBaseline:
    """The dense model's validation accuracy, where its weights lie, and whether this run trained them."""

    accuracy: float
    weights: Path
    trained: bool


def baseline_key(config: ExperimentConfig) -> str:
    """Hash of everything that decides the dense weights: model, data, baseline settings, seed."""
    payload = {**config_section(config, "model", "data", "baseline"), "seed": config.seed}
    finetune = config_section(config, "finetune")["finetune"]
    if (
        config.finetune.trainer != type(config.finetune.trainer)() or config.finetune.callbacks
    ):  # they train the baseline too
        payload["trainer"] = {"trainer": finetune["trainer"], "callbacks": finetune["callbacks"]}
    if config.model.checkpoint:
        checkpoint = Path(config.model.checkpoint)
        payload["checkpoint_stat"] = [checkpoint.stat().st_size, checkpoint.stat().st_mtime_ns]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _dense(workload: Workload, step: Callable[[], T]) -> T:
    """A user module failing on the dense model (its training_step, its validation) is bad input, in one line."""
    if not isinstance(workload.task, ModuleTask):
        return step()
    try:
        return step()
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the user's own code failing on the dense model
        detail = " ".join(str(exc).split())[:300]
        raise UserError(
            f"model.target: {type(workload.task.module).__name__} fails on the dense model "
            f"({exc.__class__.__name__}: {detail}); fix its training_step / validation_step"
        ) from None


def prepare_baseline(config: ExperimentConfig, workload: Workload, workdir: Path) -> DenseBaseline:
    """Train (or load from the cache) the dense weights into ``workload.model`` and measure its accuracy."""
    key = baseline_key(config)
    weights = workdir / f"baseline-{key}.pt"
    record = workdir / f"baseline-{key}.json"
    trained = False
    if config.model.checkpoint is None:
        if weights.is_file() and record.is_file():
            workload.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            accuracy = float(json.loads(record.read_text())["accuracy"])
        else:
            check_finetune(config.finetune)  # once per process (sensitivity trains the baseline too)
            _dense(
                workload,
                lambda: workload.task.fine_tune(
                    workload.model,
                    workload.datamodule,
                    epochs=config.baseline.epochs,
                    lr=config.baseline.lr,
                    seed=config.seed,
                    trainer=trainer_setup(
                        config.finetune
                    ),  # finetune.trainer and .callbacks; no distillation (it is the teacher)
                ),
            )
            accuracy = _dense(workload, lambda: workload.task.evaluate(workload.model, workload.datamodule))
            workdir.mkdir(parents=True, exist_ok=True)
            write_atomically(weights, lambda temporary: torch.save(workload.model.state_dict(), temporary))
            atomic_write(
                record,
                json.dumps(
                    {"key": key, "accuracy": accuracy, **config_section(config, "model", "data", "baseline")}, indent=2
                ).encode(),
            )
            trained = True
    else:
        accuracy = _dense(workload, lambda: workload.task.evaluate(workload.model, workload.datamodule))
        weights = Path(config.model.checkpoint)
    return DenseBaseline(accuracy=accuracy, weights=weights, trained=trained)
