"""Latency measurements shared by architecture, kept with the study.

Candidates whose pruned shapes are identical (the step grid and ``round_to`` make this common) run the
same kernels, so they share measurements. The key is a hash of the pruned model's parameter and
buffer names and shapes, the input shape, the latency settings and what measures (this machine's
description, or the device agent's URL, provider and description). Entries are study user attributes
``latency_cache:<key>`` in the Optuna storage: a resumed search and every worker, on any machine that
measures on the same device, reuse them. A trial's metrics record ``latency_cached`` (1: a hit).

An entry is confirmed before it is trusted: the first CACHE_CONFIRMATIONS uses of an architecture each measure it,
and the entry holds the median of those measurements (``latency_samples``). One measurement taken while the
machine was busy is otherwise served to every later candidate of that shape: on the cluttered benchmark one
such entry, twice the latency of the same shape's other measurements, put every candidate of a study over
its latency budget. Entries written before (one measurement) are confirmed on their next uses.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, TypeVar

import optuna
import torch
from torch import nn

__all__ = ["CACHE_CONFIRMATIONS", "CACHE_SAMPLES", "PREFIX", "LatencyCache", "architecture_key", "lower_median"]

T = TypeVar("T")
PREFIX = "latency_cache:"
CACHE_CONFIRMATIONS = 3  # measurements of an architecture before its entry is served without measuring
CACHE_SAMPLES = "latency_samples"
# Part of a measurement that is the device's, not the moment's: what the key holds of the description.
_DEVICE_KEYS = ("where", "url", "host", "cpu", "cores", "backend", "torch", "onnxruntime", "provider")


def architecture_key(model: nn.Module, example: torch.Tensor, settings: dict[str, Any], device: dict[str, Any]) -> str:
    """A hash of the shapes the model runs with and of how and where its latency is measured."""
    shapes = [[name, list(t.shape), str(t.dtype)] for name, t in [*model.named_parameters(), *model.named_buffers()]]
    what = {
        "shapes": shapes,
        "input": list(example.shape[1:]),
        "settings": {k: v for k, v in settings.items() if k != "cache"},
        "device": {k: device.get(k) for k in _DEVICE_KEYS},
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]


class LatencyCache:
    """Latency metrics by architecture key, read from and written to the attached study."""

    def __init__(self, settings: dict[str, Any], device: dict[str, Any]) -> None:
        self.settings = settings
        self.device = device
        self.study: optuna.Study | None = None
        self.hits = 0
        self.misses = 0

    def attach(self, study: optuna.Study) -> None:
        """From now on measurements are looked up in, and stored with, ``study`` (the dense one is not)."""
        self.study = study

    def measure(
        self, model: nn.Module, example: torch.Tensor, measure: Callable[[], dict[str, float]]
    ) -> dict[str, float]:
        """The stored metrics of this architecture once confirmed (``latency_cached`` 1); else ``measure()``'s,
        stored, and the median of this architecture's measurements so far (0)."""
        if self.study is None:
            return measure()
        key = PREFIX + architecture_key(model, example, self.settings, self.device)
        stored = self.study.user_attrs.get(key)
        known = isinstance(stored, dict) and "latency_ms" in stored
        samples = list(stored.get(CACHE_SAMPLES) or [stored]) if known else []
        if len(samples) >= CACHE_CONFIRMATIONS:
            self.hits += 1
            return {**_metrics(stored), "latency_cached": 1.0}
        samples.append(measure())
        self.misses += 1
        chosen = lower_median(samples, key=lambda m: float(m["latency_ms"]))
        # Two workers measuring one architecture at once: one write stays (a confirmation lost, no harm).
        self.study.set_user_attr(key, {**_metrics(chosen), CACHE_SAMPLES: [_metrics(m) for m in samples]})
        return {**_metrics(chosen), "latency_cached": 0.0}


def lower_median(items: list[T], key: Callable[[T], float]) -> T:
    """The item at the lower median by ``key``: with readings that noise only slows, never one inflated outlier."""
    return sorted(items, key=key)[(len(items) - 1) // 2]


def _metrics(entry: dict[str, Any]) -> dict[str, float]:
    """A measurement's metrics, as floats (not the stored samples)."""
    return {k: float(v) for k, v in entry.items() if k != CACHE_SAMPLES}


def latency_context(example: torch.Tensor, settings: Any, measured: bool) -> Any:
    """The search's ``CostContext``: with a cache and the device's description when latency is measured.

    The description comes from ``latency_device``: for backend remote the agent is asked once, and an
    agent that cannot be reached is bad input (``UserError``), before any store is written.
    """
    from prunetuna.objectives._costs import CostContext
    from prunetuna.objectives._remote import latency_device

    if not measured:
        return CostContext(example, settings)
    device = latency_device(settings)
    return CostContext(example, settings, cache=LatencyCache(dict(settings.__dict__), device))
