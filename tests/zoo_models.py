"""Pure-torch replicas of the building blocks of torchvision's and timm's families, tiny, on 3x16x16 images.

Each is what a family does to the dependency graph: squeeze-excite scales and hard-swish (MobileNetV3,
EfficientNet), depthwise-separable (MobileNetV1/V2), grouped 3x3 (ResNeXt, RegNet), channel concat
(DenseNet), a LayerNorm'd ConvNeXt block (permute, Linear, layer scale), a torchvision ViT encoder
(``reshape(n, self.hidden_dim, ...)``, class token, ``nn.MultiheadAttention``) and a timm-style fused
``qkv`` Linear attention (``reshape(B, N, 3, self.num_heads, self.head_dim)``). The refused ones:
a ShuffleNet channel shuffle, and a forward torch-pruning cannot trace (no autograd graph).
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class Images(pl.LightningDataModule):
    """Random 3x16x16 images labelled by their brightest quadrant (learnable, made on the spot)."""

    def __init__(self, n: int = 160, size: int = 16, batch_size: int = 32, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, size, size, generator=generator)
        h = size // 2
        quadrants = [self.x[..., :h, :h], self.x[..., :h, h:], self.x[..., h:, :h], self.x[..., h:, h:]]
        self.y = torch.stack([q.sum(dim=(1, 2, 3)) for q in quadrants], 1).argmax(dim=1)
        self.split, self.batch_size = n * 3 // 4, batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            TensorDataset(self.x[: self.split], self.y[: self.split]), batch_size=self.batch_size, shuffle=True
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x[self.split :], self.y[self.split :]), batch_size=self.batch_size)


def _head(channels: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


class InvertedResidualSE(nn.Module):
    """MobileNetV3 / EfficientNet block: expand, depthwise, squeeze-excite, hard-swish, project, residual add."""

    def __init__(self, width: int = 8, num_classes: int = 4) -> None:
        super().__init__()
        hidden = width * 3
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.Hardswish())
        self.expand = nn.Sequential(nn.Conv2d(width, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish())
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish()
        )
        self.se_reduce, self.se_expand = nn.Conv2d(hidden, 8, 1), nn.Conv2d(8, hidden, 1)
        self.project = nn.Sequential(nn.Conv2d(hidden, width, 1, bias=False), nn.BatchNorm2d(width))
        self.head = _head(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        h = self.depthwise(self.expand(x))
        scale = F.hardsigmoid(self.se_expand(F.relu(self.se_reduce(h.mean(dim=(2, 3), keepdim=True)))))
        return self.head(x + self.project(h * scale))


class DepthwiseSeparable(nn.Module):
    """MobileNetV1: depthwise 3x3 then pointwise 1x1, twice."""

    def __init__(self, width: int = 8, num_classes: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU()]
        for out in (width * 2, width * 2):
            layers += [
                nn.Conv2d(width, width, 3, 1, 1, groups=width),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, out, 1),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            ]
            width = out
        self.features = nn.Sequential(*layers)
        self.head = _head(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class GroupedConv(nn.Module):
    """ResNeXt / RegNet bottleneck: 1x1, grouped 3x3 (4 groups), 1x1, residual add."""

    def __init__(self, width: int = 8, num_classes: int = 4) -> None:
        super().__init__()
        inner = width * 2
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.reduce = nn.Sequential(nn.Conv2d(width, inner, 1), nn.BatchNorm2d(inner), nn.ReLU())
        self.grouped = nn.Sequential(nn.Conv2d(inner, inner, 3, 1, 1, groups=4), nn.BatchNorm2d(inner), nn.ReLU())
        self.restore = nn.Sequential(nn.Conv2d(inner, width, 1), nn.BatchNorm2d(width))
        self.head = _head(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(F.relu(x + self.restore(self.grouped(self.reduce(x)))))


class ChannelConcat(nn.Module):
    """DenseNet: each layer's output concatenated to its input, then a transition 1x1."""

    def __init__(self, width: int = 8, num_classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, 2, 1)
        self.grow1 = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, 4, 3, 1, 1))
        self.grow2 = nn.Sequential(nn.BatchNorm2d(width + 4), nn.ReLU(), nn.Conv2d(width + 4, 4, 3, 1, 1))
        self.transition = nn.Sequential(nn.BatchNorm2d(width + 8), nn.ReLU(), nn.Conv2d(width + 8, width, 1))
        self.head = _head(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([x, self.grow1(x)], 1)
        x = torch.cat([x, self.grow2(x)], 1)
        return self.head(self.transition(x))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt: depthwise 7x7, channels-last LayerNorm, Linear 4x, GELU, Linear back, layer scale, residual add."""

    def __init__(self, width: int = 8, num_classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 4, 4)
        self.dwconv = nn.Conv2d(width, width, 7, padding=3, groups=width)
        self.norm = nn.LayerNorm(width)
        self.pwconv1, self.pwconv2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        self.gamma = nn.Parameter(torch.full((width,), 0.1))
        self.head = _head(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return self.head(x + y.permute(0, 3, 1, 2))


class _EncoderBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden)
        self.self_attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp), nn.GELU(), nn.Linear(mlp, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.self_attention(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class ViTEncoder(nn.Module):
    """torchvision's VisionTransformer in small: patch conv, ``reshape(n, self.hidden_dim, -)``, class token,
    position embedding, ``nn.MultiheadAttention`` encoder blocks, head on the class token."""

    def __init__(
        self, hidden_dim: int = 16, num_heads: int = 2, num_classes: int = 4, patch: int = 4, size: int = 16
    ) -> None:
        super().__init__()
        self.hidden_dim, self.patch = hidden_dim, patch
        self.conv_proj = nn.Conv2d(3, hidden_dim, patch, patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, hidden_dim) * 0.02)
        self.layers = nn.Sequential(*[_EncoderBlock(hidden_dim, num_heads, hidden_dim * 2) for _ in range(2)])
        self.ln = nn.LayerNorm(hidden_dim)
        self.head = nn.Linear(hidden_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        x = self.conv_proj(x).reshape(n, self.hidden_dim, (h // self.patch) * (w // self.patch)).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1) + self.pos_embedding
        return self.head(self.ln(self.layers(x))[:, 0])


class _QkvAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


class TimmStyleViT(nn.Module):
    """timm's ViT in small: ``patch_embed.proj``, blocks of a fused-qkv attention and an fc1/fc2 MLP, ``embed_dim``."""

    def __init__(
        self, embed_dim: int = 16, num_heads: int = 2, num_classes: int = 4, patch: int = 4, size: int = 16
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, embed_dim, patch, patch)
        self.pos_embed = nn.Parameter(torch.randn(1, (size // patch) ** 2, embed_dim) * 0.02)
        self.norms = nn.ModuleList([nn.LayerNorm(embed_dim) for _ in range(4)])
        self.attns = nn.ModuleList([_QkvAttention(embed_dim, num_heads) for _ in range(2)])
        self.fc1 = nn.ModuleList([nn.Linear(embed_dim, embed_dim * 2) for _ in range(2)])
        self.fc2 = nn.ModuleList([nn.Linear(embed_dim * 2, embed_dim) for _ in range(2)])
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2) + self.pos_embed
        for i in range(2):
            x = x + self.attns[i](self.norms[2 * i](x))
            x = x + self.fc2[i](F.gelu(self.fc1[i](self.norms[2 * i + 1](x))))
        return self.head(x.mean(dim=1))


class ChannelShuffle(nn.Module):
    """ShuffleNetV2's unit: split the channels, transform one half, concat, then shuffle
    (``view(n, 2, c // 2, h, w)``, transpose, ``view(n, c, h, w)``)."""

    def __init__(self, width: int = 8, num_classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 2 * width, 3, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.branch = nn.Sequential(
            nn.Conv2d(width, width, 1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, 1, 1, groups=width),
            nn.BatchNorm2d(width),
            nn.Conv2d(width, width, 1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.conv5 = nn.Conv2d(2 * width, 4 * width, 1)
        self.head = _head(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for _ in range(2):
            left, right = x.chunk(2, dim=1)
            x = torch.cat([left, self.branch(right)], 1)
            n, c, h, w = x.shape
            x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        return self.head(F.relu(self.conv5(x)))


class Untraceable(nn.Module):
    """A forward that leaves autograd (a round trip through a Python list): torch-pruning sees no graph to follow."""

    def __init__(self, width: int = 8, num_classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, 2, 1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.tensor(F.relu(self.conv(x)).mean(dim=(2, 3)).tolist())
        return self.head(pooled)


class PartlyHardCoded(nn.Module):
    """One branch's width is hard-coded in its forward (``reshape(n, self.width)``), the other's is not: the
    pre-flight check drops the first dimension and the search goes on with the second."""

    def __init__(self, width: int = 8, num_classes: int = 4) -> None:
        super().__init__()
        self.width = width
        self.fixed = nn.Conv2d(3, width, 3, 2, 1)
        self.free = nn.Conv2d(3, width, 3, 2, 1)
        self.mix = nn.Conv2d(width, width, 1)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fixed = F.relu(self.fixed(x)).mean(dim=(2, 3)).reshape(x.shape[0], self.width)
        free = F.relu(self.mix(F.relu(self.free(x)))).mean(dim=(2, 3))
        return self.head(torch.cat([fixed, free], 1))
