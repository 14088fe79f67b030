"""Does a FLOPs reduction turn into a measured speedup? Uniformly pruned built-in models, both latency backends.

For the built-in models tiny-resnet (width 16), default-w48 (tiny-resnet at width 48, the embedded
default's) and wide-resnet (width 36), on 1x28x28 inputs with
random weights (torch.manual_seed(0); latency does not depend on the values), candidates are built
at FLOPs ratios 0.5 and 0.25 with a uniform allocation: one shared sparsity ratio for every
dimension of PruningSpace.from_model(max_sparsity=0.95, step=0.01), with round_to None, 8 and 16.
The shared ratio is the smallest on the 0.01 grid whose FLOPs ratio is <= the budget, found by a
scan of the grid: with round_to the FLOPs are not monotone in the ratio (a group whose kept channel
count would round to 0 is left unpruned), so a bisection can miss. prunetuna's own
project_onto_budget (from the all-zero vector, flops budget) is run beside it and its outcome
reported.

Latency is prunetuna's measure_latency (median of --repeats after --warmup, threads=1, spread =
(p90 - p10) / median) with backends torch (eager) and onnxruntime, batch 1 and batch 32. For each
(model, backend, batch) the dense model is measured, then the candidates, then the dense model
again (the two dense medians show the drift; their mean is used). Per case:

    speedup / FLOPs reduction = (dense ms / pruned ms) / (dense FLOPs / pruned FLOPs)

Target: >= 0.8 with onnxruntime on wide-resnet (every case). round_to=8 is compared by the ratio
of speedups with and without it at the same FLOPs budget (its FLOPs differ a little: both shown).
Measured and reported, not asserted. Each (model, backend, batch) section waits for idle CPUs,
records the CPU-seconds other processes used meanwhile, and is measured again (up to 3 times, the
quietest kept) when they used more than 10% of one CPU.

Part 2 (--front-seeds, default 0 1 2; none to skip): the embedded default's own search per seed and
its Pareto-optimal candidates (experiments/benchmarks/_default_front.py). Target (issue 13): none slower
than the dense model, and every one with at most a 4x FLOPs reduction at >= 0.8 of it.

    .venv/bin/python experiments/benchmarks/latency_vs_flops.py [--warmup 20] [--repeats 200]
        [--front-seeds 0 1 2] [--no-before] [--no-uniform] [--out runs/benchmarks/latency_vs_flops.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from _default_front import default_front
from _machine import machine, quietly

from prunetuna.objectives import LatencySettings, count_flops, measure_latency, parse_budgets, project_onto_budget
from prunetuna.spaces import PruningSpace
from prunetuna.workload import BUILTIN_MODELS

REPO = Path(__file__).resolve().parents[2]
TARGET = 0.8
MODELS = {
    "tiny-resnet": ("tiny-resnet", {}),
    "default-w48": ("tiny-resnet", {"width": 48}),
    "wide-resnet": ("wide-resnet", {}),
}
BUDGETS = (0.5, 0.25)
ROUND_TO = (None, 8, 16)
MAX_SPARSITY, STEP = 0.95, 0.01


def widths(model: torch.nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def uniform_candidate(model, example, space: PruningSpace, dense_flops: float, budget: float) -> dict:
    """Smallest shared ratio on the grid within ``budget`` (or the lowest-FLOPs one when none is)."""
    scan = []
    for i in range(round(MAX_SPARSITY / STEP) + 1):
        ratio = round(i * STEP, 6)
        pruned = space.apply({n: ratio for n in space.names})
        scan.append((ratio, count_flops(pruned, example) / dense_flops, pruned))
    within = [s for s in scan if s[1] <= budget]
    ratio, flops_ratio, pruned = within[0] if within else min(scan, key=lambda s: s[1])
    projection = project_onto_budget(
        {n: 0.0 for n in space.names},
        parse_budgets({"flops": budget}),
        lambda v: {"flops_ratio": count_flops(space.apply(v), example) / dense_flops},
        max_sparsity=MAX_SPARSITY,
        step=STEP,
    )
    return {
        "ratio": ratio,
        "flops_ratio": flops_ratio,
        "reachable": bool(within),
        "widths": widths(pruned),
        "model": pruned,
        "project_onto_budget": {
            "fits": projection.fits,
            "t": projection.t,
            "flops_ratio": round(projection.metrics["flops_ratio"], 4),
        },
    }


def measure_section(attempt: int, model, candidates: list[dict], example, settings: LatencySettings) -> tuple:
    """Dense, every candidate, dense again."""
    first = measure_latency(model, example, settings)
    return (
        first,
        [measure_latency(c["model"], example, settings) for c in candidates],
        measure_latency(model, example, settings),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--front-seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--no-before", action="store_true", help="skip the previous default's search in part 2")
    parser.add_argument("--no-uniform", action="store_true", help="skip part 1 (the uniform allocations)")
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "latency_vs_flops.json"))
    args = parser.parse_args()
    front = default_front(args.front_seeds, before=not args.no_before) if args.front_seeds else []

    example = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    rows, sections = [], []
    for name, (builtin, kwargs) in ({} if args.no_uniform else MODELS).items():
        torch.manual_seed(0)
        model = BUILTIN_MODELS[builtin](**kwargs).eval()
        dense_flops = count_flops(model, example)
        candidates = []
        for round_to in ROUND_TO:
            space = PruningSpace.from_model(model, example, max_sparsity=MAX_SPARSITY, step=STEP, round_to=round_to)
            for budget in BUDGETS:
                candidates.append(
                    {
                        "round_to": round_to,
                        "budget": budget,
                        **uniform_candidate(model, example, space, dense_flops, budget),
                    }
                )
        for backend in ("torch", "onnxruntime"):
            for batch in (1, 32):
                settings = LatencySettings(
                    backend=backend,
                    batch_size=batch,
                    threads=1,
                    warmup=args.warmup,
                    repeats=args.repeats,
                    max_ci=0.02,
                    attempts=3,
                )
                (first, measured, last), noise = quietly(measure_section, model, candidates, example, settings)
                dense_ms = (first.median_ms + last.median_ms) / 2
                sections.append(
                    {
                        "model": name,
                        "backend": backend,
                        "batch": batch,
                        "dense_ms": [round(first.median_ms, 4), round(last.median_ms, 4)],
                        "dense_spread": [round(first.spread, 3), round(last.spread, 3)],
                        **noise.summary(),
                    }
                )
                print(
                    f"{name} {backend} batch {batch}: dense {first.median_ms:.3f} / {last.median_ms:.3f} ms "
                    f"(drift {100 * (last.median_ms / first.median_ms - 1):+.1f}%); {noise.line()}",
                    flush=True,
                )
                for c, r in zip(candidates, measured):
                    reduction = 1 / c["flops_ratio"]
                    speedup = dense_ms / r.median_ms
                    rows.append(
                        {
                            "model": name,
                            "backend": backend,
                            "batch": batch,
                            "round_to": c["round_to"],
                            "budget": c["budget"],
                            "ratio": c["ratio"],
                            "reachable": c["reachable"],
                            "widths": c["widths"],
                            "project_onto_budget": c["project_onto_budget"],
                            "dense_ms": round(dense_ms, 4),
                            "pruned_ms": round(r.median_ms, 4),
                            "spread": round(r.spread, 3),
                            "attempts": r.attempts,
                            "measure_s": round(r.seconds, 2),
                            "flops_reduction": round(reduction, 3),
                            "speedup": round(speedup, 3),
                            "speedup_per_flops_reduction": round(speedup / reduction, 3),
                        }
                    )

    def find(row: dict, round_to: int | None) -> dict:
        return next(
            r
            for r in rows
            if r["round_to"] == round_to and all(r[k] == row[k] for k in ("model", "backend", "batch", "budget"))
        )

    round_effect = [
        {
            "model": r["model"],
            "backend": r["backend"],
            "batch": r["batch"],
            "budget": r["budget"],
            "flops_reduction": [r["flops_reduction"], find(r, 8)["flops_reduction"]],
            "speedup": [r["speedup"], find(r, 8)["speedup"]],
            "speedup_round8_over_plain": round(find(r, 8)["speedup"] / r["speedup"], 3),
        }
        for r in rows
        if r["round_to"] is None
    ]
    target_rows = [r for r in rows if r["model"] == "wide-resnet" and r["backend"] == "onnxruntime"]
    figures = {
        "command": " ".join([".venv/bin/python", "experiments/benchmarks/latency_vs_flops.py", *sys.argv[1:]]),
        "machine": machine(),
        "sections": sections,
        "cases": rows,
        "round_to_8_effect": round_effect,
        "target": {"min_speedup_per_flops_reduction": TARGET, "on": "wide-resnet, onnxruntime, every case"},
        "target_min_value": min((r["speedup_per_flops_reduction"] for r in target_rows), default=None),
        "target_met": all(r["speedup_per_flops_reduction"] >= TARGET for r in target_rows),
        "default_front": front,
        "default_front_met": all(r["met"] for r in front if r["arm"] == "default") if front else None,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")

    m = figures["machine"]
    print(
        f"\nmachine: {m['cpus']} CPUs ({m['processor']}), torch {m['torch']}; latency threads=1, warmup "
        f"{args.warmup}, repeats {args.repeats}"
    )
    print(
        f"{'model':<12} {'backend':<11} {'batch':>5} {'round':>5} {'budget':>6} {'ratio':>5} {'FLOPs red.':>10} "
        f"{'dense ms':>9} {'pruned ms':>9} {'spread':>6} {'speedup':>7} {'spd/FLOPs':>9}  widths (stem, l2, l3)"
    )
    for r in rows:
        flag = "" if r["reachable"] else "  (budget unreachable: lowest FLOPs on the grid)"
        print(
            f"{r['model']:<12} {r['backend']:<11} {r['batch']:>5} {str(r['round_to'] or '-'):>5} {r['budget']:>6} "
            f"{r['ratio']:>5.2f} "
            f"{r['flops_reduction']:>10.2f} {r['dense_ms']:>9.3f} {r['pruned_ms']:>9.3f} {r['spread']:>6.3f} "
            f"{r['speedup']:>7.2f} "
            f"{r['speedup_per_flops_reduction']:>9.2f}  {r['widths'][0]}, {r['widths'][3]}, {r['widths'][6]}{flag}"
        )
    print("\nround_to=8 at the same FLOPs budget: speedup with / without (FLOPs reductions without, with)")
    for e in round_effect:
        print(
            f"  {e['model']:<12} {e['backend']:<11} batch {e['batch']:>2} budget {e['budget']}: "
            f"{e['speedup_round8_over_plain']:.2f}x "
            f"(speedups {e['speedup'][1]:.2f} vs {e['speedup'][0]:.2f}; FLOPs red. {e['flops_reduction'][0]:.2f}, "
            f"{e['flops_reduction'][1]:.2f})"
        )
    print(
        "\nproject_onto_budget from all-zero (flops budget): "
        + "; ".join(
            f"{r['model']} round_to={r['round_to']} budget {r['budget']}: fits={r['project_onto_budget']['fits']} "
            f"flops_ratio={r['project_onto_budget']['flops_ratio']}"
            for r in rows
            if r["backend"] == "torch" and r["batch"] == 1
        )
    )
    if target_rows:
        print(
            f"\ntarget: speedup / FLOPs reduction >= {TARGET} with onnxruntime on wide-resnet (every case; min "
            f"{figures['target_min_value']:.2f}): "
            f"{'MET' if figures['target_met'] else 'NOT MET'}"
        )
    for r in front:
        print(
            f"embedded default front ({r['arm']}, seed {r['seed']}): {r['not_slower']}/{r['pareto']} not slower than "
            "dense; "
            f"{r['reach_0_8']}/{r['within_4x']} within 4x reach 0.8 of the FLOPs reduction: "
            f"{'MET' if r['met'] else 'NOT MET'}"
        )
    print("figures written to", out)


if __name__ == "__main__":
    main()
