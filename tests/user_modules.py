"""LightningModules a user might bring: their own loss, optimizer and logged metric (not accuracy)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset


class SmallCNN(nn.Module):
    """conv -> conv -> global pool -> linear; ``aux`` adds a second head (two outputs)."""

    def __init__(self, channels: int = 8, num_classes: int = 10, aux: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.head = nn.Linear(channels, num_classes)
        self.aux = nn.Linear(channels, 1) if aux else None

    def forward(self, x: torch.Tensor) -> Any:
        features = torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3))
        logits = self.head(features)
        return (logits, self.aux(features)) if self.aux is not None else logits


def macro_f1(pred: torch.Tensor, target: torch.Tensor, classes: int) -> float:
    scores = []
    for c in range(classes):
        tp = int(((pred == c) & (target == c)).sum())
        fp = int(((pred == c) & (target != c)).sum())
        fn = int(((pred != c) & (target == c)).sum())
        scores.append(2 * tp / max(2 * tp + fp + fn, 1))
    return sum(scores) / classes


class F1Module(pl.LightningModule):
    """Label-smoothed cross-entropy, SGD, logs ``val/f1`` (macro F1); counts its training steps per class."""

    steps = 0  # class-level: the test reads how often any instance's training_step ran
    distill_steps = 0

    def __init__(self, channels: int = 8, aux: bool = False) -> None:
        super().__init__()
        self.net = SmallCNN(channels, 10, aux)
        self._preds: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, tuple) else out

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        type(self).steps += 1
        x, y = batch
        out = self.net(x)
        loss = F.cross_entropy(self.logits(x), y, label_smoothing=0.1)
        if isinstance(out, tuple):  # the second head regresses the label's parity
            loss = loss + F.mse_loss(out[1].squeeze(1), (y % 2).float())
        return loss

    def distillation_step(self, batch: Any, batch_idx: int, teacher_outputs: Any) -> torch.Tensor:
        type(self).distill_steps += 1
        x, y = batch
        teacher = teacher_outputs[0] if isinstance(teacher_outputs, tuple) else teacher_outputs
        return F.cross_entropy(self.logits(x), y) + F.kl_div(
            F.log_softmax(self.logits(x), 1), F.softmax(teacher, 1), reduction="batchmean"
        )

    def on_validation_epoch_start(self) -> None:
        self._preds, self._targets = [], []

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self._preds.append(self.logits(x).argmax(1))
        self._targets.append(y)

    def on_validation_epoch_end(self) -> None:
        self.log("val/f1", macro_f1(torch.cat(self._preds), torch.cat(self._targets), 10))
        self.log("val/other", 0.5)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


class NaNWhenPrunedModule(F1Module):
    """Its loss is NaN once its first convolution was pruned (the dense baseline trains normally)."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.net.conv1.out_channels < 6 else loss


class FailingModule(F1Module):
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        raise RuntimeError("the user's training_step broke")


class _Regression(Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 8, 8, generator=g)
        self.y = self.x[:, 0, :4].mean(dim=(1, 2)) * 3.0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input": self.x[i], "target": self.y[i]}


class RegressionData(pl.LightningDataModule):
    """Dict batches ``{"input": x, "target": y}``: y is a linear function of x."""

    def __init__(self, n: int = 256, batch_size: int = 32) -> None:
        super().__init__()
        self.n, self.batch_size = n, batch_size

    def setup(self, stage: str | None = None) -> None:
        self.train, self.val = _Regression(self.n, 0), _Regression(self.n // 2, 1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.batch_size)


class RegressionModule(pl.LightningModule):
    """MSE on dict batches, logs ``val/mae`` (lower is better); the model to prune is ``self.backbone``."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.backbone = SmallCNN(channels, 1)
        self.example_input_array = torch.zeros(2, 1, 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).squeeze(1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return F.mse_loss(self(batch["input"]), batch["target"])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log(
            "val/mae",
            (self(batch["input"]) - batch["target"]).abs().mean(),
            on_epoch=True,
            batch_size=len(batch["target"]),
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.01)


class _Shapes(Dataset):
    """8x8 images with a bright square; the mask marks its pixels."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 8, 8, generator=g) * 0.3
        self.mask = torch.zeros(n, 8, 8, dtype=torch.long)
        corners = torch.randint(0, 5, (n, 2), generator=g)
        for i, (r, c) in enumerate(corners.tolist()):
            self.mask[i, r : r + 3, c : c + 3] = 1
        self.x[:, 0] += self.mask.float()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.mask[i]


class ShapesData(pl.LightningDataModule):
    """(image, per-pixel mask) batches for a segmentation-style model."""

    def __init__(self, n: int = 256, batch_size: int = 32) -> None:
        super().__init__()
        self.n, self.batch_size = n, batch_size

    def setup(self, stage: str | None = None) -> None:
        self.train, self.val = _Shapes(self.n, 0), _Shapes(self.n // 2, 1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.batch_size)


class SegmentationModule(pl.LightningModule):
    """Per-pixel two-class logits (N, 2, H, W), cross-entropy per pixel, logs ``val/iou`` of the foreground."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2, 1),
        )
        self._inter = self._union = 0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, mask = batch
        return F.cross_entropy(self.net(x), mask)

    def on_validation_epoch_start(self) -> None:
        self._inter = self._union = 0

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, mask = batch
        pred = self.net(x).argmax(1) == 1
        self._inter += int((pred & (mask == 1)).sum())
        self._union += int((pred | (mask == 1)).sum())

    def on_validation_epoch_end(self) -> None:
        self.log("val/iou", self._inter / max(self._union, 1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.01)


class FailsWhenPruned(F1Module):
    """Trains as F1Module on the dense model; its training_step refuses a pruned network (a user's shape assert)."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.net.conv1.out_channels < 6 or self.net.conv2.out_channels < 6:
            raise ValueError("this module expects 6 channels")
        return super().training_step(batch, batch_idx)


class DictNet(nn.Module):
    """Returns ``{"logits": tensor, "extras": [tensor, tensor]}`` (a dict holding a tensor and a list, as ultralytics'
    heads do) and caches a grid per input shape (as ultralytics' Detect caches its anchors)."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.head = nn.Linear(channels, 10)
        self.parity = nn.Linear(channels, 1)
        self.shape: tuple[int, ...] | None = None
        self.grid = torch.empty(0)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        features = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        if self.shape != tuple(x.shape):  # Python-level: a trace records whichever branch ran
            h, w = x.shape[-2:]
            self.grid = torch.arange(h * w, dtype=x.dtype).view(1, 1, h, w) / (h * w)
            self.shape = tuple(x.shape)
        pooled = (features * (1 + self.grid)).mean(dim=(2, 3))
        return {"logits": self.head(pooled), "extras": [self.parity(pooled), features.mean(1)]}


class DictModule(F1Module):
    """F1Module around :class:`DictNet` (dict output, nested list, shape-cached grid)."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__(channels)
        self.net = DictNet(channels)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["logits"]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        out = self.net(x)
        parity = F.mse_loss(out["extras"][0].squeeze(1), (y % 2).float())
        return F.cross_entropy(out["logits"], y) + parity
