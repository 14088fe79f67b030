"""Mask-based methods: ``unstructured`` (per-layer magnitude) and ``nm`` (N:M semi-structured, e.g. 2:4).

Masks go on through ``torch.nn.utils.prune`` so that pruned weights stay zero while the candidate
is fine-tuned; :func:`make_permanent` then folds them into plain weights. Nothing is removed: FLOPs
fall only where sparse kernels run (counted as effective multiply-adds), latency on dense kernels not.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

__all__ = ["make_permanent", "mask_nm", "mask_unstructured", "nm_mask"]


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` largest of every ``m`` consecutive weights along the input dimension (per output row)."""
    rows = weight.detach().reshape(weight.shape[0], -1).abs()
    pad = (-rows.shape[1]) % m
    padded = torch.nn.functional.pad(rows, (0, pad), value=-1.0)  # below any |w|: a short last group keeps its weights
    groups = padded.reshape(rows.shape[0], -1, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(2, groups.topk(n, dim=2).indices, True)
    return keep.reshape(rows.shape[0], -1)[:, : rows.shape[1]].reshape(weight.shape).to(weight.dtype)


def mask_unstructured(module: nn.Module, ratio: float, nm: tuple[int, int]) -> None:
    prune.l1_unstructured(module, "weight", amount=ratio)


def mask_nm(module: nn.Module, ratio: float, nm: tuple[int, int]) -> None:
    prune.custom_from_mask(module, "weight", nm_mask(module.weight, *nm))


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight (plain state_dict keys again)."""
    for module in model.modules():
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            prune.remove(module, "weight")
    return model
