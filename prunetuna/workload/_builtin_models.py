"""Built-in models, looked up by name from ``model.builtin``."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from prunetuna.registry import Registry

__all__ = ["BUILTIN_MODELS", "BasicBlock", "TinyResNet", "register_model"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual add (projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TinyResNet(nn.Module):
    """A small residual CNN for 1-channel images: a strided stem, three stages, a linear head.

    Residual adds couple the channels of every block's output to its input, which is what
    makes dependency-aware pruning necessary.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        width: int = 16,
        blocks: tuple[int, ...] | list[int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        channels = width
        for index, count in enumerate(blocks):
            out_channels = width * (2**index)
            layers = []
            for block in range(count):
                stride = 2 if (index > 0 and block == 0) else 1
                layers.append(BasicBlock(channels, out_channels, stride))
                channels = out_channels
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = (stages + [nn.Identity()] * 3)[:3]
        self.extra = nn.Sequential(*stages[3:])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.extra(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


BUILTIN_MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``factory`` available as ``model.builtin: name``."""
    BUILTIN_MODELS.register(name, factory)


register_model("tiny-resnet", TinyResNet)
register_model("wide-resnet", lambda **kw: TinyResNet(**{"width": 36, **kw}))
