"""Pre-flight check: before any trial, does pruning each dimension at representative ratios leave a model that runs?

A model whose forward hard-codes a width (a reshape to a fixed channel count, an attribute no
fixer knows) breaks as soon as one of its dimensions is pruned, and every trial that samples that
dimension fails. The check prunes the structure only (no training), runs one forward pass while
counting FLOPs, and compares the output's shape with the dense model's. It does so at a few ratios
of the grid (:func:`levels`: the bound, the smallest step and one between), since a model can break at
one ratio and not at another (a ``split`` by fixed widths whose mis-mapped channel counts happen to
match at one ratio only). At each ratio all dimensions together come first (one pruning, the common
case of a model that is fine); only if that breaks is each dimension tried alone.

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
from prunetuna.spaces.rewrites import model_predictions
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

    @property
    def step(self) -> float: ...

    @property
    def max_sparsity(self) -> float: ...


__all__ = ["BrokenDimension", "levels", "preflight"]


@dataclass(frozen=True)
class BrokenDimension:
    """A dimension that, pruned alone at ``ratio``, stops the model from running; ``error`` is why."""

    dimension: Dimension
    error: str
    ratio: float = 0.0

    @property
    def patterns(self) -> list[str]:
        return list(self.dimension.roots)


def _shapes(model: nn.Module, out: object) -> tuple[object, ...]:
    """The shapes of a model's output tensors (several for several heads; a non-tensor by its type name); of its
    predictions only where a model family says which they are (not a detection head's input feature maps)."""
    tensors = output_tensors(model_predictions(model, out))
    return tuple(tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in tensors)


def _runs(space: CheckedSpace, vector: SparsityVector, shape: tuple[object, ...]) -> str | None:
    """None when the pruned model runs and keeps the dense output shapes; else what went wrong, in one line."""
    try:
        pruned = space.apply(vector, structure_only=True).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as flops:
            out = pruned(space.example[:1])
        if _shapes(pruned, out) != shape:
            got, want = (s[0] if len(s) == 1 else s for s in (_shapes(pruned, out), shape))
            return f"output shape {got} instead of {want}"
        if flops.get_total_flops() <= 0:
            return "no FLOPs counted in the pruned forward pass"
    except Exception as exc:  # noqa: BLE001 - whatever breaks, the dimension is named with its cause
        return f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:120]}"
    return None


def levels(space: CheckedSpace) -> list[float]:
    """The ratios the check prunes at, highest first: the bound, the smallest step and the grid point between them."""
    steps = max(1, round(space.max_sparsity / space.step))
    return sorted({round(space.step * k, 6) for k in (steps, max(1, steps // 2), 1)}, reverse=True)


def _at(space: CheckedSpace, dimensions: Sequence[Dimension], ratio: float) -> SparsityVector:
    return {d.name: min(ratio, space.high(d)) for d in dimensions}


def _broken(
    space: CheckedSpace, dimensions: Sequence[Dimension], shape: tuple[object, ...], ratio: float
) -> list[BrokenDimension]:
    """The dimensions that break the model alone at ``ratio``, found by halving: a set that runs together is fine,
    one that does not is split (a few prunings for a few broken dimensions among many, not one per dimension)."""
    if len(dimensions) == 1:
        error = _runs(space, _at(space, dimensions, ratio), shape)
        return [] if error is None else [BrokenDimension(dimensions[0], error, ratio)]
    half = len(dimensions) // 2
    found = []
    for part in (dimensions[:half], dimensions[half:]):
        if _runs(space, _at(space, part, ratio), shape) is not None:
            found += _broken(space, part, shape, ratio)
    return found


def _describe(model: nn.Module, name: str) -> str:
    """``layer model.2.cv1.conv (Conv2d in model.2: C2f)``: a dimension's layer, its type and its block's."""
    modules = dict(model.named_modules())
    if name not in modules:
        return name
    parts = name.split(".")
    block = next(
        (
            p
            for p in (".".join(parts[:end]) for end in range(len(parts) - 1, 0, -1))
            if not isinstance(modules[p], (nn.Sequential, nn.ModuleList, nn.ModuleDict))
        ),
        None,
    )
    inside = f" in {block}: {type(modules[block]).__name__}" if block else ""
    return f"layer {name} ({type(modules[name]).__name__}{inside})"


def preflight(space: S, label: str = "model") -> tuple[S, list[BrokenDimension]]:
    """``space`` without the dimensions that break its model when pruned alone at one of :func:`levels`, and those
    dimensions."""
    if not space.strategy.changes_shapes or not space.dimensions:
        return space, []  # masks keep every shape
    model, example = space.model, space.example
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            shape = _shapes(model, model(example[:1]))
        broken: list[BrokenDimension] = []
        for ratio in levels(space):
            left = [d for d in space.dimensions if d not in {b.dimension for b in broken}]
            if left and _runs(space, _at(space, left, ratio), shape) is not None:
                broken += _broken(space, left, shape, ratio)
    finally:
        model.train(was_training)
    if not broken:
        return space, []
    kept = [d for d in space.dimensions if d not in {b.dimension for b in broken}]
    patterns = [p for b in broken for p in b.patterns]
    first = broken[0]
    if not kept:
        raise UserError(
            f"{label}: every dimension breaks the model when pruned (first: sparsity.{first.dimension.name}"
            f", {_describe(model, first.dimension.roots[0])}, pruned at {first.ratio:g}: {first.error}); torch-pruning "
            "cannot prune this architecture's groups: put those layers in pruning.ignore or register a rewrite for the "
            "block (prunetuna.spaces.rewrites.FAMILIES); pruning.method unstructured or nm masks weights "
            "instead, which keeps every shape and gives no speedup on dense kernels"
        )
    for b in broken:
        where = _describe(model, b.dimension.roots[0])
        print(
            f"prunetuna: warning: {label}: dimension sparsity.{b.dimension.name} ({where}, {len(b.dimension.layers)} "
            f"layers) breaks the model when pruned at {b.ratio:g} ({b.error}); dropped from the search space",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"prunetuna: warning: {label}: add {patterns} to pruning.ignore to drop them explicitly",
        file=sys.stderr,
        flush=True,
    )
    return space.only(kept), broken
