"""Importance criteria by name: torch-pruning's classes, which rank channels inside a group."""

from __future__ import annotations

from typing import Callable

import torch_pruning as tp

from prunetuna.config import GRADIENT_IMPORTANCES
from prunetuna.registry import Registry

__all__ = ["IMPORTANCES", "NEEDS_GRADIENTS", "make_importance"]

IMPORTANCES: Registry[Callable[[], tp.importance.Importance]] = Registry("importance")
IMPORTANCES.register("l1", lambda: tp.importance.GroupMagnitudeImportance(p=1))
IMPORTANCES.register("l2", lambda: tp.importance.GroupMagnitudeImportance(p=2))
IMPORTANCES.register("bn_scale", lambda: tp.importance.BNScaleImportance())
IMPORTANCES.register("taylor", lambda: tp.importance.GroupTaylorImportance())
IMPORTANCES.register("random", lambda: tp.importance.RandomImportance())

NEEDS_GRADIENTS = frozenset(GRADIENT_IMPORTANCES)
"""Criteria that read ``.grad``: the pruned copy gets a few batches of gradients first."""


def make_importance(name: str) -> tp.importance.Importance:
    """A fresh importance object for ``name`` (``l1``, ``l2``, ``bn_scale``, ``taylor``, ``random``)."""
    return IMPORTANCES.get(name)()
