"""Prunable dimensions found with torch-pruning's dependency graph, and sparsity vectors applied to copies."""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Protocol, Sequence

import torch
import torch_pruning as tp
from torch import nn

from prunetuna.errors import UserError
from prunetuna.spaces._dimensions import Dimension, find_output_layer, ignored_layers
from prunetuna.spaces._global import global_allocation
from prunetuna.spaces._graph import GraphCost, GraphLimits, copy_with_graph, last_graph_cost, take_graph
from prunetuna.spaces._masks import make_permanent
from prunetuna.spaces._methods import METHODS, Batches, PruningMethod
from prunetuna.spaces._preflight import preflight
from prunetuna.spaces._ratio_scale import SCALES, suggest_ratios
from prunetuna.spaces._tie import Granularity, tie_dimensions
from prunetuna.spaces.rewrites import prepare_for_pruning
from prunetuna.sparsity import SparsityVector, canonical, snap

__all__ = [
    "Batches",
    "Dimension",
    "Granularity",
    "PruningSpace",
    "SparsityVector",
    "find_output_layer",
    "tie_dimensions",
]


class _Suggester(Protocol):
    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...


class _PruningSettings(Protocol):
    """The config's ``pruning`` section (:class:`prunetuna.config.PruningConfig`), as the space reads it."""

    method: str
    nm: list[int]
    importance: str
    max_sparsity: float
    step: float
    ignore: list[str]
    round_to: int | None
    granularity: Granularity
    groups: dict[str, list[str]]
    graph_seconds: float
    graph_memory_gb: float


