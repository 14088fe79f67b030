"""Export a finished trial: rebuild it, re-check its accuracy, write ONNX / TorchScript / pt, check the file, write a
model card."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from prunetuna.config import ExperimentConfig
from prunetuna.errors import UserError
from prunetuna.export._checks import (
    ATOL,
    RTOL,
    ExportCheckFailed,
    OutputCheck,
    compare_leaves,
    compare_per_sample,
    worst,
)
from prunetuna.export._formats import EXPORTERS, load_pruned_file
from prunetuna.files import atomic_write, write_atomically
from prunetuna.objectives import output_leaves
from prunetuna.registry import unknown_message
from prunetuna.store import StudyRecord, TrialRecord, manifest
from prunetuna.workload import first_inputs

__all__ = ["METRIC_TOLERANCE", "ExportedTrial", "export_trial", "load_pruned"]

METRIC_TOLERANCE = 2e-3
"""How far the rebuilt model's task score may be from the logged one (absolute, as a fraction: 0.2 points of
accuracy). Export may run on another machine than the search: another CPU (AVX2 against AVX-512, another oneDNN
kernel, another thread count) sums a convolution in another order, so logits differ in their last float32 bits and a
validation sample whose two top logits are that close flips its prediction: a score moves by a sample or two
(0.1 to 0.2 points on the embedded default's 1,000 validation images), never by more on a correct rebuild, while a
changed data set, model code or weights moves it by far more. On a validation set under 500 samples one flipped
sample exceeds it, and the check says so."""


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
    from prunetuna.export._rebuild import rebuild_trial, removed_weights, select_trial
    from prunetuna.store import load_study, resolve_workspace

    config = load_config(path)
    workspace = resolve_workspace(config.name, workdir, storage, tracking_uri)
    study = load_study(workspace, config.name)
    removed = removed_weights(config, workspace)
    chosen = select_trial(study, number=trial, max_flops=max_flops, max_drop=max_drop, removed=removed)
    return rebuild_trial(config, workspace, chosen).model


@dataclass(frozen=True)
class ExportedTrial:
    """What ``export_trial`` wrote (``card``: the model card, as written beside the file) and checked it with."""

    card: dict
    model: nn.Module  # the rebuilt model, in eval mode
    batch: torch.Tensor  # the validation inputs the file's outputs were compared on


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
    from prunetuna.export._rebuild import rebuild_trial, removed_weights, select_trial
    from prunetuna.store import load_study

    if fmt not in EXPORTERS:
        raise UserError(f"--format: {unknown_message('format', fmt, EXPORTERS)}")
    if EXPORTERS[fmt].suffix_required and out.suffix != EXPORTERS[fmt].suffix:
        raise UserError(
            f"--out: {out} must end in {EXPORTERS[fmt].suffix} for --format {fmt} (the name its loader reads)"
        )
    card_path = _card_path(out)
    for path in (out, card_path):
        if path.exists() and not force:
            raise UserError(f"--out: {path} exists; choose another path or pass --force to overwrite it")
    if out.parent and not out.parent.exists():
        raise UserError(f"--out: folder {out.parent} does not exist; create it first")
    study = load_study(workspace, config.name)
    removed = () if finetuned else removed_weights(config, workspace)  # a final fine-tune's weights are its own
    chosen = select_trial(study, number=trial, max_flops=max_flops, max_drop=max_drop, removed=removed)
    rebuilt = rebuild_trial(config, workspace, chosen, finetuned=finetuned)
    model, workload = rebuilt.model, rebuilt.workload
    accuracy = workload.task.evaluate(
        model, workload.datamodule
    )  # the task score: top-1, or the user module's validation
    logged = rebuilt.metrics["accuracy"]
    if abs(accuracy - logged) > METRIC_TOLERANCE:  # another machine's floating point: see METRIC_TOLERANCE
        name = workload.task.metric
        raise ExportCheckFailed(
            f"trial {chosen.number}: the rebuilt model's validation {name} {workload.task.value(accuracy):.6f} "
            "differs from the "
            f"logged {workload.task.value(logged):.6f} by more than {METRIC_TOLERANCE:g}; "
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
    try:
        with torch.no_grad():
            expected = [(name, tensor.numpy()) for name, tensor in output_leaves(model(batch))]
    except TypeError as exc:
        raise ExportCheckFailed(f"{out}: {exc}; no file was written") from None

    # Written beside ``out`` under a temporary name and moved into place only once its check passed:
    # a failed check leaves no file behind (nor a stale one from an earlier --force run replaced half-way).
    def write_checked(temporary: Path) -> tuple[dict[str, OutputCheck], bool]:
        """The file's checks, and whether it was compared image by image."""
        try:
            exporter.write(model, workload.example, temporary, info)
            try:
                got = exporter.run(temporary, batch)
            except Exception:  # noqa: BLE001 - a graph that fixed its batch at the example's one image
                if len(batch) == 1:
                    raise
                return _passed_or_raise(compare_per_sample(lambda x: exporter.run(temporary, x), model, batch)), True
            return _passed_or_raise(compare_leaves(got, expected)), False
        except ExportCheckFailed as exc:
            raise ExportCheckFailed(f"{out}: {exc}; no file was written") from None

    def _passed_or_raise(checks: dict[str, OutputCheck]) -> dict[str, OutputCheck]:
        name, result = worst(checks)
        if not result.passed:
            which = f"output {name!r}" if len(checks) > 1 else "outputs"
            raise ExportCheckFailed(
                f"the {fmt} model's {which} differ from torch's by up to {result.max_abs_diff:.3g} "
                f"({result.max_rel_diff:.3g} of the largest output {result.scale:.3g}; allowed {ATOL:g} of it + "
                f"{RTOL:g} relative)"
            )
        return checks

    checks, per_sample = write_atomically(out, write_checked)
    _, check = worst(checks)
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
        "outputs": list(checks),
        "checks": {
            "validation_accuracy": accuracy,
            "logged_accuracy": logged,
            "max_abs_diff_vs_torch": check.max_abs_diff,  # the output furthest from torch's, relative to its scale
            "max_rel_diff_vs_torch": check.max_rel_diff,
            "output_scale": check.scale,
            "rtol": RTOL,
            "atol": ATOL * check.scale,
            "same_top_class": next(iter(checks.values())).same_top_class,
            "outputs": {name: result.card() for name, result in checks.items()},
            "per_sample": per_sample,  # the file takes one image: compared on PER_SAMPLE images one by one
        },
        "versions": info["versions"],
        "git_commit": info["git_commit"],
        "config_sha256": info["config_sha256"],
    }
    atomic_write(card_path, json.dumps(card, indent=2).encode())
    return ExportedTrial(card, model, batch)
