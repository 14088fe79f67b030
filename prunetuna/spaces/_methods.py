"""Pruning methods by name (``pruning.method``): what a dimension is, its grid, and how a copy is pruned.

- ``structured`` removes channels with torch-pruning (dimensions are its dependency groups);
- ``unstructured`` and ``nm`` mask weights per layer (see :mod:`prunetuna.spaces._masks`).
"""

from __future__ import annotations

import contextlib
import warnings
from abc import ABC, abstractmethod
from typing import Callable, Iterator, Protocol, Sequence

import torch
import torch_pruning as tp
from torch import nn
from torch.nn import functional as F

from prunetuna.registry import Registry
from prunetuna.spaces._attention import fix_widths, head_counts
from prunetuna.spaces._dimensions import ROOT_TYPES, Dimension, find_dimensions
from prunetuna.spaces._graph import GraphLimits, indexed_groups, measured, reusing
from prunetuna.spaces._importance import NEEDS_GRADIENTS, make_importance
from prunetuna.spaces._masks import mask_nm, mask_unstructured
from prunetuna.spaces.rewrites import opaque_for_tracing

__all__ = [
    "METHODS",
    "Batches",
    "PruningMethod",
    "SpaceSettings",
    "accumulate_gradients",
    "outside_groups",
    "quiet_copies",
]

Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]
"""A few (inputs, labels) batches, for criteria that need gradients."""


class SpaceSettings(Protocol):
    """What a method reads from the space it prunes for (:class:`prunetuna.spaces.PruningSpace`)."""

    dimensions: tuple[Dimension, ...]
    example: torch.Tensor
    importance: str
    ignored: tuple[str, ...]
    round_to: int | None
    nm: tuple[int, int]


class PruningMethod(ABC):
    """One pruning method: its dimensions, its ratio grid, and pruning a copy in place."""

    changes_shapes = False
    """Whether pruning changes tensor shapes (then the pre-flight check runs the pruned model)."""

    def grid(self, max_sparsity: float, step: float, nm: tuple[int, int]) -> tuple[float, float]:
        """The (max_sparsity, step) the space searches with."""
        return max_sparsity, step

    @abstractmethod
    def dimensions(
        self, model: nn.Module, example: torch.Tensor, ignored: Sequence[str], limits: GraphLimits | None
    ) -> list[Dimension]: ...

    @abstractmethod
    def prune(
        self,
        space: SpaceSettings,
        pruned: nn.Module,
        ratios: dict[nn.Module, float],
        batches: Batches,
        structure_only: bool,
    ) -> None:
        """Prune ``pruned`` (a copy) in place: ``ratios`` by root layer, every one above 0."""


class Structured(PruningMethod):
    changes_shapes = True

    def dimensions(
        self, model: nn.Module, example: torch.Tensor, ignored: Sequence[str], limits: GraphLimits | None
    ) -> list[Dimension]:
        return find_dimensions(model, example, ignored, limits)

    def prune(
        self,
        space: SpaceSettings,
        pruned: nn.Module,
        ratios: dict[nn.Module, float],
        batches: Batches,
        structure_only: bool,
    ) -> None:
        if space.round_to:
            ratios = {module: _cap_for_rounding(module, ratio, space.round_to) for module, ratio in ratios.items()}
            ratios = {module: ratio for module, ratio in ratios.items() if ratio > 0}
        if not ratios:
            return
        modules = dict(pruned.named_modules())
        was_training = pruned.training
        importance = "l2" if structure_only and space.importance in NEEDS_GRADIENTS else space.importance
        accumulate_gradients(pruned, importance, batches)
        pruned.eval()
        with (
            indexed_groups(),
            quiet_copies(),
            opaque_for_tracing(pruned),
            measured(),
            reusing(getattr(space, "copied_graph", None)),
        ):
            pruner = tp.pruner.MetaPruner(
                pruned,
                space.example[:1].to(next(pruned.parameters()).device),
                importance=make_importance(importance),
                pruning_ratio=0.0,
                pruning_ratio_dict=ratios,
                ignored_layers=outside_groups(space, modules, ratios),
                root_module_types=list(ROOT_TYPES),
                round_to=space.round_to,
                num_heads=head_counts(pruned),  # every head of an attention layer keeps the same width
            )
        with indexed_groups():
            pruner.step()
        fix_widths(pruned)  # cached widths (num_heads * head_dim, hidden_dim) follow the pruned layers
        pruned.zero_grad(set_to_none=True)
        pruned.train(was_training)


