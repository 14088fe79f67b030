"""Blocks whose forward splits one convolution's output in two, rewritten with two convolutions.

torch-pruning 1.6 maps channel indices wrongly through ``conv(x).chunk(2, 1)`` (or ``.split``) followed by a
``torch.cat`` of the halves: every group that crosses such a block breaks when pruned, and, since its
pruner estimates importance for every group, so does every other. Two convolutions, each holding one
half of the original's filters (and its batch-norm statistics), compute exactly the same halves and
give torch-pruning a plain concat, which it maps right.

The rewritten blocks load state dicts of the original layout too (``cv1.*`` split into ``cv1a.*`` and
``cv1b.*``), so weights saved before the rewrite still load.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["SplitC2PSA", "SplitC2f", "restore_stock", "split_block"]


def _slice(tensor: torch.Tensor, start: int, end: int) -> torch.Tensor:
    return tensor.detach()[start:end].clone()


def _slice_outputs(module: nn.Module, start: int, end: int) -> None:
    """Keep output channels ``start:end`` of a convolution or batch norm (in place)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        module.weight = nn.Parameter(_slice(module.weight, start, end), requires_grad=module.weight.requires_grad)
        if module.bias is not None:
            module.bias = nn.Parameter(_slice(module.bias, start, end), requires_grad=module.bias.requires_grad)
        module.out_channels = end - start
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        for name in ("weight", "bias"):
            param = getattr(module, name)
            if param is not None:
                setattr(module, name, nn.Parameter(_slice(param, start, end), requires_grad=param.requires_grad))
        for name in ("running_mean", "running_var"):
            buffer = getattr(module, name)
            if buffer is not None:
                setattr(module, name, _slice(buffer, start, end))
        module.num_features = end - start


