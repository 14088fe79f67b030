"""The sparsity vector as it is applied, stored and shown: one canonical form for all three.

A vector maps each dimension name to the share of its channels removed. Optuna hands out step-grid
floats such as 0.7000000000000001, and torch-pruning keeps ``int(n * (1 - ratio))`` channels, so
320 channels become 95 at that float and 96 at 0.7: a rebuild from Optuna's raw parameter would not
be the model the search trained. Every vector therefore goes through :func:`canonical` before it is
applied, the applied one is stored with the trial (user attribute ``sparsity``), and every reader
(rebuild, export, report, model card) takes it from ``prunetuna.store.TrialRecord.sparsity``. Torch-free: ``report``
imports it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = [
    "DECIMALS",
    "KEPT_PREFIX",
    "PARAM_PREFIX",
    "SparsityVector",
    "as_params",
    "canonical",
    "from_params",
    "param_name",
    "snap",
]

SparsityVector = dict[str, float]
"""Ratio of channels to remove, by dimension name."""

PARAM_PREFIX = "sparsity."
"""Optuna parameter and MLflow param names: ``sparsity.<dimension>``."""

KEPT_PREFIX = "kept."
"""Optuna parameter names of ``pruning.scale: log``: the kept fraction, 1 - sparsity (spaces/_ratio_scale.py)."""

DECIMALS = 6


def canonical(vector: Mapping[str, float]) -> SparsityVector:
    """``vector`` with every ratio rounded to 6 decimals: 0.7000000000000001 reads, and prunes, as 0.7."""
    return {name: round(float(ratio), DECIMALS) for name, ratio in vector.items()}


def snap(ratio: float, step: float, *, up: bool = False, high: float | None = None) -> float:
    """``ratio`` on the ``step`` grid, in canonical form: the nearest point, or with ``up`` the first point
    at or above it (a cost level reached at ``ratio`` still holds); at most ``high`` when given."""
    points = math.ceil(ratio / step - 1e-9) if up else round(ratio / step)
    value = points * step
    return round(value if high is None else min(value, high), DECIMALS)


def param_name(dimension: str) -> str:
    return PARAM_PREFIX + dimension


def as_params(vector: Mapping[str, float]) -> dict[str, float]:
    """``{"sparsity.<dimension>": ratio}``: how Optuna and MLflow name the vector's entries."""
    return {param_name(name): ratio for name, ratio in canonical(vector).items()}


def from_params(params: Mapping[str, Any]) -> SparsityVector:
    """The vector among Optuna params (``sparsity.<dimension>``, or ``kept.<dimension>`` = 1 - sparsity), in
    canonical form."""
    vector = {k.removeprefix(PARAM_PREFIX): v for k, v in params.items() if k.startswith(PARAM_PREFIX)}
    vector.update({k.removeprefix(KEPT_PREFIX): 1.0 - v for k, v in params.items() if k.startswith(KEPT_PREFIX)})
    return canonical(vector)
