"""Prunable dimensions found with torch-pruning's dependency graph, and sparsity vectors applied to copies."""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import warnings
from dataclasses import dataclass, replace
from typing import Iterator, Literal, Mapping, Protocol, Sequence

import torch
import torch_pruning as tp
from torch import nn
from torch.nn import functional as F

from prunetuna.spaces._importance import NEEDS_GRADIENTS, make_importance
from prunetuna.spaces._masks import MASK_METHODS, make_permanent
from prunetuna.sparsity import SparsityVector, canonical, param_name

__all__ = ["Batches", "Dimension", "Granularity", "PruningSpace", "SparsityVector", "find_output_layer", "tie_dimensions"]

ROOT_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


class _Suggester(Protocol):
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float: ...


Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]
"""A few (inputs, labels) batches, for criteria that need gradients."""

Granularity = Literal["layer", "block", "stage"]
METHODS = ("structured", *MASK_METHODS)


@dataclass(frozen=True)
class Dimension:
    """One search dimension: its name, channel count and coupled layers.

    ``members`` are the root layers of the torch-pruning groups that share this ratio (one for
    ``layer`` granularity; a residual block's or a stage's groups otherwise); ``high`` is an upper
    bound of its own (from a sensitivity scan), else the space's ``max_sparsity``.
    """

    name: str
    channels: int
    layers: tuple[str, ...]
    members: tuple[str, ...] = ()
    high: float | None = None

    @property
    def roots(self) -> tuple[str, ...]:
        return self.members or (self.name,)


def find_output_layer(model: nn.Module, example: torch.Tensor) -> str | None:
    """Name of the layer whose output is the model's output (the classifier head, never pruned).

    Falls back to the last convolution or linear layer that ran when the output passes
    through a parameter-free op (a flatten, a softmax) after it.
    """
    outputs: dict[str, object] = {}
    order: list[str] = []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, ROOT_TYPES):
            def hook(_m: nn.Module, _i: object, out: object, name: str = name) -> None:
                outputs[name] = out
                order.append(name)
            hooks.append(module.register_forward_hook(hook))
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            result = model(example)
        model.train(was_training)
    finally:
        for handle in hooks:
            handle.remove()
    for name in reversed(order):
        if outputs[name] is result:
            return name
    return order[-1] if order else None


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
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
        if method == "nm":  # a layer is either dense or N:M: one step of 1 - N/M
            max_sparsity = step = round(1 - nm[0] / nm[1], 6)
        if not 0.0 <= max_sparsity < 1.0:
            raise ValueError(f"max_sparsity must lie in [0, 1), got {max_sparsity}")
        if step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        self.dimensions = tuple(dimensions)
        self.max_sparsity = max_sparsity
        self.step = step
        self.importance = importance
        self.ignored = tuple(ignored)
        self.round_to = round_to
        self.method = method
        self.nm = nm

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
    ) -> PruningSpace:
        """Find the prunable groups of ``model``; ``ignore`` holds layer-name patterns (fnmatch).

        ``granularity`` ties groups per residual block or per stage (same output resolution);
        ``groups`` ties the groups whose root matches a name's patterns into one dimension.
        ``round_to`` keeps every pruned channel count a multiple of it (kernels favour such widths).
        ``method`` ``unstructured`` or ``nm`` masks weights per layer instead of removing channels.
        """
        ignored = _ignored_layers(model, example, ignore)
        names = {module: name for name, module in model.named_modules()}
        by_name = dict(model.named_modules())
        dimensions = []
        if method in MASK_METHODS:
            dimensions = [Dimension(name=n, channels=int(m.weight.numel()), layers=(n,)) for n, m in by_name.items()
                          if isinstance(m, ROOT_TYPES) and n not in ignored and m.weight.numel() > 1]
        graph = _graph(model, example) if method == "structured" else None
        for group in graph.get_all_groups(ignored_layers=[by_name[n] for n in ignored], root_module_types=ROOT_TYPES) if graph else ():
            root_dep, idxs = group[0]
            root = names.get(root_dep.source.module)
            if root is None or len(idxs) < 2:
                continue
            layers = tuple(dict.fromkeys(names[d.target.module] for d, _ in group if d.target.module in names))
            dimensions.append(Dimension(name=root, channels=len(idxs), layers=layers))
        position = {name: i for i, name in enumerate(by_name)}
        dimensions.sort(key=lambda d: position[d.name])  # layer order, for reading and plotting
        tied = tie_dimensions(dimensions, model, example, granularity, groups or {})
        return cls(tied, max_sparsity=max_sparsity, step=step, importance=importance, ignored=ignored, round_to=round_to,
                   method=method, nm=nm)

    def with_bounds(self, bounds: Mapping[str, float]) -> PruningSpace:
        """The same space with per-dimension upper bounds (at most ``max_sparsity``)."""
        dims = [replace(d, high=min(bounds[d.name], self.max_sparsity)) if d.name in bounds else d for d in self.dimensions]
        return PruningSpace(dims, max_sparsity=self.max_sparsity, step=self.step, importance=self.importance,
                            ignored=self.ignored, round_to=self.round_to, method=self.method, nm=self.nm)

    def high(self, dimension: Dimension) -> float:
        return self.max_sparsity if dimension.high is None else dimension.high

    def suggest(self, trial: _Suggester) -> SparsityVector:
        """Ask ``trial`` (an Optuna trial) for one ratio per dimension, as ``sparsity.<name>``, in canonical form
        (0.6000000000000001, a float step artefact, is applied, stored and shown as 0.6: see prunetuna.sparsity)."""
        return canonical({d.name: trial.suggest_float(param_name(d.name), 0.0, self.high(d), step=self.step) for d in self.dimensions})

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
            )
        pruner.step()
        after = _root_channels(pruned)
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
            )
        pruner.step()
        pruned.zero_grad(set_to_none=True)
        pruned.train(was_training)
        return pruned


@contextlib.contextmanager
def _quiet_copies() -> Iterator[None]:
    """torch-pruning warns about parameters outside layers (a ViT's class token, a layer scale) at every graph it
    builds: the space's own graph (:meth:`PruningSpace.from_model`, once a search) says it; the copies pruned for
    every trial do not repeat it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        yield


def _graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    was_training = model.training
    model.eval()
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example[:1])
    finally:
        model.train(was_training)


def _ignored_layers(model: nn.Module, example: torch.Tensor, patterns: Sequence[str]) -> list[str]:
    output = find_output_layer(model, example[:1])
    ignored = [output] if output is not None else []
    for name, module in model.named_modules():
        if name and isinstance(module, ROOT_TYPES) and any(fnmatch.fnmatchcase(name, p) for p in patterns):
            if name not in ignored:
                ignored.append(name)
    return ignored


def _root_channels(model: nn.Module) -> dict[str, int]:
    return {n: (m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features)
            for n, m in model.named_modules() if isinstance(m, ROOT_TYPES)}


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
    hooks = [modules[r].register_forward_hook(
        lambda _m, _i, out, r=r: shapes.__setitem__(r, "x".join(map(str, out.shape[2:])) or "features")) for r in roots]
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
        explicit = next((name for name, patterns in groups.items() if any(fnmatch.fnmatchcase(dimension.name, p) for p in patterns)), None)
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
        Dimension(name=key, channels=sum(m.channels for m in members),
                  layers=tuple(dict.fromkeys(layer for m in members for layer in m.layers)),
                  members=tuple(m.name for m in members) if (len(members) > 1 or key != members[0].name) else ())
        for key, members in tied.items()
    ]