def split_block(block: nn.Module, sizes: Sequence[int]) -> list[nn.Module] | None:
    """Copies of ``block`` (one ungrouped convolution, then per-channel layers: batch norm, activation), each
    keeping one consecutive slice of its output channels; None when ``block`` is not such a stack."""
    convs = [m for m in block.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    others = [
        m
        for m in block.modules()
        if m is not block
        and not isinstance(m, nn.modules.conv._ConvNd)
        and any(True for _ in m.parameters(recurse=False))
        and not isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    if len(convs) != 1 or convs[0].groups != 1 or others or sum(sizes) != convs[0].out_channels:
        return None
    parts, start = [], 0
    for size in sizes:
        part = copy.deepcopy(block)
        for module in part.modules():
            _slice_outputs(module, start, start + size)
        parts.append(part)
        start += size
    return parts


def copy_attributes(source: nn.Module, target: nn.Module) -> nn.Module:
    """The plain attributes of ``source`` that ``target`` lacks (a framework's bookkeeping: ``f``, ``i``, ``type``,
    ``np`` in ultralytics' layer list, which its forward reads), copied onto ``target``."""
    for key, value in vars(source).items():
        if not key.startswith("_") and key not in vars(target) and not isinstance(value, (nn.Module, torch.Tensor)):
            setattr(target, key, value)
    return target


class _SplitInput(nn.Module):
    """A block whose first convolution is two halves ``cv1a`` and ``cv1b``; loads ``cv1.*`` of the original layout."""

    cv1a: nn.Module
    cv1b: nn.Module

    def stock(self) -> nn.Module | None:
        """The block as the class it was rewritten from, ``cv1a`` and ``cv1b`` merged back into one ``cv1`` (exact:
        the original's forward chunks ``cv1``'s output into equal halves), or None when the halves' widths differ
        (pruned by different ratios) or the original class is unknown."""
        original = vars(self).get("_stock")
        if original is None or _width(self.cv1a) != _width(self.cv1b) or not _width(self.cv1a):
            return None
        merged = copy.deepcopy(self.cv1a)
        for part, other in zip(merged.modules(), self.cv1b.modules()):
            _concat_outputs(part, other)
        block = original.__new__(original)
        nn.Module.__init__(block)
        for key, value in vars(self).items():
            if not key.startswith("_"):
                setattr(block, key, value)
        block.cv1, block.cv2, block.m, block.c = merged, self.cv2, self.m, _width(self.cv1a)
        block.train(self.training)
        return block

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        whole = prefix + "cv1."
        if any(k.startswith(whole) for k in state_dict) and not any(k.startswith(prefix + "cv1a.") for k in state_dict):
            own = {
                **{"cv1a." + k: v for k, v in self.cv1a.state_dict().items()},
                **{"cv1b." + k: v for k, v in self.cv1b.state_dict().items()},
            }
            for key in [k for k in state_dict if k.startswith(whole)]:
                value, rest = state_dict.pop(key), key[len(whole) :]
                first, second = own.get("cv1a." + rest), own.get("cv1b." + rest)
                if first is None or second is None:
                    state_dict[key] = value  # reported as unexpected by the default loader
                elif value.dim() == 0:
                    state_dict[prefix + "cv1a." + rest], state_dict[prefix + "cv1b." + rest] = value, value.clone()
                else:
                    state_dict[prefix + "cv1a." + rest] = value[: first.shape[0]]
                    state_dict[prefix + "cv1b." + rest] = value[first.shape[0] :]
        super()._load_from_state_dict(state_dict, prefix, *args)


class SplitC2f(_SplitInput):
    """``cv2(cat([a, b, m0(b), m1(m0(b)), ...]))`` where ``a, b`` are the halves of one convolution's output
    (a CSP block with two convolutions: ultralytics' C2f and C3k2), the halves computed by ``cv1a`` and ``cv1b``."""

    def __init__(self, cv1a: nn.Module, cv1b: nn.Module, m: nn.ModuleList, cv2: nn.Module) -> None:
        super().__init__()
        self.cv1a, self.cv1b, self.m, self.cv2 = cv1a, cv1b, m, cv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1a(x), self.cv1b(x)]
        for block in self.m:
            y.append(block(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SplitC2PSA(_SplitInput):
    """``cv2(cat([a, m(b)]))`` where ``a, b`` are the halves of one convolution's output (ultralytics' C2PSA),
    the halves computed by ``cv1a`` and ``cv1b``."""

    def __init__(self, cv1a: nn.Module, cv1b: nn.Module, m: nn.Module, cv2: nn.Module) -> None:
        super().__init__()
        self.cv1a, self.cv1b, self.m, self.cv2 = cv1a, cv1b, m, cv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(torch.cat([self.cv1a(x), self.m(self.cv1b(x))], 1))


def _width(block: nn.Module) -> int | None:
    convs = [m for m in block.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    return convs[0].out_channels if len(convs) == 1 else None


def _concat_outputs(module: nn.Module, other: nn.Module) -> None:
    """``module`` with ``other``'s output channels appended (a convolution or batch norm; others unchanged)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        for name in ("weight", "bias"):
            mine = getattr(module, name)
            if mine is not None:
                joined = torch.cat([mine.detach(), getattr(other, name).detach()])
                setattr(module, name, nn.Parameter(joined, requires_grad=mine.requires_grad))
        module.out_channels += other.out_channels
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        for name in ("weight", "bias", "running_mean", "running_var"):
            mine = getattr(module, name)
            if mine is None:
                continue
            joined = torch.cat([mine.detach(), getattr(other, name).detach()])
            setattr(
                module,
                name,
                nn.Parameter(joined, requires_grad=mine.requires_grad) if name in ("weight", "bias") else joined,
            )
        module.num_features += other.num_features


def restore_stock(model: nn.Module) -> list[str]:
    """``model`` with every rewritten block that can be merged back replaced by its original class (in place);
    returns the names of those that keep prunetuna's class (halves pruned to different widths)."""
    kept = []
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _SplitInput):
                stock = child.stock()
                if stock is None:
                    kept.append(f"{parent_name}.{name}" if parent_name else name)
                else:
                    setattr(parent, name, stock)
    return kept


def split_input(block: nn.Module, kind: type[_SplitInput], sizes: Sequence[int]) -> nn.Module | None:
    """``block`` (with ``cv1``, ``m``, ``cv2``) as ``kind``, its ``cv1`` split into ``sizes``; None when it can't be."""
    halves = split_block(block.cv1, sizes)
    if halves is None:
        return None
    rewritten = kind(halves[0], halves[1], block.m, block.cv2)
    rewritten.train(block.training)
    rewritten._stock = type(block)  # what :meth:`_SplitInput.stock` merges back into
    return copy_attributes(block, rewritten)
