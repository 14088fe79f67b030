"""Per-dimension sensitivity: the task score right after pruning one dimension (BN recalibrated, no fine-tune),
the others dense; and the upper bounds it implies for the search.

The score is the task's (``task.evaluate``): top-1 accuracy for the built-in classifier, a user
LightningModule's logged metric (oriented so that higher is better) otherwise; the fields keep their
``accuracy`` names, as a trial's task score fills its ``accuracy`` slot."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from prunetuna.spaces import Batches, PruningSpace
from prunetuna.sparsity import snap
from prunetuna.training import Task, recalibrate_batchnorm

__all__ = [
    "ScanProgress",
    "SensitivityScan",
    "bounds_from_scan",
    "cache_path",
    "cached_scan",
    "scan_grid",
    "scan_sensitivity",
]


@dataclass
class SensitivityScan:
    """Accuracy at each grid ratio, by dimension, and the dense accuracy it is compared to."""

    dense_accuracy: float
    grid: list[float]
    accuracy: dict[str, list[float]]

    def as_dict(self) -> dict:
        return {"dense_accuracy": self.dense_accuracy, "grid": self.grid, "accuracy": self.accuracy}


def scan_grid(space: PruningSpace, points: int = 8) -> list[float]:
    """Ratios from one step up to ``max_sparsity``, on the step grid, at most ``points`` of them."""
    steps = max(1, round(space.max_sparsity / space.step))
    stride = max(1, -(-steps // points))
    return [snap(k * space.step, space.step) for k in range(stride, steps + 1, stride)]


ScanProgress = Callable[[int, int], None]
"""``on_step(done, total)``: called after each pruned candidate of a scan (a progress bar)."""


def scan_sensitivity(
    space: PruningSpace,
    batches: Batches,
    task: Task,
    datamodule,  # noqa: ANN001 - a LightningDataModule
    grid: Sequence[float],
    on_step: ScanProgress | None = None,
) -> SensitivityScan:
    """Prune each dimension of the space's model alone at each ratio of ``grid`` and measure the task score
    without fine-tuning."""
    inputs = [x for x, _ in batches]
    dense = task.evaluate(space.model, datamodule)
    accuracy: dict[str, list[float]] = {}
    total = len(space.dimensions) * len(grid)
    for dimension in space.dimensions:
        row = []
        for ratio in grid:
            pruned = space.apply({dimension.name: min(ratio, space.high(dimension))}, batches)
            recalibrate_batchnorm(pruned, inputs)
            row.append(task.evaluate(pruned, datamodule))
            if on_step is not None:
                on_step(sum(map(len, accuracy.values())) + len(row), total)
        accuracy[dimension.name] = row
    return SensitivityScan(dense, list(grid), accuracy)


def bounds_from_scan(scan: SensitivityScan, max_drop: float, step: float) -> dict[str, float]:
    """Per dimension, the largest grid ratio (and every smaller one) whose drop stays within ``max_drop``."""
    bounds = {}
    for name, row in scan.accuracy.items():
        bound = step
        for ratio, accuracy in zip(scan.grid, row):
            if scan.dense_accuracy - accuracy > max_drop:
                break
            bound = max(bound, ratio)
        bounds[name] = bound
    return bounds


def cache_path(
    workdir: Path, baseline_key: str, space: PruningSpace, grid: Sequence[float], metric: str = "accuracy"
) -> Path:
    fields = [baseline_key, space.names, list(grid), space.importance] + ([metric] if metric != "accuracy" else [])
    digest = hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:12]
    return workdir / f"sensitivity-{digest}.json"


def cached_scan(
    config,
    workload,
    space: PruningSpace,
    batches: Batches,
    workdir: Path,  # noqa: ANN001 - ExperimentConfig, Workload
    on_step: ScanProgress | None = None,
) -> SensitivityScan:
    """The sensitivity scan of the dense baseline, computed once and kept in the work dir."""
    from prunetuna.workload import baseline_key

    grid = scan_grid(space)
    task = workload.task
    metric = task.metric if task.metric == "accuracy" else f"{task.metric}:{task.mode}"
    path = cache_path(workdir, baseline_key(config), space, grid, metric)
    if path.is_file():
        data = json.loads(path.read_text())
        return SensitivityScan(data["dense_accuracy"], data["grid"], data["accuracy"])
    scan = scan_sensitivity(space, batches, task, workload.datamodule, grid, on_step)
    path.write_text(json.dumps(scan.as_dict(), indent=2))
    return scan
