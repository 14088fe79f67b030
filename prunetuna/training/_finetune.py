"""Fine-tune a candidate with Lightning and measure its top-1 validation accuracy."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from prunetuna.runtime import quiet_lightning
from prunetuna.training._distill import Distillation
from prunetuna.training._trainer import TrainerSetup

__all__ = [
    "ClassifierModule",
    "EpochRecorder",
    "FinetuneResult",
    "evaluate_accuracy",
    "fine_tune",
    "recalibrate_batchnorm",
]


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training with Adam and a cosine learning-rate decay; keeps top-1 ``val_accuracy`` per epoch.

    The decay ends each run at a small learning rate, so the final accuracy is not the luck of the
    last step. The optimizer is stepped by hand (Lightning's manual optimization): the same updates
    without the closure machinery, which is measurable per batch on short fine-tunes. Trainer settings
    that Lightning applies around its own step (``accumulate_grad_batches``, ``gradient_clip_val``,
    a precision other than 32-true) take ``automatic=True``: Lightning's optimization then.
    With ``distill``, the loss is :func:`~prunetuna.training._distill.distillation_loss` against a
    frozen copy of the dense model, put on this module's device and dtype when training starts.
    """

    def __init__(
        self, model: nn.Module, lr: float, *, automatic: bool = False, distill: Distillation | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.automatic_optimization = automatic
        self._distill = distill
        self._teacher: list[nn.Module] = []  # a list, so that the teacher is not a submodule (not trained, not saved)
        self._correct = 0
        self._seen = 0
        self.last_val_accuracy: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_train_start(self) -> None:
        if self._distill is not None:
            self._teacher = [self._distill.frozen_copy(self.device, next(self.model.parameters()).dtype)]

    def on_train_end(self) -> None:
        self._teacher = []

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, or the distillation loss when a teacher is set (run once, without gradients)."""
        logits = self.model(x)
        if not self._teacher or self._distill is None:
            return F.cross_entropy(logits, y)
        with torch.no_grad():
            teacher_logits = self._teacher[0](x)
        return self._distill.loss(logits, teacher_logits, y)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch[0], batch[1])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss is {loss.item()} at epoch {self.current_epoch + 1}, batch {batch_idx}")
        if self.automatic_optimization:
            return loss
        optimizer = self.optimizers(use_pl_optimizer=False)
        scheduler = self.lr_schedulers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        scheduler.step()
        return loss

    def on_validation_epoch_start(self) -> None:
        self._correct, self._seen = 0, 0

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        self._correct += int((self.model(x).argmax(dim=1) == y).sum())
        self._seen += len(y)

    def on_validation_epoch_end(self) -> None:
        self.last_val_accuracy = self._correct / max(self._seen, 1)
        self.log("val_accuracy", self.last_val_accuracy, prog_bar=False)

    def configure_optimizers(self):  # noqa: ANN201 - Lightning's optimizer/scheduler dict
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class EpochRecorder(pl.Callback):
    """Keeps ``val_accuracy`` after every epoch and hands it to ``on_epoch(epoch, accuracy)`` (epoch from 1)."""

    def __init__(self, on_epoch: Callable[[int, float], None] | None = None) -> None:
        self.history: list[float] = []
        self.on_epoch = on_epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning validates at the end of each training epoch, before this hook.
        exact = getattr(pl_module, "last_val_accuracy", None)
        accuracy = float(exact if exact is not None else trainer.callback_metrics["val_accuracy"])
        self.history.append(accuracy)
        if self.on_epoch is not None:
            self.on_epoch(len(self.history), accuracy)


@dataclass
class FinetuneResult:
    """Final top-1 validation accuracy, the accuracy after each epoch, and the wall time."""

    accuracy: float
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Sequence[torch.Tensor]) -> int:
    """Re-estimate BatchNorm running statistics on ``batches`` (inputs): pruning invalidates the old ones.

    Cheap fidelity: an accuracy right after pruning, without fine-tuning, is only meaningful with
    statistics of the pruned network. Only the BatchNorm layers are put in training mode: the model runs its
    inference path (a detector's training forward wants targets; dropout stays off). Returns how many BatchNorm
    layers were reset.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or not batches:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
    device = next(model.parameters()).device
    model.eval()
    for norm in norms:
        norm.train()
    for x in batches:
        model(x.to(device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)
    return len(norms)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, dataloader: DataLoader) -> float:
    """Top-1 accuracy of ``model`` over ``dataloader`` (inference mode, on the model's device)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = seen = 0
    for batch in dataloader:
        x, y = batch[0].to(device), batch[1].to(device)
        correct += int((model(x).argmax(dim=1) == y).sum())
        seen += len(y)
    model.train(was_training)
    return correct / max(seen, 1)


class _KeepSigintHandler(pl.Callback):
    """Lightning ignores SIGINT while it shuts down after Ctrl-C; the caller's handler is put back at once
    (``on_exception`` runs right after), so a second Ctrl-C reaches it (the search stops at once then)."""

    def __init__(self, handler: Callable) -> None:
        self.handler = handler

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            signal.signal(signal.SIGINT, self.handler)


def fine_tune(
    model: nn.Module,
    datamodule: pl.LightningDataModule,
    *,
    epochs: int,
    lr: float,
    seed: int,
    max_batches: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    callbacks: Sequence[pl.Callback] = (),
    accelerator: str = "auto",
    trainer: TrainerSetup | None = None,
    distill: Distillation | None = None,
) -> FinetuneResult:
    """Train ``model`` in place for ``epochs`` (at most ``max_batches`` per epoch), validating after each.

    Deterministic given ``seed``: the global RNGs (shuffling, dropout) are seeded before the run.
    ``trainer``: the user's Trainer arguments and callbacks (``finetune.trainer``, ``finetune.callbacks``);
    ``distill``: the dense teacher (``finetune.distill``). With a precision other than 32-true the final
    accuracy is measured again in float32 (as ``export`` re-checks it).
    """
    start = time.perf_counter()
    if epochs == 0:
        return FinetuneResult(evaluate_accuracy(model, datamodule.val_dataloader()), [], time.perf_counter() - start)
    quiet_lightning()
    pl.seed_everything(seed, workers=True, verbose=False)
    recorder = EpochRecorder(on_epoch)
    on_sigint = signal.getsignal(signal.SIGINT)
    keep = [_KeepSigintHandler(on_sigint)] if callable(on_sigint) else []
    setup = trainer or TrainerSetup({"accelerator": accelerator, "devices": 1})
    fit = pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=max_batches if max_batches is not None else 1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[recorder, *keep, *callbacks, *setup.callbacks()],
        **{"accelerator": accelerator, "devices": 1, **setup.kwargs},
    )
    model.train()  # Lightning keeps each module's mode; a model left in eval mode would train with frozen BN stats
    try:
        fit.fit(
            ClassifierModule(model, lr, automatic=setup.automatic_optimization, distill=distill), datamodule=datamodule
        )
    except SystemExit:
        # Lightning answers Ctrl-C with sys.exit(1) and SIGINT ignored; a caller (the search) wants the
        # interrupt itself, to mark the trial and say how to resume, and its own Ctrl-C handler back.
        if not fit.interrupted:
            raise
        signal.signal(signal.SIGINT, on_sigint if callable(on_sigint) else signal.default_int_handler)
        raise KeyboardInterrupt from None
    exact = setup.kwargs.get("precision", "32-true") == "32-true"
    if not exact:  # a "-true" precision converted the weights: back to float32, on the device the fit used
        model.to(device=fit.strategy.root_device, dtype=torch.float32)
    accuracy = (
        recorder.history[-1] if recorder.history and exact else evaluate_accuracy(model, datamodule.val_dataloader())
    )
    model.cpu()
    return FinetuneResult(accuracy, recorder.history, time.perf_counter() - start)
