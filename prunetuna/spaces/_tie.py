"""Tying per-group dimensions into coarser ones: explicit ``groups``, residual blocks, or stages (same resolution)."""

from __future__ import annotations

import fnmatch
from typing import Literal, Mapping, Sequence

import torch
from torch import nn

from prunetuna.spaces._dimensions import Dimension

__all__ = ["Granularity", "tie_dimensions"]

Granularity = Literal["layer", "block", "stage"]


def _block_of(root: str, modules: Mapping[str, nn.Module]) -> str:
    """The residual block a layer belongs to: its nearest enclosing module that is not a plain container."""
    parts = root.split(".")
    for end in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:end])
        if not isinstance(modules[prefix], (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return prefix
    return root


def _resolutions(model: nn.Module, example: torch.Tensor, roots: Sequence[str]) -> dict[str, str]:
    """Each root layer's output resolution (``14x14``; ``features`` for linear layers)."""
    shapes: dict[str, str] = {}
    modules = dict(model.named_modules())
    hooks = [
        modules[r].register_forward_hook(
            lambda _m, _i, out, r=r: shapes.__setitem__(r, "x".join(map(str, out.shape[2:])) or "features")
        )
        for r in roots
    ]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(example[:1])
        model.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def tie_dimensions(
    dimensions: Sequence[Dimension],
    model: nn.Module,
    example: torch.Tensor,
    granularity: Granularity,
    groups: Mapping[str, Sequence[str]],
) -> list[Dimension]:
    """Tie per-group dimensions: explicit ``groups`` first, then by block or stage (``layer``: unchanged)."""
    modules = dict(model.named_modules())
    keys: dict[str, str] = {}
    for dimension in dimensions:
        explicit = next(
            (
                name
                for name, patterns in groups.items()
                if any(fnmatch.fnmatchcase(dimension.name, p) for p in patterns)
            ),
            None,
        )
        if explicit is not None:
            keys[dimension.name] = explicit
        elif granularity == "block":
            keys[dimension.name] = _block_of(dimension.name, modules)
        elif granularity == "stage":
            keys[dimension.name] = "stage@" + _resolutions(model, example, [dimension.name])[dimension.name]
        else:
            keys[dimension.name] = dimension.name
    if granularity == "stage":  # stage@14x14 -> stage1, stage2 ... in layer order
        order = list(dict.fromkeys(k for k in keys.values() if k.startswith("stage@")))
        keys = {n: f"stage{order.index(k) + 1}" if k in order else k for n, k in keys.items()}
    tied: dict[str, list[Dimension]] = {}
    for dimension in dimensions:
        tied.setdefault(keys[dimension.name], []).append(dimension)
    return [
        Dimension(
            name=key,
            channels=sum(m.channels for m in members),
            layers=tuple(dict.fromkeys(layer for m in members for layer in m.layers)),
            members=tuple(m.name for m in members) if (len(members) > 1 or key != members[0].name) else (),
            producers=tuple(dict.fromkeys(p for m in members for p in m.producers)),
        )
        for key, members in tied.items()
    ]