class PruningSpace:
    """The search space of one model: one sparsity ratio in ``[0, max_sparsity]`` (with ``step``) per dimension.

    It keeps the dense ``model`` (never modified: every vector is applied to a copy) and an ``example`` input.
    """

    def __init__(
        self,
        model: nn.Module,
        example: torch.Tensor,
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
        self.strategy: PruningMethod = METHODS.get(method)
        max_sparsity, step = self.strategy.grid(max_sparsity, step, nm)
        if not 0.0 <= max_sparsity < 1.0:
            raise ValueError(f"max_sparsity must lie in [0, 1), got {max_sparsity}")
        if step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        if scale not in SCALES:
            raise ValueError(f"unknown pruning scale {scale!r}; choose one of {', '.join(SCALES)}")
        self.model = model
        self.example = example
        self.scale = scale  # how the sampler draws ratios: spaces/_ratio_scale.py
        self.dimensions = tuple(dimensions)
        self.max_sparsity = max_sparsity
        self.step = step
        self.importance = importance
        self.ignored = tuple(ignored)
        self.round_to = round_to
        self.method = method
        self.nm = nm
        self.graph_cost: GraphCost | None = None  # building the space's dependency graph: CPU seconds, peak memory
        self.graph: tp.DependencyGraph | None = None  # that graph, copied with the model for every candidate
        self.prune_cost: GraphCost | None = None  # the last candidate's pruner getting its graph (copied, or built)
        self.copied_graph: tp.DependencyGraph | None = None  # the graph of the copy being pruned (read by the method)

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
        ``model`` is first rewritten in place where torch-pruning needs it
        (:func:`prunetuna.spaces.prepare_for_pruning`: same outputs, loads the same state dicts); the dependency
        graph is kept as ``graph`` (copied with the model for every candidate) and its build cost as ``graph_cost``.
        """
        prepare_for_pruning(model)  # rewrites in place: every path that builds the space prunes the same structure
        ignored = ignored_layers(model, example, ignore)
        dimensions = METHODS.get(method).dimensions(model, example, ignored, graph_limits)
        tied = tie_dimensions(dimensions, model, example, granularity, groups or {})
        space = cls(
            model,
            example,
            tied,
            max_sparsity=max_sparsity,
            step=step,
            importance=importance,
            ignored=ignored,
            round_to=round_to,
            method=method,
            nm=nm,
            scale=scale,
        )
        if METHODS.get(method).changes_shapes:
            space.graph_cost, space.graph = last_graph_cost(), take_graph(model)
        return space

    @classmethod
    def from_config(
        cls,
        pruning: _PruningSettings,
        model: nn.Module,
        example: torch.Tensor,
        *,
        label: str = "model",
        check: bool = True,
    ) -> PruningSpace:
        """The space the config's ``pruning`` section describes; a model with nothing prunable is bad input.

        ``check`` runs the pre-flight check (dimensions that break the model are dropped, with a warning);
        ``label`` names the model in its messages.
        """
        space = cls.from_model(
            model,
            example,
            max_sparsity=pruning.max_sparsity,
            step=pruning.step,
            importance=pruning.importance,
            ignore=pruning.ignore,
            round_to=pruning.round_to,
            granularity=pruning.granularity,
            groups=pruning.groups,
            method=pruning.method,
            nm=tuple(pruning.nm),
            scale=pruning.scale,  # type: ignore[arg-type]
            graph_limits=GraphLimits(seconds=pruning.graph_seconds, memory_gb=pruning.graph_memory_gb),
        )
        if not space.dimensions:
            raise UserError(
                "model: nothing to prune (no convolution or linear layer with 2+ output channels outside "
                f"the output layer and pruning.ignore {list(pruning.ignore)}); check the model or pruning.ignore"
            )
        if pruning.max_sparsity == 0:
            raise UserError("pruning.max_sparsity: 0 leaves nothing to search; set it in (0, 1)")
        return preflight(space, label=label)[0] if check else space

    def only(self, dimensions: Sequence[Dimension]) -> PruningSpace:
        """The same space (model, bounds, importance, method) with ``dimensions`` instead of its own."""
        space = PruningSpace(
            self.model,
            self.example,
            dimensions,
            max_sparsity=self.max_sparsity,
            step=self.step,
            importance=self.importance,
            ignored=self.ignored,
            round_to=self.round_to,
            method=self.method,
            nm=self.nm,
            scale=self.scale,
        )
        space.graph_cost, space.graph = self.graph_cost, self.graph
        return space

    def with_bounds(self, bounds: Mapping[str, float]) -> PruningSpace:
        """The same space with per-dimension upper bounds (at most ``max_sparsity``)."""
        return self.only(
            [
                replace(d, high=min(bounds[d.name], self.max_sparsity)) if d.name in bounds else d
                for d in self.dimensions
            ]
        )

    def high(self, dimension: Dimension) -> float:
        return self.max_sparsity if dimension.high is None else dimension.high

    def highest(self) -> SparsityVector:
        """Every dimension at its upper bound."""
        return {d.name: self.high(d) for d in self.dimensions}

    def suggest(self, trial: _Suggester) -> SparsityVector:
        """Ask ``trial`` (an Optuna trial) for one ratio per dimension, as ``sparsity.<name>``, in canonical form
        (0.6000000000000001, a float step artefact, is applied, stored and shown as 0.6: see prunetuna.sparsity).
        ``scale: log`` draws the kept fraction on a log scale instead (spaces/_ratio_scale.py)."""
        return suggest_ratios(self, trial)

    def snap(self, vector: Mapping[str, float], *, up: bool = False) -> SparsityVector:
        """``vector`` on the step grid, within each dimension's bounds (what a sampler could have drawn);
        ``up`` rounds up instead of to the nearest point (a cost level reached by ``vector`` still holds)."""
        return {d.name: snap(vector.get(d.name, 0.0), self.step, up=up, high=self.high(d)) for d in self.dimensions}

    def uniform(self, ratio: float) -> SparsityVector:
        """The same ratio in every dimension (capped by each dimension's bound)."""
        return canonical({d.name: min(ratio, self.high(d)) for d in self.dimensions})

    def finalize(self, model: nn.Module) -> nn.Module:
        """After fine-tuning: masks folded into the weights (a no-op for structured pruning)."""
        return make_permanent(model)

    def global_allocation(self, ratio: float, batches: Batches = ()) -> SparsityVector:
        """The per-dimension ratios that torch-pruning's global ranking reaches at ``ratio`` (not snapped)."""
        return global_allocation(self, ratio, batches)

    def check(self, vector: SparsityVector) -> None:
        """Raise ``ValueError`` when ``vector`` names unknown dimensions or ratios outside [0, 1)."""
        unknown = set(vector) - set(self.names)
        if unknown:
            raise ValueError(f"unknown dimensions {sorted(unknown)}; known: {self.names}")
        for name, ratio in vector.items():
            if not 0.0 <= ratio < 1.0:
                raise ValueError(f"sparsity.{name} must lie in [0, 1), got {ratio}")

    def apply(self, vector: SparsityVector, batches: Batches = (), *, structure_only: bool = False) -> nn.Module:
        """A pruned copy of the space's model, which stays untouched (channels removed, or weights masked).

        ``structure_only`` is for measuring costs: channel counts do not depend on which channels
        go, so a magnitude criterion stands in for one that needs gradients.
        """
        vector = canonical(vector)  # the same channel counts whichever float spelling of a ratio comes in
        self.check(vector)
        pruned, self.copied_graph = copy_with_graph(self.model, self.graph if self.strategy.changes_shapes else None)
        modules = dict(pruned.named_modules())
        ratios = {
            modules[root]: vector[d.name] for d in self.dimensions if vector.get(d.name, 0.0) > 0 for root in d.roots
        }
        if ratios:
            self.strategy.prune(self, pruned, ratios, batches, structure_only)
            self.prune_cost = last_graph_cost() if self.strategy.changes_shapes else None
        self.copied_graph = None
        return pruned
