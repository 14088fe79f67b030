"""The statistics of a latency measurement, shared by the local backends and the device agent (no torch).

The figure kept is the median of ``repeats`` timed runs after ``warmup``; what decides whether it is
trustworthy is the relative half-width of the median's 95% interval, 1.57 * IQR / sqrt(n) / median
(the notch of a box plot). An attempt whose interval is wider than ``max_ci`` is taken again, up to
``attempts`` times, and the tightest is kept; the spread of single runs (IQR / median) is reported beside it.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["Timing", "dispersion", "time_runner"]


@dataclass(frozen=True)
class Timing:
    """Median milliseconds per run, the kept attempt's spread and median interval (relative), attempts taken."""

    median_ms: float
    spread: float
    ci: float
    attempts: int


def dispersion(times: list[float]) -> tuple[float, float, float]:
    """Median, relative IQR (spread of single runs) and relative 95% half-width of the median."""
    quartiles = statistics.quantiles(times, n=4)
    median = statistics.median(times)
    if median <= 0:
        return median, 0.0, 0.0
    iqr = (quartiles[2] - quartiles[0]) / median
    return median, iqr, 1.57 * iqr / math.sqrt(len(times))


def time_runner(run: Callable[[], object], *, warmup: int, repeats: int, max_ci: float, attempts: int) -> Timing:
    """Time ``run``: warm up, take ``repeats`` timings, again while the median's interval is wider than ``max_ci``."""
    best: tuple[float, float, float] | None = None
    taken = 0
    while taken < attempts:
        taken += 1
        for _ in range(warmup):
            run()
        times = []
        for _ in range(repeats):
            tick = time.perf_counter()
            run()
            times.append(time.perf_counter() - tick)
        median, spread, ci = dispersion(times)
        if best is None or ci < best[2]:
            best = (median * 1e3, spread, ci)
        if ci <= max_ci:
            break
    assert best is not None
    return Timing(best[0], best[1], best[2], taken)
