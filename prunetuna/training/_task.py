"""The task a candidate is scored on, chosen once from the config: the built-in classifier (cross-entropy,
top-1 ``accuracy``, max) or a user's LightningModule (its own training_step, optimizers and logged metric).

Every caller sees one *task score*, oriented so that higher is better (the metric itself for ``mode:
max``, its negation for ``mode: min``): it fills the ``accuracy`` slot of a trial's metrics, so Optuna's
directions, the tolerance (a drop in the metric's units; for ``min`` an increase) and early stopping
need no case of their own. :meth:`Task.named` gives the metric under its own name as logged.
"""

from __future__ import annotations

import copy
import signal
import time
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import lightning.pytorch as pl
import torch
from torch import nn

from prunetuna.errors import UserError
from prunetuna.runtime import quiet_lightning
from prunetuna.training._distill import Distillation, use_distillation_hook
from prunetuna.training._finetune import FinetuneResult, _KeepSigintHandler, evaluate_accuracy, fine_tune
from prunetuna.training._trainer import TrainerSetup

__all__ = ["ClassifierTask", "ModuleTask", "Task", "resolve_prune_path"]


class Task(ABC):
    """How a candidate (the pruned inner module) is fine-tuned and scored."""

    metric: str = "accuracy"
    mode: str = "max"

    @abstractmethod
    def fine_tune(self, model: nn.Module, datamodule: pl.LightningDataModule, **options: Any) -> FinetuneResult:
        """Train ``model`` in place (``fine_tune``'s keywords); the result's ``accuracy`` is the task score."""

    @abstractmethod
    def evaluate(self, model: nn.Module, datamodule: pl.LightningDataModule) -> float:
        """The task score of ``model`` on the validation data."""

    def value(self, score: float) -> float:
        """The metric as logged, from a task score."""
        return score if self.mode == "max" else -score

    def named(self, score: float) -> dict[str, float]:
        """``{metric name: value}`` for a trial's metrics (nothing extra for the built-in ``accuracy``)."""
        return {} if self.metric == "accuracy" else {self.metric: self.value(score)}


class ClassifierTask(Task):
    """Today's built-in path: :func:`~prunetuna.training._finetune.fine_tune` and top-1 accuracy."""

    def fine_tune(self, model: nn.Module, datamodule: pl.LightningDataModule, **options: Any) -> FinetuneResult:
        return fine_tune(model, datamodule, **options)

    def evaluate(self, model: nn.Module, datamodule: pl.LightningDataModule) -> float:
        return evaluate_accuracy(model, datamodule.val_dataloader())


def resolve_prune_path(module: nn.Module, path: str | None) -> nn.Module:
    """The ``nn.Module`` at ``model.prune`` inside ``module`` (the whole module without a path)."""
    target: Any = module
    for part in (path or "").split(".") if path else ():
        if not hasattr(target, part):
            children = ", ".join(name for name, _ in target.named_children()) if isinstance(target, nn.Module) else ""
            raise UserError(
                f"model.prune: {type(module).__name__} has no attribute {path!r} ({part!r} missing"
                + (f"; its submodules: {children}" if children else "")
                + "); name the nn.Module to prune"
            )
        target = getattr(target, part)
    if not isinstance(target, nn.Module):
        raise UserError(
            f"model.prune: {path!r} is a {type(target).__name__}, not a torch.nn.Module; name the module to prune"
        )
    return target


class _MetricRecorder(pl.Callback):
    """The task score after each epoch's validation, handed to ``on_epoch(epoch, score)``."""

    def __init__(self, task: ModuleTask, on_epoch: Callable[[int, float], None] | None) -> None:
        self.task, self.on_epoch = task, on_epoch
        self.history: list[float] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.val_dataloaders:
            return
        score = self.task.score_of(trainer.callback_metrics)
        self.history.append(score)
        if self.on_epoch is not None:
            self.on_epoch(len(self.history), score)


