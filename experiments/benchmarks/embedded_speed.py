"""Issue 13 item 5, a probe: are the embedded default's candidates faster than dense, per backend and round_to?

The embedded model (tiny-resnet, width 16, 1x28x28, random weights: torch.manual_seed(0)) and
--candidates random sparsity vectors on the default grid (max_sparsity 0.8, step 0.05, seeded),
applied with round_to none and with round_to 8 (the same vectors), measured with prunetuna's
measure_latency (batch --batch, default 1, one thread, --warmup, --repeats, max_ci 0.05), backends torch and
onnxruntime; the dense model is measured before and after each section (their mean is the reference).
Per (backend, round_to): the share of candidates not slower than dense (speedup >= 1), and among
those with at most a 4x FLOPs reduction the share whose speedup reaches 0.8 of it (issue 13's two
targets, here over every candidate, not only the Pareto-optimal ones: accuracy is not trained).

    .venv/bin/python experiments/benchmarks/embedded_speed.py [--candidates 40] [--warmup 20] [--repeats 200]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

import torch
from _machine import machine

from prunetuna.objectives import LatencySettings, count_flops, measure_latency
from prunetuna.spaces import PruningSpace
from prunetuna.workload import BUILTIN_MODELS

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"])
    parser.add_argument("--round-to", nargs="+", default=["none", "8"], help="none and/or channel multiples")
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "embedded_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = BUILTIN_MODELS["tiny-resnet"](width=args.width).eval()
    example = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    dense_flops = count_flops(model, example)
    rng = random.Random(0)
    plain = PruningSpace.from_model(model, example, max_sparsity=0.8, step=0.05)
    vectors = [
        {n: rng.choice([round(k * 0.05, 2) for k in range(17)]) for n in plain.names} for _ in range(args.candidates)
    ]
    sections = []
    for round_to in [None if r == "none" else int(r) for r in args.round_to]:
        space = PruningSpace.from_model(model, example, max_sparsity=0.8, step=0.05, round_to=round_to)
        pruned = [space.apply(v, structure_only=True) for v in vectors]
        reductions = [dense_flops / count_flops(p, example) for p in pruned]
        for backend in args.backends:
            settings = LatencySettings(
                backend=backend,
                batch_size=args.batch,
                threads=1,
                warmup=args.warmup,
                repeats=args.repeats,
                max_ci=0.05,
                attempts=3,
                cache=False,
            )
            before = measure_latency(model, example, settings).median_ms
            times = [measure_latency(p, example, settings).median_ms for p in pruned]
            after = measure_latency(model, example, settings).median_ms
            dense = (before + after) / 2
            speedups = [dense / t for t in times]
            within4 = [(s, r) for s, r in zip(speedups, reductions) if r <= 4]
            row = {
                "round_to": round_to,
                "backend": backend,
                "batch": args.batch,
                "dense_ms": [round(before, 4), round(after, 4)],
                "not_slower": round(sum(s >= 1 for s in speedups) / len(speedups), 3),
                "within_4x": len(within4),
                "reach_0.8": round(sum(s >= 0.8 * r for s, r in within4) / max(1, len(within4)), 3),
                "median_speedup": round(statistics.median(speedups), 3),
                "median_flops_reduction": round(statistics.median(reductions), 3),
                "median_speedup_per_reduction": round(
                    statistics.median(s / r for s, r in zip(speedups, reductions)), 3
                ),
                "slowest_speedup": round(min(speedups), 3),
            }
            sections.append(row)
            print(
                f"round_to {round_to}, {backend}, batch {args.batch}: dense {before:.4f}/{after:.4f} ms; not slower "
                f"than dense {row['not_slower']:.0%}; "
                f"of {len(within4)} within 4x FLOPs reduction {row['reach_0.8']:.0%} reach 0.8 of it; median speedup "
                f"{row['median_speedup']:.2f}x at {row['median_flops_reduction']:.2f}x fewer FLOPs; slowest "
                f"{row['slowest_speedup']:.2f}x",
                flush=True,
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = (
        f".venv/bin/python experiments/benchmarks/embedded_speed.py --candidates {args.candidates} --warmup "
        f"{args.warmup} "
        f"--repeats {args.repeats} --width {args.width} --batch {args.batch} --backends {' '.join(args.backends)} "
        f"--round-to {' '.join(args.round_to)}"
    )
    out.write_text(json.dumps({"command": command, "machine": machine(), "sections": sections}, indent=2) + "\n")


if __name__ == "__main__":
    main()
