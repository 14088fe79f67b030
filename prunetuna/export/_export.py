"""Export a finished trial: rebuild it, re-check its accuracy, write ONNX / TorchScript / pt, check the file, write a
model card."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from prunetuna.config import ExperimentConfig, parse_config
from prunetuna.errors import UserError
from prunetuna.files import atomic_write, write_atomically
from prunetuna.objectives import export_onnx, portable_attention
from prunetuna.registry import Registry, unknown_message
from prunetuna.store import StudyRecord, TrialRecord, manifest
from prunetuna.workload import first_inputs

__all__ = [
    "EXPORTERS",
    "ExportCheckFailed",
    "ExportedTrial",
    "Exporter",
    "OutputCheck",
    "compare_outputs",
    "export_trial",
    "load_pruned",
    "load_pruned_file",
]

RTOL = 1e-4
ATOL = 1e-4
"""The file's outputs pass when every element is within ``ATOL * scale + RTOL * |torch's|`` of torch's, with
``scale`` the largest torch output magnitude (at least 1): float32 error grows with the size of the values a
deep network computes (resnet50's ONNX logits differ by 2e-4 at magnitudes near 5), so a fixed absolute
bound fails correct exports of large models while a scaled one still catches a wrong graph."""
PT_FORMAT = "prunetuna-pruned-v1"


class ExportCheckFailed(Exception):
    """The rebuilt model or the written file does not reproduce the logged numbers (exit status 1)."""


@dataclass(frozen=True)
class Exporter:
    """``write`` puts the model in a file; ``run`` loads that file back and computes outputs for a batch."""

    suffix: str
    write: Callable[[nn.Module, torch.Tensor, Path, dict], None]
    run: Callable[[Path, torch.Tensor], np.ndarray]


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path, info: dict) -> None:
    path.write_bytes(export_onnx(model, example[:1]))


def _run_onnx(path: Path, batch: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path, info: dict) -> None:
    with torch.no_grad(), portable_attention():
        traced = torch.jit.trace(model, example[:1])
    traced.save(str(path))


def _run_torchscript(path: Path, batch: torch.Tensor) -> np.ndarray:
    loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(batch).numpy()


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


def _run_pt(path: Path, batch: torch.Tensor) -> np.ndarray:
    model = load_pruned_file(path)
    with torch.no_grad():
        return model(batch).numpy()


EXPORTERS: Registry[Exporter] = Registry("format")
EXPORTERS.register("onnx", Exporter(".onnx", _write_onnx, _run_onnx))
EXPORTERS.register("torchscript", Exporter(".pt", _write_torchscript, _run_torchscript))
EXPORTERS.register("pt", Exporter(".pt", _write_pt, _run_pt))


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


def load_pruned(
    source: str | Path,
    *,
    trial: int | None = None,
    max_flops: float | None = None,
    max_drop: float | None = None,
    workdir: str | Path | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
) -> nn.Module:
    """A pruned, fine-tuned model in eval mode, from Python.

    ``source`` is either a file written by ``prunetuna export --format pt``, or an experiment
    YAML with ``trial=N`` (or neither, for the best trial within ``max_flops`` / ``max_drop``).
    """
    path = Path(source)
    if path.suffix not in (".yaml", ".yml"):
        return load_pruned_file(path)
    from prunetuna.config import load_config
    from prunetuna.export._rebuild import rebuild_trial, select_trial
    from prunetuna.store import load_study, resolve_workspace

    config = load_config(path)
    workspace = resolve_workspace(config.name, workdir, storage, tracking_uri)
    chosen = select_trial(load_study(workspace, config.name), number=trial, max_flops=max_flops, max_drop=max_drop)
    return rebuild_trial(config, workspace, chosen).model


@dataclass(frozen=True)
class ExportedTrial:
    """What ``export_trial`` wrote (``card``: the model card, as written beside the file) and checked it with."""

    card: dict
    model: nn.Module  # the rebuilt model, in eval mode
    batch: torch.Tensor  # the validation inputs the file's outputs were compared on


@dataclass(frozen=True)
class OutputCheck:
    """How an exported file's outputs compare with torch's on one validation batch."""

    max_abs_diff: float
    max_rel_diff: float  # max_abs_diff / scale
    scale: float  # the largest |torch output|, at least 1
    same_top_class: float | None  # share of samples whose argmax agrees (2-D outputs), else None
    passed: bool


def compare_outputs(got: np.ndarray, expected: np.ndarray) -> OutputCheck:
    """``got`` against ``expected`` with :data:`ATOL` scaled to the outputs and :data:`RTOL`
    (torch.testing.assert_close)."""
    got_t, expected_t = (torch.from_numpy(np.array(a, dtype=np.float32)) for a in (got, expected))
    scale = max(1.0, float(expected_t.abs().max())) if expected_t.numel() else 1.0
    difference = (
        float((got_t - expected_t).abs().max()) if got_t.shape == expected_t.shape and got_t.numel() else float("inf")
    )
    try:
        torch.testing.assert_close(got_t, expected_t, rtol=RTOL, atol=ATOL * scale)
        passed = True
    except AssertionError:
        passed = False
    same_shape_2d = got_t.shape == expected_t.shape and expected_t.dim() == 2
    top = float((got_t.argmax(1) == expected_t.argmax(1)).float().mean()) if same_shape_2d else None
    return OutputCheck(difference, difference / scale, scale, top, passed)


def _card_path(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def export_trial(
    config: ExperimentConfig,
    workspace,  # noqa: ANN001 - prunetuna.search.Workspace (imported lazily)
    *,
    fmt: str,
    out: Path,
    trial: int | None = None,
    max_flops: float | None = None,
    max_drop: float | None = None,
    force: bool = False,
    finetuned: bool = False,
) -> ExportedTrial:
    """Rebuild the chosen trial, check it, write ``out`` and ``<out>.json`` (the model card); ``finetuned``: with
    the weights and score of its final fine-tune (``prunetuna finetune``) instead of the search's."""
    from prunetuna.export._rebuild import rebuild_trial, select_trial
    from prunetuna.store import load_study

    if fmt not in EXPORTERS:
        raise UserError(f"--format: {unknown_message('format', fmt, EXPORTERS)}")
    card_path = _card_path(out)
    for path in (out, card_path):
        if path.exists() and not force:
            raise UserError(f"--out: {path} exists; choose another path or pass --force to overwrite it")
    if out.parent and not out.parent.exists():
        raise UserError(f"--out: folder {out.parent} does not exist; create it first")
    study = load_study(workspace, config.name)
    chosen = select_trial(study, number=trial, max_flops=max_flops, max_drop=max_drop)
    rebuilt = rebuild_trial(config, workspace, chosen, finetuned=finetuned)
    model, workload = rebuilt.model, rebuilt.workload
    accuracy = workload.task.evaluate(
        model, workload.datamodule
    )  # the task score: top-1, or the user module's validation
    logged = rebuilt.metrics["accuracy"]
    if abs(accuracy - logged) > 1e-9:
        name = workload.task.metric
        raise ExportCheckFailed(
            f"trial {chosen.number}: the rebuilt model's validation {name} {workload.task.value(accuracy):.6f} "
            "differs from the "
            f"logged {workload.task.value(logged):.6f}; "
            "the data, the model code or a package version changed since the search (see the trial's manifest)"
        )
    info = manifest(
        config,
        trial=chosen.number,
        sparsity=rebuilt.sparsity,
        metrics=rebuilt.metrics,
        input_shape=[1, *workload.example.shape[1:]],
    )
    exporter = EXPORTERS[fmt]
    model.eval()
    batch = first_inputs(next(iter(workload.datamodule.val_dataloader())))[:32]
    with torch.no_grad():
        expected = model(batch).numpy()

    # Written beside ``out`` under a temporary name and moved into place only once its check passed:
    # a failed check leaves no file behind (nor a stale one from an earlier --force run replaced half-way).
    def write_checked(temporary: Path) -> OutputCheck:
        exporter.write(model, workload.example, temporary, info)
        result = compare_outputs(exporter.run(temporary, batch), expected)
        if not result.passed:
            raise ExportCheckFailed(
                f"{out}: the {fmt} model's outputs differ from torch's by up to {result.max_abs_diff:.3g} "
                f"({result.max_rel_diff:.3g} of the largest output {result.scale:.3g}; allowed {ATOL:g} of it + "
                f"{RTOL:g} relative); "
                "no file was written"
            )
        return result

    check = write_atomically(out, write_checked)
    card = {
        "file": out.name,
        "format": fmt,
        "study": config.name,
        "trial": chosen.number,
        "mlflow_run_id": TrialRecord.of(chosen).mlflow_run_id,
        "finetune_run_id": rebuilt.weights_run_id if finetuned else None,
        "metrics": rebuilt.metrics,
        "dense": StudyRecord.of(study.user_attrs).dense,
        "sparsity": rebuilt.sparsity,
        "input_shape": info["input_shape"],
        "checks": {
            "validation_accuracy": accuracy,
            "logged_accuracy": logged,
            "max_abs_diff_vs_torch": check.max_abs_diff,
            "max_rel_diff_vs_torch": check.max_rel_diff,
            "output_scale": check.scale,
            "rtol": RTOL,
            "atol": ATOL * check.scale,
            "same_top_class": check.same_top_class,
        },
        "versions": info["versions"],
        "git_commit": info["git_commit"],
        "config_sha256": info["config_sha256"],
    }
    atomic_write(card_path, json.dumps(card, indent=2).encode())
    return ExportedTrial(card, model, batch)
