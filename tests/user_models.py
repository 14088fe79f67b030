"""Models and data a user might bring: residual adds, depthwise convolutions, channel concats."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class ResidualNet(nn.Module):
    """Two convolutions whose outputs are added: their output channels are one group."""

    def __init__(self, channels: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(1, channels, 3, padding=1)
        self.conv_b = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_c = nn.Conv2d(channels, channels, 3, padding=1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv_a(x))
        b = torch.relu(self.conv_c(torch.relu(self.conv_b(a))) + a)
        return self.head(b.mean(dim=(2, 3)))


class DepthwiseNet(nn.Module):
    """MobileNet-style: pointwise expand, depthwise 3x3, pointwise project."""

    def __init__(self, channels: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1)
        self.expand = nn.Conv2d(channels, channels * 2, 1)
        self.depthwise = nn.Conv2d(channels * 2, channels * 2, 3, padding=1, groups=channels * 2)
        self.bn = nn.BatchNorm2d(channels * 2)
        self.project = nn.Conv2d(channels * 2, channels, 1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.bn(self.depthwise(torch.relu(self.expand(x)))))
        return self.head(torch.relu(self.project(x)).mean(dim=(2, 3)))


class ConcatNet(nn.Module):
    """Two branches concatenated along channels, then a convolution over the concat."""

    def __init__(self, channels: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.channels = channels
        self.left = nn.Conv2d(1, channels, 3, padding=1)
        self.right = nn.Conv2d(1, channels * 2, 3, padding=1)
        self.fuse = nn.Conv2d(channels * 3, channels, 1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([torch.relu(self.left(x)), torch.relu(self.right(x))], dim=1)
        return self.head(torch.relu(self.fuse(x)).mean(dim=(2, 3)))


class LinearOnly(nn.Module):
    """Nothing to prune: the only layer is the output layer."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1))


class RandomImages(pl.LightningDataModule):
    """Random 8x8 images whose label is the brightest quadrant: learnable, made on the spot."""

    def __init__(self, n: int = 256, batch_size: int = 32, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 8, 8, generator=generator)
        quadrants = torch.stack(
            [
                q.sum(dim=(1, 2, 3))
                for q in (self.x[..., :4, :4], self.x[..., :4, 4:], self.x[..., 4:, :4], self.x[..., 4:, 4:])
            ],
            1,
        )
        self.y = quadrants.argmax(dim=1)
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x[:200], self.y[:200]), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x[200:], self.y[200:]), batch_size=self.batch_size)


def not_a_module() -> int:
    return 3


class NaNWhenPruned(nn.Module):
    """Trains normally dense; once pruned (fewer channels), its logits are NaN: every trial's loss is NaN."""

    def __init__(self, channels: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))
        return logits if self.conv.out_channels == self.channels else logits * float("nan")


class FixedFlatten(NaNWhenPruned):
    """NaNWhenPruned's layers, but its forward hard-codes the dense channel count: every pruned copy
    fails in its first forward pass. The pre-flight check refuses it before any trial."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.head(pooled.reshape(x.shape[0], self.channels))


class MatchedWidths(nn.Module):
    """Two branches whose forward needs equal widths (a check torch-pruning cannot see): each pruned alone
    at the bound, or both at it, runs, so it passes the pre-flight check; trials that prune the branches
    unequally fail in their first forward pass, while costs are measured, before any fine-tune."""

    def __init__(self, channels: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.channels = channels
        self.left = nn.Conv2d(1, channels, 3, padding=1)
        self.right = nn.Conv2d(1, channels, 3, padding=1)
        self.mix = nn.Conv2d(channels, 1, 1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = torch.relu(self.left(x)), torch.relu(self.right(x))
        widths = (left.shape[1], right.shape[1])
        if self.channels not in widths and widths[0] != widths[1]:
            raise RuntimeError(f"branch widths {widths} differ")
        return self.head(left.mean(dim=(2, 3))) + self.mix(right).mean(dim=(2, 3))
