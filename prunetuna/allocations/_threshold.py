"""The sensitivity-threshold allocation (ModelOpt's FastNAS, AIMET's greedy selection): one score-drop
threshold for the whole network, each dimension pruned as far as its scanned drop stays under it, the
threshold bisected until the allocation fits a cost level to within one channel per dimension.

Each dimension's drop curve is the sensitivity scan's (the task score after pruning it alone, BN
recalibrated, no fine-tune): its running maximum over the grid (pruning more never counts as safer),
interpolated linearly between grid points as AIMET interpolates its per-layer curves, plus a slope of
:data:`TIE` per unit of ratio, so that the curve is strictly increasing and a dimension's ratio is a
continuous function of the threshold: the bisection can then land within a channel of the level, not
only on the grid's coarse points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from prunetuna.allocations._sensitivity import SensitivityScan
from prunetuna.sparsity import SparsityVector, canonical

__all__ = ["ThresholdAllocation", "ThresholdFit", "fit_threshold"]

TIE = 1e-6  # score per unit of ratio: breaks the ties of flat curves, far below any measured drop
MAX_HALVINGS = 60


class ThresholdAllocation:
    """Per dimension, the largest ratio whose (monotone, interpolated) scanned drop is at most ``threshold``."""

    def __init__(self, scan: SensitivityScan, highs: Mapping[str, float]) -> None:
        self.highs = dict(highs)  # each dimension's highest ratio in the space (max_sparsity, or its bound)
        self.curves: dict[str, list[tuple[float, float]]] = {}
        for name in self.highs:
            points, worst = [(0.0, 0.0)], 0.0
            for ratio, score in zip(scan.grid, scan.accuracy.get(name, [])):
                worst = max(worst, scan.dense_accuracy - score)
                points.append((ratio, worst + TIE * ratio))
            self.curves[name] = points

    @property
    def highest(self) -> float:
        """The threshold at which every dimension reaches the top of its curve (or its bound)."""
        return max((points[-1][1] for points in self.curves.values()), default=0.0)

    def ratio(self, name: str, threshold: float) -> float:
        points, high = self.curves[name], self.highs[name]
        ratio = points[-1][0]
        for (r0, d0), (r1, d1) in zip(points, points[1:]):
            if threshold < d1:
                ratio = r0 + (max(threshold, d0) - d0) / (d1 - d0) * (r1 - r0)
                break
        return min(ratio, high)

    def __call__(self, threshold: float) -> SparsityVector:
        return canonical({name: self.ratio(name, threshold) for name in self.curves})


@dataclass(frozen=True)
class ThresholdFit:
    """The fitted allocation, its threshold, and the allocation just under it (which misses the level) with
    every dimension within one channel of the fitted one."""

    vector: SparsityVector
    threshold: float
    below: SparsityVector


def _within_one_channel(a: SparsityVector, b: SparsityVector, channels: Mapping[str, int]) -> bool:
    return all(abs(a.get(n, 0.0) - b.get(n, 0.0)) * max(channels.get(n, 1), 1) < 1.0 for n in set(a) | set(b))


def fit_threshold(
    allocation: ThresholdAllocation, fits: Callable[[SparsityVector], bool], channels: Mapping[str, int]
) -> ThresholdFit | None:
    """The smallest threshold whose allocation ``fits`` (the least pruning), bisected until the allocations on
    either side differ by less than a channel in every dimension; None when even the highest does not fit."""
    high = allocation.highest
    if not fits(allocation(high)):
        return None
    low = 0.0
    if fits(allocation(low)):
        return ThresholdFit(allocation(low), low, allocation(low))
    for _ in range(MAX_HALVINGS):
        if _within_one_channel(allocation(low), allocation(high), channels):
            break
        middle = (low + high) / 2
        if fits(allocation(middle)):
            high = middle
        else:
            low = middle
    return ThresholdFit(allocation(high), high, allocation(low))
