"""torchvision segmentation models (dict outputs) inside a user's LightningModule, and 3-channel shape masks."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


class TorchvisionSegmentation(pl.LightningModule):
    """``torchvision.models.segmentation.<arch>`` (random init, no backbone weights) as ``self.model``; its eval
    output is ``{"out": (N, classes, H, W)}``; cross-entropy per pixel, ``val/iou`` of the foreground."""

    def __init__(self, arch: str = "lraspp_mobilenet_v3_large", num_classes: int = 2, size: int = 64) -> None:
        super().__init__()
        from torchvision.models import segmentation

        self.model = getattr(segmentation, arch)(weights=None, weights_backbone=None, num_classes=num_classes)
        self.example_input_array = torch.zeros(1, 3, size, size)
        self._inter = self._union = 0

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, mask = batch
        return F.cross_entropy(self.model(x)["out"], mask)

    def on_validation_epoch_start(self) -> None:
        self._inter = self._union = 0

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, mask = batch
        pred = self.model(x)["out"].argmax(1) == 1
        self._inter += int((pred & (mask == 1)).sum())
        self._union += int((pred | (mask == 1)).sum())

    def on_validation_epoch_end(self) -> None:
        self.log("val/iou", self._inter / max(self._union, 1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.003)


def _squares(n: int, size: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, size, size, dtype=torch.long)
    side = size // 3
    for i, (r, c) in enumerate(torch.randint(0, size - side, (n, 2), generator=g).tolist()):
        mask[i, r : r + side, c : c + side] = 1
    x = torch.randn(n, 3, size, size, generator=g) * 0.3 + mask[:, None].float()
    return TensorDataset(x, mask)


class SquaresData(pl.LightningDataModule):
    """3-channel ``size``x``size`` images with a bright square; the mask marks its pixels."""

    def __init__(self, n: int = 32, size: int = 64, batch_size: int = 16) -> None:
        super().__init__()
        self.n, self.size, self.batch_size = n, size, batch_size

    def setup(self, stage: str | None = None) -> None:
        self.train, self.val = _squares(self.n, self.size, 0), _squares(self.n // 2, self.size, 1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.batch_size)


class TorchvisionDetection(pl.LightningModule):
    """``torchvision.models.detection.<arch>`` (random init) as ``self.model``: trained on its own train-mode loss
    dict (summed), scored by ``val/iou``, the mean IoU of each image's top-scoring box with its one true box."""

    def __init__(self, arch: str = "ssdlite320_mobilenet_v3_large", num_classes: int = 2, size: int = 64) -> None:
        super().__init__()
        from torchvision.models import detection

        extra = {"min_size": size, "max_size": size} if arch.startswith("fasterrcnn") else {}
        self.model = getattr(detection, arch)(weights=None, weights_backbone=None, num_classes=num_classes, **extra)
        if hasattr(self.model.transform, "fixed_size"):  # SSD resizes every image to its builder's 320x320
            self.model.transform.fixed_size = (size, size)
        self.example_input_array = torch.zeros(1, 3, size, size)
        self._ious: list[float] = []

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, boxes = batch
        targets = [{"boxes": b[None], "labels": torch.ones(1, dtype=torch.int64)} for b in boxes]
        return sum(self.model(list(x), targets).values())

    def on_validation_epoch_start(self) -> None:
        self._ious = []

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        from torchvision.ops import box_iou

        x, boxes = batch
        for found, box in zip(self.model(list(x)), boxes):
            top = found["boxes"][:1]
            self._ious.append(float(box_iou(top, box[None]).max()) if len(top) else 0.0)

    def on_validation_epoch_end(self) -> None:
        self.log("val/iou", sum(self._ious) / max(len(self._ious), 1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.001)


def _boxes(n: int, size: int, seed: int) -> TensorDataset:
    masks = _squares(n, size, seed)
    x, mask = masks.tensors
    boxes = torch.stack(
        [
            torch.tensor([c.min(), r.min(), c.max() + 1, r.max() + 1]).float()
            for r, c in (m.nonzero(as_tuple=True) for m in mask)
        ]
    )
    return TensorDataset(x, boxes)


class BoxData(SquaresData):
    """The squares of :class:`SquaresData`, each as its one box (x1, y1, x2, y2 in pixels)."""

    def setup(self, stage: str | None = None) -> None:
        self.train, self.val = _boxes(self.n, self.size, 0), _boxes(self.n // 2, self.size, 1)
