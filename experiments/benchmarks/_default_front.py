"""Part 2 of latency_vs_flops.py: are the embedded default's Pareto-optimal candidates really faster?

For each seed, ``prunetuna search experiments/mnist.yaml`` (config.seed = S) runs in-process with its
own latency settings (every trial measures the speedup beside the FLOPs reduction); over the study's
Pareto-optimal trials: the share not slower than the dense model (speedup >= 1), and among those with at
most a 4x FLOPs reduction the share whose speedup reaches 0.8 of it. ``before`` runs the previous
default (width 16, no channel rounding, the step grid, torch eager latency) for comparison.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _search_bench import DEFAULT_CONFIG, run_study, with_changes

MAX_REDUCTION, TARGET = 4.0, 0.8
BEFORE = {
    "model": {"builtin": "tiny-resnet", "kwargs": {}},
    "pruning": {"round_to": None, "scale": "linear"},
    "latency": {"backend": "torch"},
}


def front_shares(items: list[dict]) -> dict:
    """The Pareto-optimal trials' (FLOPs reduction, speedup) and the two shares the issue targets."""
    front = [t for t in items if t["pareto"] and t["state"] == "COMPLETE" and "speedup" in t["metrics"]]
    points = [(round(t["metrics"]["flops_reduction"], 3), round(t["metrics"]["speedup"], 3)) for t in front]
    within = [(r, s) for r, s in points if r <= MAX_REDUCTION]
    return {
        "pareto": len(points),
        "not_slower": sum(s >= 1 for _, s in points),
        "within_4x": len(within),
        "reach_0_8": sum(s / r >= TARGET for r, s in within),
        "points": points,
        "met": all(s >= 1 for _, s in points) and all(s / r >= TARGET for r, s in within),
    }


def default_front(seeds: list[int], before: bool) -> list[dict]:
    """One search of the embedded default per seed (and of the previous default at the first seed)."""
    from prunetuna.config import load_config

    base = load_config(DEFAULT_CONFIG)
    arms = [("default", base)] + ([("before", with_changes(base, **BEFORE))] if before else [])
    rows = []
    with tempfile.TemporaryDirectory(prefix="prunetuna-front-") as root:
        for arm, config in arms:
            for seed in seeds[:1] if arm == "before" else seeds:
                start = time.perf_counter()
                items, study = run_study(
                    with_changes(config, name=f"{config.name}-{arm}-s{seed}", seed=seed), Path(root) / f"{arm}-{seed}"
                )
                dense = {k: study.user_attrs["dense"].get(k) for k in ("accuracy", "flops", "params", "latency_ms")}
                rows.append(
                    {
                        "arm": arm,
                        "seed": seed,
                        "wall_s": round(time.perf_counter() - start, 1),
                        "dense": dense,
                        **front_shares(items),
                    }
                )
                r = rows[-1]
                print(
                    f"{arm} seed {seed}: {r['pareto']} Pareto-optimal, {r['not_slower']} not slower than dense, "
                    f"{r['reach_0_8']}/{r['within_4x']} within 4x reach 0.8 of their FLOPs reduction; "
                    f"(FLOPs reduction, speedup) {r['points']} ({r['wall_s']} s)",
                    flush=True,
                )
    return rows
