"""A user-style LightningModule for ``lightning-module.yaml``: your own loss, optimizer and metric.

prunetuna prunes ``self.backbone`` (``model.prune: backbone``), fine-tunes each candidate with this
module's ``training_step`` / ``configure_optimizers``, and scores it on what validation logs as
``val/f1`` (``metric: {name: val/f1, mode: max}``). ``distillation_step`` is used only with
``finetune.distill``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F


def macro_f1(pred: torch.Tensor, target: torch.Tensor, classes: int) -> float:
    scores = []
    for c in range(classes):
        tp = int(((pred == c) & (target == c)).sum())
        wrong = int(((pred == c) != (target == c)).sum())
        scores.append(2 * tp / max(2 * tp + wrong, 1))
    return sum(scores) / classes


class DigitsF1(pl.LightningModule):
    """A small CNN on 1-channel images, label-smoothed cross-entropy, SGD with momentum, macro F1."""

    def __init__(self, channels: int = 16, num_classes: int = 10, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels * 2, 3, padding=1),
            nn.BatchNorm2d(channels * 2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels * 2, num_classes),
        )
        self._preds: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y, label_smoothing=0.1)

    def distillation_step(self, batch: Any, batch_idx: int, teacher_outputs: torch.Tensor) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        soft = F.kl_div(F.log_softmax(logits / 4, 1), F.softmax(teacher_outputs / 4, 1), reduction="batchmean") * 16
        return 0.5 * F.cross_entropy(logits, y) + 0.5 * soft

    def on_validation_epoch_start(self) -> None:
        self._preds, self._targets = [], []

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self._preds.append(self(x).argmax(1))
        self._targets.append(y)

    def on_validation_epoch_end(self) -> None:
        self.log("val/f1", macro_f1(torch.cat(self._preds), torch.cat(self._targets), self.hparams.num_classes))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
