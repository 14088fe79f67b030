"""Costs of a model, by name; each is a plain function of (model, example input)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["COSTS", "count_flops", "count_params", "measure_costs"]


def count_flops(model: nn.Module, example: torch.Tensor) -> float:
    """FLOPs of one forward pass on one input (``torch.utils.flop_counter``; a multiply-add is 2)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example[:1])
    finally:
        model.train(was_training)
    return float(counter.get_total_flops())


def count_params(model: nn.Module, example: torch.Tensor) -> float:
    """Number of parameters."""
    del example
    return float(sum(p.numel() for p in model.parameters()))


COSTS: dict[str, Callable[[nn.Module, torch.Tensor], float]] = {
    "flops": count_flops,
    "params": count_params,
}


def measure_costs(
    model: nn.Module, example: torch.Tensor, dense: dict[str, float] | None = None, names: tuple[str, ...] | None = None
) -> dict[str, float]:
    """Every cost in ``names`` (default: all), plus ``<cost>_ratio`` to ``dense`` when given."""
    result: dict[str, float] = {}
    for name in names or tuple(COSTS):
        value = COSTS[name](model, example)
        result[name] = value
        if dense is not None and dense.get(name):
            result[f"{name}_ratio"] = value / dense[name]
    return result
