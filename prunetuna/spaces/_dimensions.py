"""Search dimensions: torch-pruning's dependency groups, each named after the first layer whose outputs it prunes."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from prunetuna.errors import UserError
from prunetuna.spaces._graph import GraphLimits, graph_and_groups, model_label
from prunetuna.spaces.rewrites import fixed_layers

__all__ = [
    "ROOT_TYPES",
    "Dimension",
    "find_dimensions",
    "find_output_layer",
    "find_output_layers",
    "ignored_layers",
    "output_tensors",
]

ROOT_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass(frozen=True)
class Dimension:
    """One search dimension: its name, channel count and coupled layers.

    ``members`` are the root layers of the torch-pruning groups that share this ratio (one for
    ``layer`` granularity; a residual block's or a stage's groups otherwise); ``high`` is an upper
    bound of its own (from a sensitivity scan), else the space's ``max_sparsity``; ``producers`` are the
    layers whose output channels it removes (the rest of ``layers`` lose input channels).
    """

    name: str
    channels: int
    layers: tuple[str, ...]
    members: tuple[str, ...] = ()
    high: float | None = None
    producers: tuple[str, ...] = ()

    @property
    def roots(self) -> tuple[str, ...]:
        return self.members or (self.name,)


def find_output_layer(model: nn.Module, example: torch.Tensor) -> str | None:
    """Name of the layer whose output is the model's output (the classifier head, never pruned).

    Falls back to the last convolution or linear layer that ran when the output passes
    through a parameter-free op (a flatten, a softmax) after it.
    """
    layers = find_output_layers(model, example)
    return layers[0] if layers else None


def output_tensors(result: object) -> list[object]:
    """The tensors of a model's output: itself, or those inside tuples, lists and dicts (several heads)."""
    if isinstance(result, (tuple, list)):
        return [t for item in result for t in output_tensors(item)]
    if isinstance(result, dict):
        return [t for item in result.values() for t in output_tensors(item)]
    return [result]


def find_output_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Every layer whose output is one of the model's outputs (each head of a multi-output model), found
    by tracing one forward pass; the last layer that ran when none is (a parameter-free op after it)."""
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
    found = [name for tensor in output_tensors(result) for name in reversed(order) if outputs[name] is tensor]
    return list(dict.fromkeys(found)) or (order[-1:] if order else [])


def ignored_layers(model: nn.Module, example: torch.Tensor, patterns: Sequence[str]) -> list[str]:
    """The output layers (traced, and those a model family fixes: a detection head's predictions, frozen layers)
    and every convolution / linear layer matching one of ``patterns`` (fnmatch)."""
    ignored = list(dict.fromkeys(find_output_layers(model, example[:1]) + fixed_layers(model)))
    for name, module in model.named_modules():
        if name and isinstance(module, ROOT_TYPES) and any(fnmatch.fnmatchcase(name, p) for p in patterns):
            if name not in ignored:
                ignored.append(name)
    return ignored


def find_dimensions(
    model: nn.Module, example: torch.Tensor, ignored: Sequence[str], limits: GraphLimits | None = None
) -> list[Dimension]:
    """One dimension per dependency group, in layer order.

    A group is named after the first layer (in ``model.named_modules()`` order) whose output channels
    it prunes, not after torch-pruning's root, which depends on the traversal: the residual stream
    of a vision transformer is ``conv_proj`` (``patch_embed.proj`` in timm), the layer that creates
    it, and every other layer it couples is listed in ``layers``.
    """
    by_name = dict(model.named_modules())
    graph, groups = graph_and_groups(model, example, [by_name[n] for n in ignored], ROOT_TYPES, limits)
    names = {module: name for name, module in model.named_modules()}
    position = {name: i for i, name in enumerate(by_name)}
    dimensions = []
    for group in groups:
        root_dep, idxs = group[0]
        if names.get(root_dep.source.module) is None or len(idxs) < 2:
            continue
        layers = tuple(dict.fromkeys(names[d.target.module] for d, _ in group if d.target.module in names))
        producers = [
            names[d.target.module]
            for d, _ in group
            if d.target.module in names
            and isinstance(d.target.module, ROOT_TYPES)
            and graph.is_out_channel_pruning_fn(d.handler)
        ]
        name = min(producers, key=position.__getitem__) if producers else names[root_dep.source.module]
        dimensions.append(
            Dimension(name=name, channels=len(idxs), layers=layers, producers=tuple(dict.fromkeys(producers)))
        )
    dimensions.sort(key=lambda d: position[d.name])  # layer order, for reading and plotting
    unreached = [
        n for n, m in by_name.items() if isinstance(m, ROOT_TYPES) and m not in graph.module2node and n not in ignored
    ]
    if not dimensions and unreached:
        raise UserError(
            f"model: {model_label(model)}: torch-pruning's trace of the forward pass does not reach {unreached[:3]}"
            f"{' ...' if len(unreached) > 3 else ''} (a forward that leaves autograd: .tolist(), .numpy(), .item(), "
            "torch.no_grad or a detach), so it cannot be pruned structurally; pruning.method unstructured or nm masks "
            "weights instead (no speedup on dense kernels)"
        )
    return dimensions
