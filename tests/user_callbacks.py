"""Lightning callbacks a user might name in finetune.callbacks: they record what the Trainer was given."""

from __future__ import annotations

import lightning.pytorch as pl

SEEN: list[dict] = []


class RecordTrainer(pl.Callback):
    """Records the Trainer's settings and the batches trained at the start and end of every fit."""

    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:  # noqa: ANN001
        self.batches += 1

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        SEEN.append(
            {
                "accumulate_grad_batches": trainer.accumulate_grad_batches,
                "gradient_clip_val": trainer.gradient_clip_val,
                "gradient_clip_algorithm": str(trainer.gradient_clip_algorithm),
                "precision": trainer.precision,
                "accelerator": type(trainer.accelerator).__name__,
                "automatic_optimization": pl_module.automatic_optimization,
                "max_epochs": trainer.max_epochs,
                "batches": self.batches,
                "optimizer_steps": trainer.global_step,
                "callback_id": id(self),
            }
        )


def record_trainer() -> RecordTrainer:
    return RecordTrainer()


def not_a_callback() -> int:
    return 3


def needs_an_argument(required: int) -> RecordTrainer:
    return RecordTrainer()