class _FiniteLoss(pl.Callback):
    """A user's training_step returning a NaN or infinite loss fails the trial with the reason, as the built-in
    classifier's does (training/_finetune.py), instead of training on to a meaningless score."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1 and not torch.isfinite(loss):
            raise FloatingPointError(
                f"the loss is {loss.item()} at epoch {trainer.current_epoch + 1}, batch {batch_idx}"
            )


class ModuleTask(Task):
    """A user's LightningModule: each candidate is a copy of it with the module at ``path`` replaced by the
    pruned one, trained by Lightning's Trainer with the module's own hooks and scored on ``metric``."""

    def __init__(self, module: pl.LightningModule, path: str | None, metric: str, mode: str) -> None:
        self.module, self.path, self.metric, self.mode = module, path, metric, mode
        self.inner = resolve_prune_path(module, path)

    def wrap(self, model: nn.Module) -> pl.LightningModule:
        """A copy of the user's module holding ``model`` (not copied) where the dense inner module was."""
        if not self.path:
            assert isinstance(model, pl.LightningModule)
            return model
        wrapped = copy.deepcopy(self.module, memo={id(self.inner): model})
        return wrapped

    def score_of(self, logged: dict[str, Any]) -> float:
        if self.metric not in logged:
            names = ", ".join(sorted(logged)) or "nothing"
            raise UserError(
                f"metric.name: the module never logged {self.metric!r} in validation (it logged: {names}); "
                "set metric.name to one of them or self.log it in validation_step"
            )
        return float(logged[self.metric]) * (1.0 if self.mode == "max" else -1.0)

    @staticmethod
    def _trainer(
        epochs: int,
        max_batches: int | None,
        callbacks: Sequence[pl.Callback],
        setup: TrainerSetup,
        accelerator: str = "auto",
    ) -> pl.Trainer:
        quiet_lightning()
        return pl.Trainer(
            max_epochs=max(epochs, 1),
            limit_train_batches=max_batches if max_batches is not None else 1.0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=list(callbacks),
            **{"accelerator": accelerator, "devices": 1, **setup.kwargs},
        )

    def evaluate(self, model: nn.Module, datamodule: pl.LightningDataModule) -> float:
        wrapped = self.wrap(model)
        trainer = self._trainer(1, None, [], TrainerSetup())
        was_training = model.training
        trainer.validate(wrapped, datamodule=datamodule, verbose=False)
        model.train(was_training)
        model.cpu()
        return self.score_of(trainer.callback_metrics)

    def fine_tune(
        self,
        model: nn.Module,
        datamodule: pl.LightningDataModule,
        *,
        epochs: int,
        seed: int,
        lr: float = 0.0,
        max_batches: int | None = None,
        on_epoch: Callable[[int, float], None] | None = None,
        callbacks: Sequence[pl.Callback] = (),
        accelerator: str = "auto",
        trainer: TrainerSetup | None = None,
        distill: Distillation | None = None,
    ) -> FinetuneResult:
        """``lr`` is not used: the module's own ``configure_optimizers`` decides."""
        start = time.perf_counter()
        if epochs == 0:
            return FinetuneResult(self.evaluate(model, datamodule), [], time.perf_counter() - start)
        pl.seed_everything(seed, workers=True, verbose=False)
        wrapped = self.wrap(model)
        if distill is not None:
            use_distillation_hook(wrapped, distill)
        recorder = _MetricRecorder(self, on_epoch)
        on_sigint = signal.getsignal(signal.SIGINT)
        keep = [_KeepSigintHandler(on_sigint)] if callable(on_sigint) else []
        setup = trainer or TrainerSetup({"accelerator": accelerator, "devices": 1})
        fit = self._trainer(
            epochs, max_batches, [recorder, _FiniteLoss(), *keep, *callbacks, *setup.callbacks()], setup, accelerator
        )
        model.train()
        try:
            fit.fit(wrapped, datamodule=datamodule)
        except SystemExit:
            if not fit.interrupted:
                raise
            signal.signal(signal.SIGINT, on_sigint if callable(on_sigint) else signal.default_int_handler)
            raise KeyboardInterrupt from None
        if setup.kwargs.get("precision", "32-true") != "32-true":
            model.to(dtype=torch.float32)
            score = self.evaluate(model, datamodule)
        else:
            score = recorder.history[-1] if recorder.history else self.evaluate(model, datamodule)
        model.cpu()
        return FinetuneResult(score, recorder.history, time.perf_counter() - start)
