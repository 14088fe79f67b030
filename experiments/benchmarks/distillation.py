"""Does distillation from the dense model pay? The same candidates fine-tuned with and without ``finetune.distill``.

For each seed S (--seeds, default 0 1 2; config.seed = S: data split and dense baseline follow it) and
FLOPs budget R (--budgets, default 0.1 and 0.05) of the embedded default (--config, experiments/mnist.yaml):
--candidates random sparsity vectors are drawn on the space's step grid (numpy, seeded by S, R and k)
and projected onto the budget as a trial does (``project_onto_budget``: the smallest uniform move toward
max_sparsity whose FLOPs ratio fits). Each candidate is pruned from the dense baseline, its BatchNorm
statistics recalibrated (as a trial does), and fine-tuned twice with the config's finetune settings and
the same seed (1000 + k), at equal epochs: once plain (cross-entropy), once with
``finetune.distill: {alpha: --alpha, temperature: --temperature}``. The order of the two alternates per
candidate, so that a machine getting busier does not bias the cost figure.

Reported per budget: mean accuracy of each, the difference distill - plain in points (mean, std and
min/max over seeds x candidates, and per seed), and the cost of a fine-tune (seconds, median of each, and
the median per-candidate difference; the teacher's copy and its forward pass per batch). Target (issue 12):
distillation adds at least 2 points at 0.05. Measured and reported, not asserted. No wait for an idle
machine (--wait to wait as the other benchmarks do): the CPU-seconds other processes used are recorded.

    .venv/bin/python experiments/benchmarks/distillation.py [--seeds 0 1 2] [--budgets 0.1 0.05] [--candidates 4]
        [--alpha 0.5] [--temperature 4.0] [--epochs N] [--threads K] [--config experiments/mnist.yaml] [--out PATH]
        [--wait]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from statistics import mean, median

import numpy as np
from _machine import machine
from _search_bench import DEFAULT_CONFIG, REPO, CpuMeter, mean_std, wait_for_free_machine, with_changes

os.environ.pop("MLFLOW_TRACKING_URI", None)

import torch

from prunetuna.config import load_config
from prunetuna.objectives import CostContext, measure_costs, parse_budgets, project_onto_budget
from prunetuna.search import calibration_batches, prepare_space
from prunetuna.sparsity import canonical
from prunetuna.training import Distillation, fine_tune, recalibrate_batchnorm
from prunetuna.workload import (
    load_workload,
    prepare_baseline,
)


def candidates(space, workload, budget: float, count: int, seed: int) -> list[dict[str, float]]:  # noqa: ANN001
    """``count`` random grid vectors projected onto the FLOPs budget, as a trial projects a sampled one."""
    context = CostContext(workload.example)
    dense = measure_costs(workload.model, context, None, ("flops",))
    budgets = parse_budgets({"flops": budget})
    highs = {d.name: space.high(d) for d in space.dimensions}

    def flops(vector: dict[str, float]) -> dict[str, float]:
        return measure_costs(space.apply(vector, structure_only=True), context, dense, ("flops",))

    out = []
    for k in range(count):
        rng = np.random.default_rng([seed, int(budget * 1000), k])
        sampled = space.snap({name: float(rng.uniform(0, high)) for name, high in highs.items()})
        projection = project_onto_budget(sampled, budgets, flops, max_sparsity=highs, step=space.step)
        if projection.fits:
            out.append(canonical(projection.vector) | {"_flops_ratio": projection.metrics["flops_ratio"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.1, 0.05])
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument(
        "--epochs", type=int, default=None, help="fine-tune epochs (default: the config's finetune.epochs)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "distillation.json"))
    parser.add_argument("--wait", action="store_true", help="wait for an idle machine first")
    args = parser.parse_args()
    command = " ".join([".venv/bin/python", "experiments/benchmarks/distillation.py", *sys.argv[1:]])
    if args.threads:
        torch.set_num_threads(args.threads)
    waited = wait_for_free_machine() if args.wait else None
    base = load_config(args.config)
    root = Path(tempfile.mkdtemp(prefix="prunetuna-distill-"))
    rows = []
    with CpuMeter() as meter:
        for seed in args.seeds:
            config = with_changes(base, name=f"{base.name}-distill-s{seed}", seed=seed)
            ft = config.finetune
            epochs = ft.epochs if args.epochs is None else args.epochs
            workload = load_workload(config)
            prepare_baseline(config, workload, root / f"seed{seed}")
            space = prepare_space(config, workload)
            batches = calibration_batches(workload, config.pruning.calibration_batches)
            teacher = Distillation(workload.model, args.alpha, args.temperature)
            for budget in args.budgets:
                for k, vector in enumerate(candidates(space, workload, budget, args.candidates, seed)):
                    flops_ratio = vector.pop("_flops_ratio")
                    result = {}
                    for kind in ("plain", "distill") if k % 2 == 0 else ("distill", "plain"):
                        pruned = space.apply(vector, batches)
                        recalibrate_batchnorm(pruned, [x for x, _ in batches])
                        result[kind] = fine_tune(
                            pruned,
                            workload.datamodule,
                            epochs=epochs,
                            lr=ft.lr,
                            max_batches=ft.max_batches,
                            seed=1000 + k,
                            distill=teacher if kind == "distill" else None,
                        )
                    rows.append(
                        {
                            "seed": seed,
                            "budget": budget,
                            "candidate": k,
                            "flops_ratio": flops_ratio,
                            "plain": result["plain"].accuracy,
                            "distill": result["distill"].accuracy,
                            "plain_s": result["plain"].seconds,
                            "distill_s": result["distill"].seconds,
                        }
                    )
                    r = rows[-1]
                    print(
                        f"seed {seed} flops<={budget:g} candidate {k} (flops {flops_ratio:.3f}): plain "
                        f"{r['plain']:.4f} "
                        f"distill {r['distill']:.4f} ({100 * (r['distill'] - r['plain']):+.2f} pts)  "
                        f"{r['plain_s']:.2f} s vs {r['distill_s']:.2f} s",
                        flush=True,
                    )
    shutil.rmtree(root, ignore_errors=True)
    summary = {}
    for budget in args.budgets:
        mine = [r for r in rows if r["budget"] == budget]
        diffs = [100 * (r["distill"] - r["plain"]) for r in mine]
        summary[str(budget)] = {
            "n": len(mine),
            "plain": mean_std([r["plain"] for r in mine]),
            "distill": mean_std([r["distill"] for r in mine]),
            "diff_pt": mean_std(diffs) | {"min": min(diffs), "max": max(diffs)},
            "diff_pt_per_seed": {
                s: mean(100 * (r["distill"] - r["plain"]) for r in mine if r["seed"] == s) for s in args.seeds
            },
            "seconds_plain_median": median(r["plain_s"] for r in mine),
            "seconds_distill_median": median(r["distill_s"] for r in mine),
            "seconds_extra_median": median(r["distill_s"] - r["plain_s"] for r in mine),
        }
    figures = {
        "command": command,
        "machine": machine(),
        "waited_for_free_machine": waited,
        "noise": meter.summary(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "rows": rows,
        "summary": summary,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    m = figures["machine"]
    print(
        f"\nmachine: {m['cpus']} CPUs ({m['processor']}), torch {m['torch']} with {m['torch_threads']} threads; "
        f"{meter.line()}"
    )
    for budget, s in summary.items():
        seeds = ", ".join(f"{v:+.2f}" for v in s["diff_pt_per_seed"].values())
        print(
            f"flops <= {budget}: {s['n']} candidates; plain {100 * s['plain']['mean']:.2f}, distill "
            f"{100 * s['distill']['mean']:.2f}; "
            f"distill - plain {s['diff_pt']['mean']:+.2f} +- {s['diff_pt']['std']:.2f} pts (min "
            f"{s['diff_pt']['min']:+.2f}, "
            f"max {s['diff_pt']['max']:+.2f}; per seed {seeds}); fine-tune {s['seconds_plain_median']:.2f} s plain, "
            f"{s['seconds_distill_median']:.2f} s distilled (median extra {s['seconds_extra_median']:+.2f} s)"
        )
    print("figures written to", out)


if __name__ == "__main__":
    main()
