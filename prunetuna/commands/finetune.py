"""``prunetuna finetune``: the chosen trial's full fine-tune (``final_finetune``), logged under the trial's run;
``export --finetuned`` then takes it."""

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
    store_args,
    user_errors,
)

__all__ = ["finetune"]


def finetune(
    config: str = ConfigArg,
    trial: Optional[int] = typer.Option(None, "--trial", help="the trial number to fine-tune"),
    best: bool = BestOpt,
    max_flops: Optional[float] = MaxFlopsOpt,
    max_drop: Optional[float] = MaxDropOpt,
    force: bool = typer.Option(False, "--force", help="fine-tune again though a finished one has these settings"),
    threads: Optional[int] = ThreadsOpt,
    workdir: Optional[Path] = WorkdirOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
) -> None:
    """Fine-tune a trial's pruned model for the full schedule of final_finetune; 'export --finetuned' takes it."""
    from prunetuna.runtime import prepare_torch

    with user_errors():
        check_trial_choice("finetune", trial, best, max_flops, max_drop)
        cfg, workspace = setup(config, workdir, storage, tracking_uri)
        prepare_torch(threads)
        from prunetuna.commands._signals import StopSignals
        from prunetuna.export import final_finetune

        signals = StopSignals()
        epochs = cfg.final_finetune.epochs

        def on_epoch(epoch: int, score: float) -> None:
            say(f"epoch {epoch}/{epochs}: {cfg.metric.name if cfg.metric else 'accuracy'} score {score:.4f}")

        try:
            with signals:
                done = final_finetune(
                    cfg,
                    workspace,
                    trial=trial,
                    max_flops=max_flops,
                    max_drop=max_drop,
                    force=force,
                    on_epoch=on_epoch,
                )
        except KeyboardInterrupt:
            say("interrupted: the fine-tune's run is marked FAILED; run the same command to fine-tune it again")
            raise typer.Exit(signals.exit_code) from None
    metrics = done.metrics
    how = {
        "trained": "fine-tuned",
        "found": "already fine-tuned (--force runs it again)",
        "completed": "fine-tuned (its upload, killed before, completed from the work dir)",
    }[done.how]
    say(
        f"trial {done.trial} {how}: score {metrics['accuracy']:.4f} (search {metrics['accuracy_search']:.4f}), "
        f"flops ratio {metrics.get('flops_ratio', float('nan')):.3f}; MLflow run {done.run_id}; export it with: "
        f"prunetuna export {config} --trial {done.trial} --finetuned --format onnx --out model.onnx"
        f"{store_args(workdir, storage, tracking_uri)}"
    )
