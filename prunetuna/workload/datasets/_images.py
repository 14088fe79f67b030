"""Images held as uint8 tensors, normalized (and, for training, augmented) per item as they are read."""

from __future__ import annotations

from typing import Sequence

import lightning.pytorch as pl
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from prunetuna.errors import UserError

__all__ = ["ImageDataModule", "UInt8Images", "normalization"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def normalization(
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    channels: int,
    default: tuple[Sequence[float], Sequence[float]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std as (C, 1, 1) tensors; a value per channel, or one for all."""
    mean = default[0] if mean is None else mean
    std = default[1] if std is None else std
    values = []
    for key, given in (("mean", mean), ("std", std)):
        given = [float(v) for v in given]
        if len(given) == 1:
            given = given * channels
        if len(given) != channels:
            raise UserError(f"data.kwargs.{key}: give one value per channel ({channels}), or one for all; got {given}")
        values.append(torch.tensor(given, dtype=torch.float32).view(channels, 1, 1))
    if (values[1] <= 0).any():
        raise UserError(f"data.kwargs.std: every value must be positive, got {values[1].flatten().tolist()}")
    return values[0], values[1]


class UInt8Images(Dataset):
    """``images`` (N, C, H, W) uint8 and ``labels`` (N,) long; items are normalized float32 images.

    ``augment``: a random horizontal flip and a random crop of the image padded by an eighth of its
    side (the CIFAR recipe), drawn from torch's global RNG, which every fine-tune seeds.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, augment: bool = False
    ) -> None:
        self.images, self.labels = images, labels
        self.scale, self.shift = 1.0 / (255.0 * std), mean / std
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index].float()
        if self.augment:
            if torch.rand(()) < 0.5:
                image = image.flip(-1)
            height, width = image.shape[-2:]
            pad_h, pad_w = max(1, height // 8), max(1, width // 8)
            padded = F.pad(image, (pad_w, pad_w, pad_h, pad_h))
            top = int(torch.randint(0, 2 * pad_h + 1, ()))
            left = int(torch.randint(0, 2 * pad_w + 1, ()))
            image = padded[:, top : top + height, left : left + width]
        return image * self.scale - self.shift, self.labels[index]


class ImageDataModule(pl.LightningDataModule):
    """Train and validation image sets as a Lightning data module (``classes``: the label names, in label order)."""

    def __init__(
        self, train_set: Dataset, val_set: Dataset, classes: list[str], batch_size: int = 64, num_workers: int = 0
    ) -> None:
        super().__init__()
        self.train_set, self.val_set, self.classes = train_set, val_set, classes
        self.batch_size, self.num_workers = batch_size, num_workers

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=max(self.batch_size, 256), num_workers=self.num_workers)
