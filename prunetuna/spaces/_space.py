"""Prunable dimensions found with torch-pruning's dependency graph, and sparsity vectors applied to copies."""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
import torch_pruning as tp
from torch import nn

from prunetuna.spaces._importance import make_importance

__all__ = ["Dimension", "PruningSpace", "SparsityVector", "find_output_layer"]

SparsityVector = dict[str, float]
"""Ratio of channels to remove, by dimension name (the root layer of its group)."""

ROOT_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


class _Suggester(Protocol):
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float: ...


@dataclass(frozen=True)
class Dimension:
    """One prunable group: its name (root layer), its channel count and the layers it couples."""

    name: str
    channels: int
    layers: tuple[str, ...]


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
    ) -> None:
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
    ) -> PruningSpace:
        """Find the prunable groups of ``model``; ``ignore`` holds layer-name patterns (fnmatch).

        ``round_to`` keeps every pruned channel count a multiple of it (kernels favour such widths).
        """
        ignored = _ignored_layers(model, example, ignore)
        names = {module: name for name, module in model.named_modules()}
        graph = _graph(model, example)
        by_name = dict(model.named_modules())
        dimensions = []
        for group in graph.get_all_groups(ignored_layers=[by_name[n] for n in ignored], root_module_types=ROOT_TYPES):
            root_dep, idxs = group[0]
            root = names.get(root_dep.source.module)
            if root is None or len(idxs) < 2:
                continue
            layers = tuple(dict.fromkeys(names[d.target.module] for d, _ in group if d.target.module in names))
            dimensions.append(Dimension(name=root, channels=len(idxs), layers=layers))
        position = {name: i for i, name in enumerate(by_name)}
        dimensions.sort(key=lambda d: position[d.name])  # layer order, for reading and plotting
        return cls(dimensions, max_sparsity=max_sparsity, step=step, importance=importance, ignored=ignored, round_to=round_to)

    def suggest(self, trial: _Suggester) -> SparsityVector:
        """Ask ``trial`` (an Optuna trial) for one ratio per dimension, as ``sparsity.<name>``."""
        # Rounded so that 0.6000000000000001 (a float step artefact) reads 0.6 in logs and reports.
        return {
            d.name: round(trial.suggest_float(f"sparsity.{d.name}", 0.0, self.max_sparsity, step=self.step), 6)
            for d in self.dimensions
        }

    def check(self, vector: SparsityVector) -> None:
        """Raise ``ValueError`` when ``vector`` names unknown dimensions or ratios outside [0, 1)."""
        unknown = set(vector) - set(self.names)
        if unknown:
            raise ValueError(f"unknown dimensions {sorted(unknown)}; known: {self.names}")
        for name, ratio in vector.items():
            if not 0.0 <= ratio < 1.0:
                raise ValueError(f"sparsity.{name} must lie in [0, 1), got {ratio}")

    def apply(self, model: nn.Module, vector: SparsityVector, example: torch.Tensor) -> nn.Module:
        """A pruned copy of ``model``: channels physically removed, ``model`` untouched."""
        self.check(vector)
        pruned = copy.deepcopy(model)
        modules = dict(pruned.named_modules())
        ratios = {modules[name]: ratio for name, ratio in vector.items() if ratio > 0}
        if not ratios:
            return pruned
        was_training = pruned.training
        pruned.eval()
        pruner = tp.pruner.MetaPruner(
            pruned,
            example[:1].to(next(pruned.parameters()).device),
            importance=make_importance(self.importance),
            pruning_ratio=0.0,
            pruning_ratio_dict=ratios,
            ignored_layers=[modules[n] for n in self.ignored],
            root_module_types=list(ROOT_TYPES),
            round_to=self.round_to,
        )
        pruner.step()
        pruned.train(was_training)
        return pruned


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
