"""How a sampler draws a dimension's ratio: ``pruning.scale``.

- ``linear``: the sparsity itself on the ``step`` grid, ``sparsity.<name>`` in [0, bound] (the default).
- ``log``: the kept fraction ``kept.<name>`` in [1 - bound, 1] on a log scale, continuous; torch-pruning
  rounds it to channels (it keeps ``int(channels * kept)``). A layer's FLOPs go as its kept input times
  its kept output channels, so equal steps in log(kept) are equal relative steps in cost: with a 0.05
  grid, one step near sparsity 0.7 changes a layer's FLOPs by about 30%, one near 0.1 by about 10%.

Whatever the scale, the applied vector (user attribute ``sparsity``) is the sparsity per dimension;
params are only what the sampler sees (``prunetuna.sparsity.from_params`` reads both spellings).
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

from prunetuna.sparsity import KEPT_PREFIX, SparsityVector, canonical, param_name

PruningSpace = Any  # prunetuna.spaces._space.PruningSpace (not imported: it imports this module)

__all__ = ["SCALES", "sampler_params", "suggest_ratios"]

SCALES = ("linear", "log")


class _Suggester(Protocol):
    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...


def suggest_ratios(space: PruningSpace, trial: _Suggester) -> SparsityVector:
    """One sparsity per dimension, drawn on the space's scale."""
    if space.scale == "linear":
        return canonical(
            {
                d.name: trial.suggest_float(param_name(d.name), 0.0, space.high(d), step=space.step)
                for d in space.dimensions
            }
        )
    kept = {
        d.name: trial.suggest_float(KEPT_PREFIX + d.name, round(1.0 - space.high(d), 6), 1.0, log=True)
        for d in space.dimensions
    }
    return canonical({name: max(0.0, 1.0 - value) for name, value in kept.items()})


def sampler_params(space: PruningSpace, vector: Mapping[str, float]) -> dict[str, float]:
    """The params that stand for ``vector`` in the sampler's distributions (what an enqueued trial gets):
    the nearest grid point on the linear scale, the exact kept fractions on the log scale."""
    if space.scale == "linear":
        return {param_name(name): ratio for name, ratio in space.snap(vector).items()}
    return {
        KEPT_PREFIX + d.name: round(min(1.0, max(1.0 - space.high(d), 1.0 - vector.get(d.name, 0.0))), 6)
        for d in space.dimensions
    }
