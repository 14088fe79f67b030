"""Prunable dimensions found with torch-pruning's dependency graph, and sparsity vectors applied to copies."""

from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import replace
from typing import Iterator, Mapping, Protocol, Sequence

import torch
import torch_pruning as tp
from torch import nn
from torch.nn import functional as F

from prunetuna.spaces._attention import fix_widths, head_counts
from prunetuna.spaces._dimensions import ROOT_TYPES, Dimension, find_dimensions, find_output_layer, ignored_layers
from prunetuna.spaces._graph import GraphLimits
from prunetuna.spaces._importance import NEEDS_GRADIENTS, make_importance
from prunetuna.spaces._masks import MASK_METHODS, make_permanent
from prunetuna.spaces._ratio_scale import SCALES, suggest_ratios
from prunetuna.spaces._tie import Granularity, tie_dimensions
from prunetuna.sparsity import SparsityVector, canonical

__all__ = ["Batches", "Dimension", "Granularity", "PruningSpace", "SparsityVector", "find_output_layer", "tie_dimensions"]


class _Suggester(Protocol):
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False) -> float: ...


Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]
"""A few (inputs, labels) batches, for criteria that need gradients."""

METHODS = ("structured", *MASK_METHODS)


class PruningSpace:
    """The search space: one sparsity ratio in ``[0, max_sparsity]`` (with ``step``) per dimension."""

    def __init__(
        self,
        dimensions: Sequence[Dimension],
        *,
        max_sparsity: float,
        step: float,
        importance: str = "l2",
        ignored: Sequence[str] = (),
        round_to: int | None = None,
        method: str = "structured",
        nm: tuple[int, int] = (2, 4),
        scale: str = "linear",
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
        if method == "nm":  # a layer is either dense or N:M: one step of 1 - N/M
            max_sparsity = step = round(1 - nm[0] / nm[1], 6)
        if not 0.0 <= max_sparsity < 1.0:
            raise ValueError(f"max_sparsity must lie in [0, 1), got {max_sparsity}")
        if step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        if scale not in SCALES:
            raise ValueError(f"unknown pruning scale {scale!r}; choose one of {', '.join(SCALES)}")
        self.dimensions = tuple(dimensions)
        self.max_sparsity = max_sparsity
        self.step = step
        self.importance = importance
        self.ignored = tuple(ignored)
        self.round_to = round_to
        self.method = method
        self.nm = nm
        self.scale = scale  # how the sampler draws ratios: spaces/_ratio_scale.py

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        example: torch.Tensor,
        *,
        max_sparsity: float,
        step: float,
        importance: str = "l2",
        ignore: Sequence[str] = (),
        round_to: int | None = None,
        granularity: Granularity = "layer",
        groups: Mapping[str, Sequence[str]] | None = None,
        method: str = "structured",
        nm: tuple[int, int] = (2, 4),
        graph_limits: GraphLimits | None = None,
        scale: str = "linear",
    ) -> PruningSpace:
        """Find the prunable groups of ``model``; ``ignore`` holds layer-name patterns (fnmatch).

        ``granularity`` ties groups per residual block or per stage (same output resolution);
        ``groups`` ties the groups whose root matches a name's patterns into one dimension.
        ``round_to`` keeps every pruned channel count a multiple of it (kernels favour such widths).
        ``method`` ``unstructured`` or ``nm`` masks weights per layer instead of removing channels.
        ``graph_limits`` bounds the time and memory spent on torch-pruning's dependency graph.
        """
        ignored = ignored_layers(model, example, ignore)
        if method in MASK_METHODS:
            dimensions = [Dimension(name=n, channels=int(m.weight.numel()), layers=(n,)) for n, m in model.named_modules()
                          if isinstance(m, ROOT_TYPES) and n not in ignored and m.weight.numel() > 1]
        else:
            dimensions = find_dimensions(model, example, ignored, graph_limits)
        tied = tie_dimensions(dimensions, model, example, granularity, groups or {})
        return cls(tied, max_sparsity=max_sparsity, step=step, importance=importance, ignored=ignored, round_to=round_to,
                   method=method, nm=nm, scale=scale)

    def with_bounds(self, bounds: Mapping[str, float]) -> PruningSpace:
        """The same space with per-dimension upper bounds (at most ``max_sparsity``)."""
        dims = [replace(d, high=min(bounds[d.name], self.max_sparsity)) if d.name in bounds else d for d in self.dimensions]
        return PruningSpace(dims, max_sparsity=self.max_sparsity, step=self.step, importance=self.importance,
                            ignored=self.ignored, round_to=self.round_to, method=self.method, nm=self.nm, scale=self.scale)

    def high(self, dimension: Dimension) -> float:
        return self.max_sparsity if dimension.high is None else dimension.high

    def suggest(self, trial: _Suggester) -> SparsityVector:
        """Ask ``trial`` (an Optuna trial) for one ratio per dimension, as ``sparsity.<name>``, in canonical form
        (0.6000000000000001, a float step artefact, is applied, stored and shown as 0.6: see prunetuna.sparsity).
        ``scale: log`` draws the kept fraction on a log scale instead (spaces/_ratio_scale.py)."""
        return suggest_ratios(self, trial)

    def snap(self, vector: Mapping[str, float]) -> SparsityVector:
        """``vector`` on the step grid, within each dimension's bounds (what a sampler could have drawn)."""
        return canonical({d.name: min(round(vector.get(d.name, 0.0) / self.step) * self.step, self.high(d)) for d in self.dimensions})

    def uniform(self, ratio: float) -> SparsityVector:
        """The same ratio in every dimension (capped by each dimension's bound)."""
        return canonical({d.name: min(ratio, self.high(d)) for d in self.dimensions})

    def _cap_for_rounding(self, module: nn.Module, ratio: float) -> float:
        """At most the ratio that still keeps ``round_to`` channels: past it torch-pruning would round the
        layer down to zero channels and then leave it unpruned, so cost would stop falling with the ratio."""
        channels = module.out_channels if isinstance(module, nn.modules.conv._ConvNd) else module.out_features
        return min(ratio, max(0.0, (channels - self.round_to) / channels))

    def finalize(self, model: nn.Module) -> nn.Module:
        """After fine-tuning: masks folded into the weights (a no-op for structured pruning)."""
        return make_permanent(model)

    def global_allocation(self, model: nn.Module, ratio: float, example: torch.Tensor, batches: Batches = ()) -> SparsityVector:
        """The per-dimension ratios that torch-pruning's global ranking reaches at ``ratio`` (not snapped)."""
        pruned = copy.deepcopy(model)
        before = _root_channels(pruned)
        modules = dict(pruned.named_modules())
        self._gradients(pruned, batches)
        pruned.eval()
        with _quiet_copies():
            pruner = tp.pruner.MetaPruner(
                pruned, example[:1].to(next(pruned.parameters()).device), importance=make_importance(self.importance),
                pruning_ratio=ratio, global_pruning=True, max_pruning_ratio=self.max_sparsity,
                ignored_layers=[modules[n] for n in self.ignored], root_module_types=list(ROOT_TYPES), round_to=self.round_to,
                num_heads=head_counts(pruned),
            )
        pruner.step()
        after = _root_channels(fix_widths(pruned))
        vector = {}
        for d in self.dimensions:
            total = sum(before[r] for r in d.roots)
            kept = sum(after[r] for r in d.roots)
            vector[d.name] = min(1.0 - kept / total, self.high(d)) if total else 0.0
        return vector

    def check(self, vector: SparsityVector) -> None:
        """Raise ``ValueError`` when ``vector`` names unknown dimensions or ratios outside [0, 1)."""
        unknown = set(vector) - set(self.names)
        if unknown:
            raise ValueError(f"unknown dimensions {sorted(unknown)}; known: {self.names}")
        for name, ratio in vector.items():
            if not 0.0 <= ratio < 1.0:
                raise ValueError(f"sparsity.{name} must lie in [0, 1), got {ratio}")

    def _gradients(self, model: nn.Module, batches: Batches) -> None:
        """Criteria such as Taylor read ``.grad``: accumulate it over a few batches."""
        if self.importance not in NEEDS_GRADIENTS:
            return
        if not batches:
            raise ValueError(f"importance {self.importance!r} needs a few batches of data for gradients")
        device = next(model.parameters()).device
        model.train()
        model.zero_grad()
        for x, y in batches:
            F.cross_entropy(model(x.to(device)), y.to(device)).backward()

    def apply(
        self, model: nn.Module, vector: SparsityVector, example: torch.Tensor, batches: Batches = (), *, structure_only: bool = False
    ) -> nn.Module:
        """A pruned copy of ``model``: channels physically removed, ``model`` untouched.

        ``structure_only`` is for measuring costs: channel counts do not depend on which channels
        go, so a magnitude criterion stands in for one that needs gradients.
        """
        vector = canonical(vector)  # the same channel counts whichever float spelling of a ratio comes in
        self.check(vector)
        pruned = copy.deepcopy(model)
        modules = dict(pruned.named_modules())
        ratios = {modules[root]: vector[d.name] for d in self.dimensions if vector.get(d.name, 0.0) > 0 for root in d.roots}
        if self.round_to and self.method == "structured":
            ratios = {module: self._cap_for_rounding(module, ratio) for module, ratio in ratios.items()}
            ratios = {module: ratio for module, ratio in ratios.items() if ratio > 0}
        if not ratios:
            return pruned
        if self.method in MASK_METHODS:
            for module, ratio in ratios.items():
                MASK_METHODS[self.method](module, ratio, self.nm)
            return pruned
        was_training = pruned.training
        importance = "l2" if structure_only and self.importance in NEEDS_GRADIENTS else self.importance
        if importance in NEEDS_GRADIENTS:
            self._gradients(pruned, batches)
        pruned.eval()
        with _quiet_copies():
            pruner = tp.pruner.MetaPruner(
                pruned,
                example[:1].to(next(pruned.parameters()).device),
                importance=make_importance(importance),
                pruning_ratio=0.0,
                pruning_ratio_dict=ratios,
                ignored_layers=[modules[n] for n in self.ignored],
                root_module_types=list(ROOT_TYPES),
                round_to=self.round_to,
                num_heads=head_counts(pruned),  # every head of an attention layer keeps the same width
            )
        pruner.step()
        fix_widths(pruned)  # cached widths (num_heads * head_dim, hidden_dim) follow the pruned layers
        pruned.zero_grad(set_to_none=True)
        pruned.train(was_training)
        return pruned


def _root_channels(model: nn.Module) -> dict[str, int]:
    return {n: (m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features)
            for n, m in model.named_modules() if isinstance(m, ROOT_TYPES)}


@contextlib.contextmanager
def _quiet_copies() -> Iterator[None]:
    """torch-pruning warns about parameters outside layers (a ViT's class token, a layer scale) at every graph it
    builds: the space's own graph (:meth:`PruningSpace.from_model`, once a search) says it; the copies pruned for
    every trial do not repeat it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        yield
