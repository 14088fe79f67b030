"""Importance criteria by name: torch-pruning's classes, which rank channels inside a group."""

from __future__ import annotations

from typing import Callable

import torch_pruning as tp

__all__ = ["IMPORTANCES", "NEEDS_GRADIENTS", "make_importance"]

IMPORTANCES: dict[str, Callable[[], tp.importance.Importance]] = {
    "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "bn_scale": lambda: tp.importance.BNScaleImportance(),
    "taylor": lambda: tp.importance.GroupTaylorImportance(),
    "random": lambda: tp.importance.RandomImportance(),
}

NEEDS_GRADIENTS = frozenset({"taylor"})
"""Criteria that read ``.grad``: the pruned copy gets a few batches of gradients first."""


def make_importance(name: str) -> tp.importance.Importance:
    """A fresh importance object for ``name`` (``l1``, ``l2``, ``bn_scale``, ``taylor``, ``random``)."""
    if name not in IMPORTANCES:
        raise ValueError(f"unknown importance {name!r}; choose one of {', '.join(IMPORTANCES)}")
    return IMPORTANCES[name]()