class Masked(PruningMethod):
    """Weights masked per layer: every convolution and linear layer (but the output layer) is a dimension."""

    def __init__(self, mask: Callable[[nn.Module, float, tuple[int, int]], None]) -> None:
        self.mask = mask

    def dimensions(
        self, model: nn.Module, example: torch.Tensor, ignored: Sequence[str], limits: GraphLimits | None
    ) -> list[Dimension]:
        return [
            Dimension(name=n, channels=int(m.weight.numel()), layers=(n,))
            for n, m in model.named_modules()
            if isinstance(m, ROOT_TYPES) and n not in ignored and m.weight.numel() > 1
        ]

    def prune(
        self,
        space: SpaceSettings,
        pruned: nn.Module,
        ratios: dict[nn.Module, float],
        batches: Batches,
        structure_only: bool,
    ) -> None:
        for module, ratio in ratios.items():
            self.mask(module, ratio, space.nm)


class NM(Masked):
    def grid(self, max_sparsity: float, step: float, nm: tuple[int, int]) -> tuple[float, float]:
        share = round(1 - nm[0] / nm[1], 6)  # a layer is either dense or N:M: one step of 1 - N/M
        return share, share


METHODS: Registry[PruningMethod] = Registry("pruning method")
METHODS.register("structured", Structured())
METHODS.register("unstructured", Masked(mask_unstructured))
METHODS.register("nm", NM(mask_nm))


def _cap_for_rounding(module: nn.Module, ratio: float, round_to: int) -> float:
    """At most the ratio that still keeps ``round_to`` channels: past it torch-pruning would round the
    layer down to zero channels and then leave it unpruned, so cost would stop falling with the ratio."""
    channels = module.out_channels if isinstance(module, nn.modules.conv._ConvNd) else module.out_features
    return min(ratio, max(0.0, (channels - round_to) / channels))


def outside_groups(space: SpaceSettings, modules: dict[str, nn.Module], ratios: dict[nn.Module, float]) -> list:
    """torch-pruning's ``ignored_layers`` for pruning ``ratios``: the space's ignored layers and every layer whose
    output channels no pruned group removes. Its pruner then builds, and estimates the importance of, the pruned
    groups only (it does so for every group it finds, ratio 0 or not: one group it cannot handle would break every
    candidate)."""
    ignored = [modules[n] for n in space.ignored]
    names = {module: name for name, module in modules.items()}
    roots = {names[m] for m in ratios if m in names}
    pruned = [d for d in space.dimensions if roots & set(d.roots)]
    if not pruned or any(not d.producers for d in pruned):
        return ignored  # dimensions made without their producers: every group is built, as before
    keep = {p for d in pruned for p in d.producers} | roots
    return ignored + [
        m for n, m in modules.items() if isinstance(m, ROOT_TYPES) and n not in keep and n not in space.ignored
    ]


def accumulate_gradients(model: nn.Module, importance: str, batches: Batches) -> None:
    """Criteria such as Taylor read ``.grad``: accumulate it over a few batches (others: nothing to do)."""
    if importance not in NEEDS_GRADIENTS:
        return
    if not batches:
        raise ValueError(f"importance {importance!r} needs a few batches of data for gradients")
    device = next(model.parameters()).device
    model.train()
    model.zero_grad()
    for x, y in batches:
        F.cross_entropy(model(x.to(device)), y.to(device)).backward()


@contextlib.contextmanager
def quiet_copies() -> Iterator[None]:
    """torch-pruning warns about parameters outside layers (a ViT's class token, a layer scale) at every graph it
    builds: the space's own graph (:meth:`PruningSpace.from_model`, once a search) says it; the copies pruned for
    every trial do not repeat it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        yield
