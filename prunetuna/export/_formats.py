"""The export formats: how a model is written (ONNX, TorchScript, ``pt``) and how the written file is run back,
returning its output leaves (:func:`~prunetuna.objectives.output_leaves`) for the check."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from prunetuna.config import parse_config
from prunetuna.errors import UserError
from prunetuna.export._checks import ExportCheckFailed
from prunetuna.objectives import FlatOutputs, export_onnx, output_leaves, portable_attention
from prunetuna.registry import Registry

__all__ = ["EXPORTERS", "PT_FORMAT", "Exporter", "leaf_arrays", "load_pruned_file", "trace_model"]

PT_FORMAT = "prunetuna-pruned-v1"


@dataclass(frozen=True)
class Exporter:
    """``write`` puts the model in a file (tracing it on ``example``); ``run`` loads that file back and returns its
    output leaves for a batch, in :func:`~prunetuna.objectives.output_leaves` order."""

    suffix: str
    write: Callable[[nn.Module, torch.Tensor, Path, dict], None]
    run: Callable[[Path, torch.Tensor], list[np.ndarray]]
    suffix_required: bool = False  # the file is only read under a name ending in ``suffix``


def leaf_arrays(output: object) -> list[np.ndarray]:
    """A model's (or a loaded file's) output leaves as arrays."""
    return [tensor.detach().cpu().numpy() for _, tensor in output_leaves(output)]


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:240]}{'...' if len(text) > 240 else ''}"


def trace_model(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of ``model`` on ``example``, after one run on that same example (so a module that caches
    shape-dependent buffers, like ultralytics' anchors, is traced and checked in the same state).

    Outputs keep their structure (tuples, lists, dicts of tensors) where a trace can type it; one it cannot (a dict
    holding both tensors and lists) is returned as the flat tuple of its leaves. A model that cannot be traced at
    all is an :class:`ExportCheckFailed` naming why, in one line.
    """
    model.eval()
    with torch.no_grad(), portable_attention(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice and TracerWarnings: the check decides
        output = model(example)
        if _typable(output):
            try:
                return torch.jit.trace(model, example, strict=False)
            except Exception:  # noqa: BLE001 - retried flat; the flat trace's error is the one reported
                pass
        try:
            return torch.jit.trace(FlatOutputs(model), example, strict=False)
        except Exception as exc:  # noqa: BLE001 - whatever tracing raises, said in one line
            raise ExportCheckFailed(f"the model cannot be traced by torch.jit.trace ({_why(exc)})") from None


def _typable(output: object) -> bool:
    """Whether a trace can type ``output``'s structure: a dict's values must all be tensors."""
    if isinstance(output, (tuple, list)):
        return all(_typable(item) for item in output)
    if isinstance(output, dict):
        return all(isinstance(item, torch.Tensor) for item in output.values())
    return True


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path, info: dict) -> None:
    try:
        data = export_onnx(model, example[:1])
    except TypeError as exc:
        raise ExportCheckFailed(f"the model cannot be written as ONNX ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - whatever the ONNX exporter raises, said in one line
        raise ExportCheckFailed(f"the model cannot be written as ONNX ({_why(exc)})") from None
    path.write_bytes(data)


def _run_onnx(path: Path, batch: torch.Tensor) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # its errors are raised; not also printed in red (export's checks handle them)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return list(session.run(None, {session.get_inputs()[0].name: batch.numpy()}))


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path, info: dict) -> None:
    trace_model(model, example[:1]).save(str(path))


