"""Costs of a model, by name. Each is measured on the pruned copy right after pruning, before any training."""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prunetuna.config import CHEAP_COSTS, COST_INFO
from prunetuna.objectives._latency import LatencySettings, measure_latency
from prunetuna.registry import Registry

__all__ = ["COSTS", "Cost", "CostContext", "count_flops", "count_params", "measure_costs", "serialized_size"]


@dataclass(frozen=True)
class CostContext:
    """What measuring needs beyond the model: the example input and latency settings."""

    example: torch.Tensor
    latency: LatencySettings = field(default_factory=LatencySettings)
    # with ``measure(model, example, measure)``: latency by architecture (prunetuna.objectives._latency_cache)
    cache: Any = None


def _masked(model: nn.Module) -> dict[nn.Module, float]:
    """Layers carrying a pruning mask (unstructured, N:M), with the share of their weights masked out."""
    return {m: 1.0 - float(m.weight_mask.mean()) for m in model.modules() if hasattr(m, "weight_mask")}


def count_flops(model: nn.Module, example: torch.Tensor) -> float:
    """FLOPs of one forward pass on one input (``torch.utils.flop_counter``; a multiply-add is 2).

    For layers with a pruning mask the count is *effective*: multiply-adds with a masked-out
    weight are left out (what a sparse kernel would skip; a dense kernel still does them).
    """
    masked = _masked(model)
    saved: list[float] = []
    hooks = [
        module.register_forward_hook(
            lambda m, _i, out, share=share: saved.append(2.0 * out[:1].numel() * m.weight[0].numel() * share)
        )
        for module, share in masked.items()
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example[:1])
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return float(counter.get_total_flops()) - sum(saved)


def count_params(model: nn.Module, example: torch.Tensor | None = None) -> float:
    """Number of parameters; for masked layers, the weights the mask keeps."""
    total = 0.0
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if name == "weight_orig" and hasattr(module, "weight_mask"):
                total += float(module.weight_mask.sum())
            else:
                total += parameter.numel()
    return total


def _plain(model: nn.Module) -> nn.Module:
    """``model`` as it will be deployed: masks (unstructured, N:M) folded into dense weights."""
    if not _masked(model):
        return model
    from prunetuna.spaces import make_permanent

    return make_permanent(copy.deepcopy(model))


def serialized_size(model: nn.Module, example: torch.Tensor | None = None) -> float:
    """Bytes of the serialized weights (``torch.save`` of the state_dict): what a device stores.

    Masked weights are stored dense: unstructured and N:M sparsity save nothing here.
    """
    buffer = io.BytesIO()
    torch.save(_plain(model).state_dict(), buffer)
    return float(buffer.tell())


@dataclass(frozen=True)
class Cost:
    """A cost: ``measure`` returns its metrics; ``metric`` is the key of its absolute value in a trial's
    metrics, ``<name>_ratio`` is to dense (names, keys and units in :mod:`prunetuna.names`)."""

    name: str
    measure: Callable[[nn.Module, CostContext], dict[str, float]]

    @property
    def metric(self) -> str:
        return COST_INFO[self.name].metric

    @property
    def unit(self) -> str:
        return COST_INFO[self.name].unit


def _latency(model: nn.Module, context: CostContext) -> dict[str, float]:
    plain = _plain(model)

    def measure() -> dict[str, float]:
        result = measure_latency(plain, context.example, context.latency)
        return {
            "latency_ms": result.median_ms,
            "latency_spread": result.spread,
            "latency_ci": result.ci,
            "latency_attempts": float(result.attempts),
        }

    if context.cache is not None and context.latency.cache:
        return context.cache.measure(plain, context.example, measure)
    return measure()


COSTS: Registry[Cost] = Registry("cost")
COSTS.register("flops", Cost("flops", lambda m, c: {"flops": count_flops(m, c.example)}))
COSTS.register("params", Cost("params", lambda m, c: {"params": count_params(m)}))
COSTS.register("size", Cost("size", lambda m, c: {"size_bytes": serialized_size(m)}))
COSTS.register("latency", Cost("latency", _latency))


def measure_costs(
    model: nn.Module,
    example: torch.Tensor | CostContext,
    dense: dict[str, float] | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Every cost in ``names`` (default: the cheap ones, all but latency) by its metric key, plus ``<name>_ratio`` to
    ``dense``.

    With latency, ``dense_latency_ms`` is the reference its ratio used. Where latency is measured with FLOPs,
    ``speedup`` (dense latency / latency) and
    ``flops_reduction`` (dense FLOPs / FLOPs) are added, to show whether fewer FLOPs really ran faster.
    """
    context = example if isinstance(example, CostContext) else CostContext(example)
    result: dict[str, float] = {}
    for name in names or CHEAP_COSTS:
        cost = COSTS[name]
        result.update(cost.measure(model, context))
        if dense is not None and dense.get(cost.metric):
            result[f"{name}_ratio"] = result[cost.metric] / dense[cost.metric]
    if dense is not None and "latency_ms" in result and dense.get("latency_ms"):
        result["dense_latency_ms"] = dense["latency_ms"]  # the reference of latency_ratio, measured by this process
    if (
        dense is not None
        and "latency_ms" in result
        and "flops" in result
        and dense.get("latency_ms")
        and result["flops"]
    ):
        result["speedup"] = dense["latency_ms"] / result["latency_ms"]
        result["flops_reduction"] = dense["flops"] / result["flops"]
    return result
