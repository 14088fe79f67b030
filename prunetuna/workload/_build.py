"""Builds what a config names: the dense model (built-in or user target, with its checkpoint) and the data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from prunetuna.config import DataConfig, ExperimentConfig, ModelConfig, import_target
from prunetuna.config import call_target as _call
from prunetuna.config import one_line as _one_line
from prunetuna.errors import UserError
from prunetuna.registry import unknown_message
from prunetuna.training import ClassifierTask, ModuleTask, Task
from prunetuna.workload._builtin_data import BUILTIN_DATA
from prunetuna.workload._builtin_models import BUILTIN_MODELS

__all__ = ["Workload", "build_datamodule", "build_model", "import_target", "load_checkpoint", "load_workload"]


@dataclass
class Workload:
    """The dense model (the module to prune), its data module, one batch of inputs (the example for FLOPs
    and the graph) and the task that fine-tunes and scores candidates."""

    model: nn.Module
    datamodule: pl.LightningDataModule
    example: torch.Tensor
    task: Task = field(default_factory=ClassifierTask)


def build_model(config: ModelConfig) -> nn.Module:
    """The dense model, weights loaded from ``checkpoint`` when it names one."""
    if config.builtin is not None:
        if config.builtin not in BUILTIN_MODELS:
            raise UserError(f"model.builtin: {unknown_message('model', config.builtin, BUILTIN_MODELS)}")
        model = _call(BUILTIN_MODELS.get(config.builtin), config.kwargs, "model")
    else:
        model = _call(import_target(config.target or "", "model.target"), config.kwargs, "model")
    if not isinstance(model, nn.Module):
        raise UserError(f"model.target: {config.target!r} returned {type(model).__name__}, not a torch.nn.Module")
    if config.checkpoint is not None:
        load_checkpoint(model, Path(config.checkpoint), trusted=config.trusted_checkpoint)
    return model


def _strip_prefix(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Match a Lightning module's keys (``model.conv.weight``) to the bare model's (``conv.weight``)."""
    if expected <= set(state):
        return {k: v for k, v in state.items() if k in expected}
    some = next(iter(expected))
    for key in state:
        if key.endswith("." + some):
            prefix = key[: -len(some)]
            stripped = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if expected <= set(stripped):
                return stripped
    return state


def load_checkpoint(model: nn.Module, path: Path, trusted: bool = False) -> None:
    """Load a state_dict or a Lightning ``.ckpt`` into ``model`` (``weights_only=True``); with ``trusted``, also a
    pickled checkpoint (an ultralytics ``best.pt``, read by ultralytics' own loader, or a saved module). The weights
    go into ``model`` or, when they hold only a part of it (a ``best.pt`` in a LightningModule), that part."""
    if not path.is_file():
        raise UserError(f"model.checkpoint: {path} does not exist; give the path of a state_dict or .ckpt file")
    state = _pickled_state(path) if trusted else _weights_only_state(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"model.checkpoint: {path} holds no state_dict of tensors")
    target, state = _fitting_part(model, state)
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise UserError(
            f"model.checkpoint: {path} does not fit the model ({detail[:300]}); check model.kwargs or the checkpoint"
        ) from None