def _run_torchscript(path: Path, batch: torch.Tensor) -> list[np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return leaf_arrays(loaded(batch))


def _write_pt(model: nn.Module, example: torch.Tensor, path: Path, info: dict) -> None:
    torch.save(
        {
            "format": PT_FORMAT,
            "config": info["config"],
            "sparsity": info["sparsity"],
            "input_shape": info["input_shape"],
            "state_dict": model.state_dict(),
        },
        path,
    )


def _run_pt(path: Path, batch: torch.Tensor) -> list[np.ndarray]:
    model = load_pruned_file(path)
    with torch.no_grad():
        return leaf_arrays(model(batch))


def _write_ultralytics(model: nn.Module, example: torch.Tensor, path: Path, info: dict) -> None:
    """A checkpoint as ultralytics' trainer writes one (``{"model": <the model>, "train_args": ...}``), so that
    ``YOLO(path)`` loads it; rewritten blocks are merged back into ultralytics' classes where their halves kept
    equal widths (the others stay prunetuna's, and loading then needs prunetuna importable: ``kept_split``)."""
    import copy
    from datetime import datetime, timezone

    from prunetuna.spaces import restore_stock

    if not any(k.__module__ == "ultralytics.nn.tasks" for k in type(model).__mro__):
        raise UserError(
            f"--format ultralytics: the pruned model is a {type(model).__name__}, not an ultralytics model "
            "(DetectionModel, SegmentationModel, ...); name it with model.prune, or choose onnx, torchscript or pt"
        )
    import ultralytics
    from ultralytics.nn.tasks import guess_model_task

    # The task (detect, segment, pose, ...) from the architecture: ultralytics reads it from ``train_args`` and
    # defaults to detect, so a -seg model saved without it is validated and exported as a detector.
    task = guess_model_task(model.yaml) if isinstance(getattr(model, "yaml", None), dict) else None
    stock = copy.deepcopy(model).float().eval()
    kept = restore_stock(stock)
    if getattr(stock, "criterion", None) is not None:
        stock.criterion = None  # the loss holds a reference to the model: not part of a checkpoint
    checkpoint = {
        "date": datetime.now(timezone.utc).isoformat(),
        "version": ultralytics.__version__,
        "epoch": -1,
        "best_fitness": None,
        "model": stock,
        "ema": None,
        "train_args": {"imgsz": int(example.shape[-1]), **({"task": task} if task else {})},
        "prunetuna": {"sparsity": info["sparsity"], "trial": info.get("trial"), "kept_split": kept},
    }
    torch.save(checkpoint, path)


def _run_ultralytics(path: Path, batch: torch.Tensor) -> list[np.ndarray]:
    import os
    import tempfile

    from ultralytics.nn import tasks

    loader = getattr(tasks, "load_checkpoint", None) or tasks.attempt_load_one_weight
    with tempfile.TemporaryDirectory() as folder:  # ultralytics reads only files named *.pt
        named = Path(folder) / "model.pt"
        os.symlink(Path(path).resolve(), named)
        model, _ = loader(str(named))
    with torch.no_grad():
        return leaf_arrays(model.float().eval()(batch))


EXPORTERS: Registry[Exporter] = Registry("format")
EXPORTERS.register("onnx", Exporter(".onnx", _write_onnx, _run_onnx))
EXPORTERS.register("torchscript", Exporter(".pt", _write_torchscript, _run_torchscript))
EXPORTERS.register("pt", Exporter(".pt", _write_pt, _run_pt))
EXPORTERS.register("ultralytics", Exporter(".pt", _write_ultralytics, _run_ultralytics, suffix_required=True))


def load_pruned_file(path: str | Path) -> nn.Module:
    """A model written by ``prunetuna export --format pt``: architecture rebuilt from its config and vector."""
    from prunetuna.export._rebuild import rebuild_model
    from prunetuna.training import resolve_prune_path
    from prunetuna.workload import build_model

    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != PT_FORMAT:
        raise UserError(f"{path}: not a file written by 'prunetuna export --format pt'")
    config = parse_config(data["config"], str(path))
    torch.manual_seed(config.seed)
    dense = resolve_prune_path(build_model(config.model.model_copy(update={"checkpoint": None})), config.model.prune)
    return rebuild_model(
        config, dense, torch.zeros(data["input_shape"]), data["sparsity"], data["state_dict"], str(path)
    )
