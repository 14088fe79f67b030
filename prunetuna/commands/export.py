"""``prunetuna export``: rebuild a trial, re-check it, write ONNX / TorchScript / pt with its model card (and
register it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from prunetuna.commands._common import (
    BestOpt,
    ConfigArg,
    MaxDropOpt,
    MaxFlopsOpt,
    StorageOpt,
    ThreadsOpt,
    TrackingOpt,
    WorkdirOpt,
    check_trial_choice,
    say,
    setup,
    user_errors,
)

__all__ = ["export"]


def export(
    config: str = ConfigArg,
    trial: Optional[int] = typer.Option(None, "--trial", help="the trial number to export"),
    best: bool = BestOpt,
    max_flops: Optional[float] = MaxFlopsOpt,
    max_drop: Optional[float] = MaxDropOpt,
    fmt: str = typer.Option(..., "--format", help="onnx | torchscript | pt | ultralytics (YOLO(path) loads it)"),
    out: Path = typer.Option(..., "--out", help="output file; a JSON model card is written beside it (<out>.json)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing output"),
    finetuned: bool = typer.Option(
        False, "--finetuned", help="the weights of the trial's final fine-tune ('prunetuna finetune'), re-checked"
    ),
    threads: Optional[int] = ThreadsOpt,
    register: Optional[str] = typer.Option(
        None, "--register", help="also log it to the MLflow Model Registry as a new version of this model"
    ),
    workdir: Optional[Path] = WorkdirOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
) -> None:
    """Rebuild a trial, check it reproduces its logged accuracy, and write it as ONNX, TorchScript or pt (and
    register it)."""
    from prunetuna.runtime import prepare_torch

    with user_errors():
        check_trial_choice("export", trial, best, max_flops, max_drop)
        cfg, workspace = setup(config, workdir, storage, tracking_uri)
        if register is not None:
            from prunetuna.export import check_model_name

            check_model_name(workspace, register)
        prepare_torch(threads)
        from prunetuna.export import ExportCheckFailed, export_trial

        try:
            exported = export_trial(
                cfg,
                workspace,
                fmt=fmt,
                out=out,
                trial=trial,
                max_flops=max_flops,
                max_drop=max_drop,
                force=force,
                finetuned=finetuned,
            )
        except ExportCheckFailed as exc:
            say(f"prunetuna: export check failed: {exc}")
            raise typer.Exit(1) from None
    card = exported.card
    metrics = card["metrics"]
    which = " (fine-tuned)" if finetuned else ""
    say(
        f"trial {card['trial']}{which} -> {out} ({fmt}): accuracy {metrics['accuracy']:.4f} re-checked, "
        f"flops ratio {metrics.get('flops_ratio', float('nan')):.3f}, max |output - torch| "
        f"{card['checks']['max_abs_diff_vs_torch']:.2g} ({card['checks']['max_rel_diff_vs_torch']:.2g} of the "
        "largest output); "
        f"model card {out}.json"
    )
    if register is not None:
        from prunetuna.export import register_export

        with user_errors():
            version = register_export(cfg, workspace, exported, out, register)
        say(
            f"registered {version.model_uri} (run {version.run_id}); serve it with: mlflow models serve -m "
            f"{version.model_uri} "
            "--env-manager local"
        )