def _weights_only_state(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unreadable or unsafe pickles are bad input
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        first = "it holds objects beyond tensors" if "Weights only load failed" in first else first[:200]
        raise UserError(
            f"model.checkpoint: {path} is not a weights-only checkpoint ({first}); a pickled checkpoint (an "
            "ultralytics best.pt) runs code from the file when loaded: set model.trusted_checkpoint: true if you "
            "trust it, or save a state_dict"
        ) from None


def _pickled_state(path: Path) -> Any:
    """The tensors of a trusted pickle: ultralytics' ``torch_safe_load`` when ultralytics is installed (its legacy
    module paths), else ``torch.load(weights_only=False)``; a checkpoint dict's ``ema`` or ``model`` module (as
    ultralytics saves them) or a saved module gives its state_dict."""
    try:
        try:
            from ultralytics.nn.tasks import torch_safe_load
        except ImportError:
            loaded = torch.load(path, map_location="cpu", weights_only=False)
        else:
            loaded = torch_safe_load(str(path))[0] if path.suffix == ".pt" else torch.load(path, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a file that cannot be unpickled is bad input
        raise UserError(
            f"model.checkpoint: {path} cannot be loaded ({_one_line(exc)[:300]}); check the file and that the "
            "packages it was saved with are installed"
        ) from None
    if isinstance(loaded, dict):
        module = loaded.get("ema") or loaded.get("model")
        loaded = module if isinstance(module, nn.Module) else loaded
    return loaded.float().state_dict() if isinstance(loaded, nn.Module) else loaded


def _fitting_part(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """``model`` and ``state`` matched to its keys, or the outermost submodule whose keys ``state`` holds (a bare
    detector's weights for the LightningModule around it)."""
    own = set(model.state_dict())
    whole = _strip_prefix(state, own)
    if own <= set(whole):
        return model, whole
    for name, part in model.named_modules():
        keys = set(part.state_dict())
        if name and keys:
            fitted = _strip_prefix(state, keys)
            if keys <= set(fitted):
                return part, fitted
    return model, whole


def build_datamodule(config: DataConfig, seed: int) -> pl.LightningDataModule:
    """The data module, set up for fitting."""
    if config.builtin is not None:
        if config.builtin not in BUILTIN_DATA:
            raise UserError(f"data.builtin: {unknown_message('data set', config.builtin, BUILTIN_DATA)}")
        datamodule = _call(
            BUILTIN_DATA.get(config.builtin), {"batch_size": config.batch_size, "seed": seed, **config.kwargs}, "data"
        )
    else:
        datamodule = _call(import_target(config.target or "", "data.target"), config.kwargs, "data")
    if not isinstance(datamodule, pl.LightningDataModule):
        raise UserError(
            f"data.target: {config.target!r} returned {type(datamodule).__name__}, not a LightningDataModule"
        )
    try:
        datamodule.prepare_data()
        datamodule.setup("fit")
    except Exception as exc:  # noqa: BLE001 - data that cannot be prepared is a config error
        raise UserError(
            f"data: preparing the data failed ({_one_line(exc)}); check data.kwargs and the files they name"
        ) from None
    return datamodule


def first_inputs(batch: Any) -> torch.Tensor:
    """The input tensor of a batch: ``x`` of ``(x, y)``, ``batch["input"]`` (else the first value) of a dict, or the
    batch."""
    if isinstance(batch, (list, tuple)):
        batch = batch[0]
    if isinstance(batch, dict):
        batch = batch["input"] if "input" in batch else next(iter(batch.values()))
    if not isinstance(batch, torch.Tensor):
        raise UserError(f"data: batches must be tensors or (inputs, labels) pairs, got {type(batch).__name__}")
    return batch


def load_workload(config: ExperimentConfig) -> Workload:
    """Everything a search needs from the config, checked: the model runs on one batch of the data."""
    torch.manual_seed(config.seed)  # the dense model's initial weights, before any baseline training
    model = build_model(config.model)
    task = _task(config, model)
    model = task.inner if isinstance(task, ModuleTask) else model
    datamodule = build_datamodule(config.data, config.seed)
    try:
        example = _example(task)
        example = example if example is not None else first_inputs(next(iter(datamodule.train_dataloader())))
    except StopIteration:
        raise UserError("data: the training split is empty; check data.kwargs") from None
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - a loader that cannot produce a batch is a config error
        raise UserError(
            f"data: reading the first training batch failed ({_one_line(exc)}); check data.kwargs"
        ) from None
    model.eval()
    try:
        with torch.no_grad():
            model(example[:1])
        model.train()
    except Exception as exc:  # noqa: BLE001 - a model that cannot take the data is a config error
        raise UserError(
            f"model: the model fails on a batch of the data ({exc.__class__.__name__}: {exc}); check model and data"
        ) from None
    return Workload(model=model, datamodule=datamodule, example=example, task=task)


def _task(config: ExperimentConfig, model: nn.Module) -> Task:
    """The user's LightningModule task when ``model.target`` returned one, else the built-in classifier."""
    if not isinstance(model, pl.LightningModule):
        if config.model.prune is not None:
            raise UserError(
                f"model.prune: {config.model.target!r} returned a plain nn.Module; model.prune goes with a "
                "LightningModule, remove it"
            )
        if config.metric is not None:
            raise UserError(
                "metric: the built-in classifier is scored on accuracy; metric goes with a LightningModule "
                "model.target, remove it"
            )
        return ClassifierTask()
    if config.metric is None:
        raise UserError(
            f"metric: {type(model).__name__} is a LightningModule; name the value its validation logs, "
            "e.g. metric: {name: val/f1, mode: max}"
        )
    return ModuleTask(model, config.model.prune, config.metric.name, config.metric.mode)


def _example(task: Task) -> torch.Tensor | None:
    """A user module's ``example_input_array`` when it sets a tensor (else the first training batch's inputs)."""
    example = getattr(task.module, "example_input_array", None) if isinstance(task, ModuleTask) else None
    return example if isinstance(example, torch.Tensor) else None
