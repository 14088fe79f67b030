"""A model's outputs as named tensors, in the order ONNX and a traced graph flatten them.

A model may return one tensor, or tuples, lists and dicts of them, nested (an ultralytics detector in eval
mode returns ``(predictions, {"boxes": ..., "scores": ..., "feats": [...]})``). Export names and compares
every leaf: the one tensor of a single-output model is ``output`` (the name export has always written); the
leaves of a tuple or list are ``output_0``, ``output_1``; a dict's are named by its keys; nested leaves join
their path with ``_`` (``output_1_feats_0``). Depth first, in insertion order: what
``torch.onnx.export`` and ``torch.jit.trace`` do with the same structure.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["FlatOutputs", "output_leaves", "output_names"]


def _walk(output: Any, path: list[str], found: list[tuple[list[str], torch.Tensor]]) -> None:
    if isinstance(output, torch.Tensor):
        found.append((path, output))
    elif isinstance(output, (tuple, list)):
        for i, item in enumerate(output):
            _walk(item, [*path, str(i)], found)
    elif isinstance(output, dict):
        for key, item in output.items():
            _walk(item, [*path, str(key)], found)
    else:
        where = "_".join(path) or "the output"
        raise TypeError(
            f"output {where} is a {type(output).__name__}; export writes tensors and tuples, lists or dicts of them"
        )


def output_leaves(output: Any) -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every tensor in ``output``, depth first (``TypeError`` naming a non-tensor leaf)."""
    if isinstance(output, torch.Tensor):
        return [("output", output)]
    found: list[tuple[list[str], torch.Tensor]] = []
    _walk(output, [] if isinstance(output, dict) else ["output"], found)
    named: list[tuple[str, torch.Tensor]] = []
    seen: set[str] = set()
    for path, tensor in found:
        name = "_".join(path)
        unique, n = name, 1
        while unique in seen:  # a key "a_0" beside a list "a": suffixed, never merged
            unique, n = f"{name}__{n}", n + 1
        seen.add(unique)
        named.append((unique, tensor))
    if not named:
        raise TypeError("the model's output holds no tensor; export writes tensors and tuples, lists or dicts of them")
    return named


def output_names(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The names of the leaves ``model(example)`` returns (runs the model once, without gradients)."""
    with torch.no_grad():
        return [name for name, _ in output_leaves(model(example))]


class FlatOutputs(nn.Module):
    """``model`` returning its output leaves as one flat tuple: what ``torch.jit.trace`` takes when the output's
    structure is one it cannot type (a dict holding both tensors and lists, as ultralytics' heads return)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(tensor for _, tensor in output_leaves(self.model(x)))
