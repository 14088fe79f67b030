"""The cluttered benchmark's cost measurements and its alternative trained from scratch (cluttered.py)."""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from statistics import median

import torch

from prunetuna.config import parse_config
from prunetuna.objectives import LatencySettings, count_flops, measure_latency
from prunetuna.training import evaluate_accuracy
from prunetuna.workload import load_workload, prepare_baseline

REMEASURES = 5


def cost_of(cost: str, model: torch.nn.Module, example: torch.Tensor) -> float:
    """FLOPs, or the onnxruntime latency at batch 1 on one thread (ms), as a latency budget's search measures it."""
    if cost == "flops":
        return count_flops(model.eval(), example[:1])
    return measure_latency(model.eval(), example[:1], LatencySettings(backend="onnxruntime")).median_ms


def ratio_of(cost: str, model: torch.nn.Module, dense: torch.nn.Module, example: torch.Tensor) -> float:
    """``model``'s cost ratio to ``dense``. Latency: the medians of REMEASURES alternating measurements of
    each, since one measurement (what a search's budget check reads) varies by about 10% here, and a search
    that selects the best candidate measured within a budget favours those measured low."""
    if cost == "flops":
        return cost_of(cost, model, example) / cost_of(cost, dense, example)
    pairs = [(cost_of(cost, model, example), cost_of(cost, dense, example)) for _ in range(REMEASURES)]
    return median(p[0] for p in pairs) / median(p[1] for p in pairs)


def narrowed(
    args: argparse.Namespace, raw_config: dict, arch: str, budget: float, seed: int, workdir: Path, cost: str = "flops"
) -> dict:
    """The uniformly narrowed net trained from scratch: the widest ``width`` within the budget (``raw_config``:
    the benchmark's config of this architecture, budget and seed, without a checkpoint)."""

    def workload_at(width: int, epochs: int):  # noqa: ANN202
        raw = copy.deepcopy(raw_config)
        raw["name"] += f"-w{width}"
        raw["model"]["kwargs"]["width"] = width
        raw["baseline"]["epochs"] = epochs
        config = parse_config(raw)
        return config, load_workload(config)

    _, dense = workload_at(args.width, 1)
    width = args.width
    while width > 1:
        _, narrowed = workload_at(width, 1)
        ratio = ratio_of(cost, narrowed.model, dense.model, dense.example)
        if ratio <= budget:
            break
        width -= 1
    started = time.perf_counter()
    config, workload = workload_at(width, args.baseline_epochs + args.final_epochs)
    baseline = prepare_baseline(config, workload, workdir / "narrowed")
    return {
        "arch": arch,
        "budget": budget,
        "cost": cost,
        "seed": seed,
        "candidate": "narrowed",
        "trial": None,
        "origin": f"width {width} of {args.width}",
        "ratio": ratio,
        "ratio_remeasured": ratio,
        "val_search": None,
        "val_final": baseline.accuracy,
        "test": evaluate_accuracy(workload.model, workload.datamodule.test_dataloader()),
        "finetune_s": time.perf_counter() - started,
        "search_s": 0.0,
    }
