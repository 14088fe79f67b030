"""Pre-flight check: before any trial, does pruning each dimension at its upper bound leave a model that runs?

A model whose forward hard-codes a width (a reshape to a fixed channel count, an attribute no
fixer knows) breaks as soon as one of its dimensions is pruned, and every trial that samples that
dimension fails. The check prunes the structure only (no training), runs one forward pass while
counting FLOPs, and compares the output's shape with the dense model's. All dimensions at their
bound together come first (one pruning, the common case of a model that is fine); only if that
breaks is each dimension tried alone.

A dimension that breaks the model alone is **dropped from the space with a warning** that names it
and the ``pruning.ignore`` patterns that drop it explicitly, rather than stopping the search: the
rest of the model still searches (a ViT whose embedding width is hard-coded still has its MLPs), the
check is deterministic, so a resumed search and ``export`` rebuild the same space, and putting the
patterns in ``pruning.ignore`` silences the warning. Nothing left to search is bad input.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol, Sequence, TypeVar

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prunetuna.errors import UserError
from prunetuna.spaces._dimensions import Dimension, output_tensors
from prunetuna.spaces._methods import PruningMethod
from prunetuna.sparsity import SparsityVector

S = TypeVar("S", bound="CheckedSpace")


class CheckedSpace(Protocol):
    """What the check uses of a space (:class:`prunetuna.spaces.PruningSpace`)."""

    model: nn.Module
    example: torch.Tensor
    strategy: PruningMethod

    @property
    def dimensions(self) -> Sequence[Dimension]: ...

    def high(self, dimension: Dimension) -> float: ...

    def highest(self) -> SparsityVector: ...

    def apply(self, vector: SparsityVector, *, structure_only: bool = False) -> nn.Module: ...

    def only(self: S, dimensions: Sequence[Dimension]) -> S: ...

__all__ = ["BrokenDimension", "preflight"]


@dataclass(frozen=True)
class BrokenDimension:
    """A dimension that, pruned alone at its bound, stops the model from running; ``error`` is why."""

    dimension: Dimension
    error: str

    @property
    def patterns(self) -> list[str]:
        return list(self.dimension.roots)


def _shapes(out: object) -> tuple[object, ...]:
    """The shapes of a model's output tensors (several for several heads; a non-tensor by its type name)."""
    return tuple(tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in output_tensors(out))


def _runs(space: CheckedSpace, vector: SparsityVector, shape: tuple[object, ...]) -> str | None:
    """None when the pruned model runs and keeps the dense output shapes; else what went wrong, in one line."""
    try:
        pruned = space.apply(vector, structure_only=True).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as flops:
            out = pruned(space.example[:1])
        if _shapes(out) != shape:
            got, want = (s[0] if len(s) == 1 else s for s in (_shapes(out), shape))
            return f"output shape {got} instead of {want}"
        if flops.get_total_flops() <= 0:
            return "no FLOPs counted in the pruned forward pass"
    except Exception as exc:  # noqa: BLE001 - whatever breaks, the dimension is named with its cause
        return f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:120]}"
    return None


def preflight(space: S, label: str = "model") -> tuple[S, list[BrokenDimension]]:
    """``space`` without the dimensions that break its model when pruned alone at their bound, and those dimensions."""
    if not space.strategy.changes_shapes or not space.dimensions:
        return space, []  # masks keep every shape
    model, example = space.model, space.example
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            shape = _shapes(model(example[:1]))
        if _runs(space, space.highest(), shape) is None:
            return space, []
        broken = []
        for dimension in space.dimensions:
            error = _runs(space, {dimension.name: space.high(dimension)}, shape)
            if error is not None:
                broken.append(BrokenDimension(dimension, error))
    finally:
        model.train(was_training)
    if not broken:
        return space, []
    kept = [d for d in space.dimensions if d not in {b.dimension for b in broken}]
    patterns = [p for b in broken for p in b.patterns]
    if not kept:
        raise UserError(f"{label}: every dimension breaks the model when pruned (first: sparsity.{broken[0].dimension.name}, "
                        f"{broken[0].error}); its forward hard-codes the widths, so it cannot be pruned structurally; "
                        "try pruning.method: unstructured or nm")
    for b in broken:
        print(f"prunetuna: warning: {label}: dimension sparsity.{b.dimension.name} ({len(b.dimension.layers)} layers) breaks the "
              f"model when pruned ({b.error}); dropped from the search space", file=sys.stderr, flush=True)
    print(f"prunetuna: warning: {label}: add {patterns} to pruning.ignore to drop them explicitly", file=sys.stderr, flush=True)
    return space.only(kept), broken
