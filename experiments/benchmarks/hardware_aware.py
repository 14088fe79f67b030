"""Does searching on measured latency find faster models than searching on FLOPs, at the same accuracy?

Two searches of the embedded default (--config, experiments/mnist.yaml) with the same trial budget,
sampler and seed, run with the CLI (``python -m prunetuna search CFG --workdir W``) in one fresh
temporary work dir (so they share the cached dense baseline):
- flops:   objectives [accuracy, flops]
- latency: objectives [accuracy, latency]
Both carry the same ``latency:`` section (--backend, default onnxruntime; batch 1, threads 1; the
other keys at their defaults, every_trial true), so both pay the same per-trial measurement.

Then one measurement pass in this process, machine idle: every COMPLETE trial's candidate of both
searches is rebuilt from ``prunetuna report --json`` (``trials[].sparsity``, the applied vector;
cached dense weights) and its latency measured again with the same backend, batch 1, threads 1,
--warmup and --repeats; the candidates of the two searches are interleaved, and the dense model is
measured first and last. For accuracy thresholds dense - 0.5, 1 and 2 points, the lowest
re-measured latency among each search's trials at or above the threshold is reported, with the
ratio latency-search / flops-search (< 1: the latency search found a faster model). The in-search
latencies of the latency search are compared with the re-measured ones (how reproducible the
objective it optimized was). Measured and reported, not asserted. The re-measurement pass waits for
idle CPUs and is redone (up to 3 times, the quietest kept) when other processes used more than 10%
of one CPU meanwhile; the CPU-seconds they used are recorded for it and for each search (a search
is run once more, as a fresh study, when they used more than 25% of one CPU; the quieter is kept).

    .venv/bin/python experiments/benchmarks/hardware_aware.py [--n-trials 30] [--backend onnxruntime]
        [--warmup 20] [--repeats 200] [--config experiments/mnist.yaml] [--round-to N|none] [--keep]
        [--out runs/benchmarks/hardware_aware.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

import yaml
from _machine import machine, quietly

REPO = Path(__file__).resolve().parents[2]
THRESHOLDS_PT = (0.5, 1.0, 2.0)
SEARCH_MAX_NOISE_PCT = 25.0  # a search run while others used more of one CPU is run again, once

os.environ.pop("MLFLOW_TRACKING_URI", None)  # keep MLflow in the temporary work dir

from prunetuna.config import load_config
from prunetuna.objectives import (
    LatencySettings,
    measure_latency,
)
from prunetuna.search import prepare_space
from prunetuna.workload import (
    load_workload,
    prepare_baseline,
)


def cli(*args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "prunetuna", *args],
        cwd=REPO,
        check=True,
        text=True,
        capture_output=capture,
        stdout=None if capture else subprocess.DEVNULL,
    )
    return result.stdout if capture else ""


def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    for rank, i in enumerate(order):
        out[i] = float(rank)
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5


def run_study(attempt: int, data: dict, workdir: Path) -> Path:
    """``prunetuna search`` of a fresh study (the name suffixed with the attempt); returns its config file."""
    data = {**data, "name": f"{data['name']}-{attempt}"}
    path = workdir / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    print(f"search: prunetuna search {path} --workdir {workdir}", flush=True)
    cli("search", str(path), "--workdir", str(workdir))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "experiments" / "mnist.yaml"))
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--backend", default="onnxruntime", choices=("torch", "onnxruntime"))
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument(
        "--round-to", default=None, help="override pruning.round_to of the config (an integer, or 'none')"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "hardware_aware.json"))
    args = parser.parse_args()

    base = yaml.safe_load(Path(args.config).read_text())
    if args.round_to is not None:
        round_to = None if args.round_to.lower() in ("none", "null", "0") else int(args.round_to)
        base = {
            **base,
            "name": f"{base['name']}-round{round_to}",
            "pruning": {**base.get("pruning", {}), "round_to": round_to},
        }
    workdir = Path(tempfile.mkdtemp(prefix="prunetuna-hw-"))
    searches: dict[str, dict] = {}
    for cost in ("flops", "latency"):
        data = {
            **base,
            "name": f"{base['name']}-{cost}",
            "objectives": ["accuracy", cost],
            "latency": {**base.get("latency", {}), "backend": args.backend, "batch_size": 1, "threads": 1},
            "search": {**base.get("search", {}), "sampler": "tpe", "n_trials": args.n_trials},
        }
        path, noise = quietly(run_study, data, workdir, max_noise_pct=SEARCH_MAX_NOISE_PCT, tries=2)
        report = json.loads(cli("report", str(path), "--workdir", str(workdir), "--json", capture=True))
        searches[cost] = {
            "config": path,
            "report": report,
            "noise": noise.summary(),
            "trials": [t for t in report["trials"] if t["state"] == "COMPLETE"],
        }
        print(f"  {len(searches[cost]['trials'])} complete trials; {noise.line()}", flush=True)

    # One measurement pass: same process, same settings, the two searches' candidates interleaved.
    config = load_config(searches["flops"]["config"])
    workload = load_workload(config)
    prepare_baseline(config, workload, workdir)  # the cached dense weights
    space = prepare_space(config, workload)
    settings = LatencySettings(backend=args.backend, batch_size=1, threads=1, warmup=args.warmup, repeats=args.repeats)
    flops_trials, latency_trials = searches["flops"]["trials"], searches["latency"]["trials"]
    queue = [t for pair in zip(flops_trials, latency_trials) for t in pair]
    queue += flops_trials[len(latency_trials) :] + latency_trials[len(flops_trials) :]
    print(
        f"re-measuring {len(queue)} candidates and the dense model ({args.backend}, batch 1, threads 1, "
        f"warmup {args.warmup}, repeats {args.repeats})",
        flush=True,
    )
    candidates = {tuple(sorted(t["sparsity"].items())): space.apply(t["sparsity"]) for t in queue}

    def measure_all(attempt: int) -> tuple:
        dense_first = measure_latency(workload.model, workload.example, settings)
        measured = {key: measure_latency(model, workload.example, settings) for key, model in candidates.items()}
        return dense_first, measured, measure_latency(workload.model, workload.example, settings)

    (dense_first, measured, dense_last), noise = quietly(measure_all)
    for trial in queue:
        result = measured[tuple(sorted(trial["sparsity"].items()))]
        trial["remeasured_ms"], trial["remeasured_spread"] = result.median_ms, result.spread
    print(
        f"  dense {dense_first.median_ms:.4f} / {dense_last.median_ms:.4f} ms (first / last); {noise.line()}",
        flush=True,
    )

    dense_accuracy = searches["flops"]["report"]["dense"]["accuracy"]
    dense_ms = (dense_first.median_ms + dense_last.median_ms) / 2
    comparison = []
    for points in THRESHOLDS_PT:
        threshold = dense_accuracy - points / 100
        row = {"threshold_points": points, "min_accuracy": round(threshold, 4)}
        for cost, search in searches.items():
            meeting = [t for t in search["trials"] if t["metrics"]["accuracy"] >= threshold - 1e-9]
            best = min(meeting, key=lambda t: t["remeasured_ms"]) if meeting else None
            row[cost] = (
                None
                if best is None
                else {
                    "trial": best["number"],
                    "ms": round(best["remeasured_ms"], 4),
                    "accuracy": best["metrics"]["accuracy"],
                    "flops_ratio": round(best["metrics"]["flops_ratio"], 3),
                    "candidates": len(meeting),
                    "speedup_vs_dense": round(dense_ms / best["remeasured_ms"], 3),
                }
            )
        if row["flops"] and row["latency"]:
            row["latency_over_flops"] = round(row["latency"]["ms"] / row["flops"]["ms"], 3)
            row["latency_search_lower"] = row["latency"]["ms"] < row["flops"]["ms"]
        comparison.append(row)

    in_search = [t["metrics"]["latency_ms"] for t in latency_trials]
    again = [t["remeasured_ms"] for t in latency_trials]
    deviation = [abs(a / b - 1) for a, b in zip(in_search, again)]
    agreement = {
        "spearman": round(spearman(in_search, again), 3),
        "median_abs_deviation_pct": round(100 * median(deviation), 1),
        "max_abs_deviation_pct": round(100 * max(deviation), 1),
        "dense_in_search_ms": searches["latency"]["report"]["dense"].get("latency_ms"),
        "dense_remeasured_ms": [round(dense_first.median_ms, 4), round(dense_last.median_ms, 4)],
    }
    figures = {
        "command": f".venv/bin/python experiments/benchmarks/hardware_aware.py --n-trials {args.n_trials} --backend "
        f"{args.backend} "
        f"--warmup {args.warmup} --repeats {args.repeats}"
        + (
            f" --config {os.path.relpath(Path(args.config).resolve(), REPO)}"
            if Path(args.config).resolve() != REPO / "experiments" / "mnist.yaml"
            else ""
        )
        + (f" --round-to {args.round_to}" if args.round_to is not None else "")
        + (
            f" --out {args.out}"
            if Path(args.out).resolve() != REPO / "runs" / "benchmarks" / "hardware_aware.json"
            else ""
        ),
        "machine": machine(),
        "dense_accuracy": dense_accuracy,
        "searches": {c: {"complete_trials": len(s["trials"]), **s["noise"]} for c, s in searches.items()},
        "remeasure": noise.summary(),
        "dense_remeasured_ms": round(dense_ms, 4),
        "comparison": comparison,
        "faster_than_dense": {c: sum(t["remeasured_ms"] < dense_ms for t in s["trials"]) for c, s in searches.items()},
        "in_search_vs_remeasured_latency": agreement,
        "trials": {
            c: [
                {
                    "number": t["number"],
                    "accuracy": t["metrics"]["accuracy"],
                    "flops_ratio": t["metrics"]["flops_ratio"],
                    "in_search_ms": t["metrics"].get("latency_ms"),
                    "remeasured_ms": t["remeasured_ms"],
                    "remeasured_spread": t["remeasured_spread"],
                }
                for t in s["trials"]
            ]
            for c, s in searches.items()
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    if args.keep:
        print("work dir kept:", workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)

    m = figures["machine"]
    print(
        f"\nmachine: {m['cpus']} CPUs ({m['processor']}), torch {m['torch']}; dense accuracy {dense_accuracy:.4f}; "
        f"{args.n_trials} trials each, TPE, seed {config.seed}; re-measured with {args.backend}, batch 1, threads 1"
    )
    print(
        f"{'min accuracy':>16} | {'flops search: ms speedup (trial, acc, FLOPs)':>44} | "
        f"{'latency search: ms speedup (trial, acc, FLOPs)':>46} | ratio  lower?"
    )

    def cell(best: dict | None) -> str:
        return (
            "none"
            if best is None
            else (
                f"{best['ms']:.4f} x{best['speedup_vs_dense']:.2f} "
                f"(#{best['trial']}, {best['accuracy']:.3f}, {best['flops_ratio']:.2f})"
            )
        )

    for row in comparison:
        tail = (
            f"{row['latency_over_flops']:.3f}  {'yes' if row['latency_search_lower'] else 'no'}"
            if "latency_over_flops" in row
            else "-"
        )
        print(
            f"{'dense-' + str(row['threshold_points']) + 'pt=' + format(row['min_accuracy'], '.3f'):>16} | "
            f"{cell(row['flops']):>44} | "
            f"{cell(row['latency']):>46} | {tail}"
        )
    print(
        "candidates faster than the dense model (re-measured): "
        + ", ".join(f"{c} search {figures['faster_than_dense'][c]}/{len(s['trials'])}" for c, s in searches.items())
    )
    a = agreement
    print(
        f"latency search, in-search vs re-measured latency: Spearman {a['spearman']}, median |deviation| "
        f"{a['median_abs_deviation_pct']}%, max {a['max_abs_deviation_pct']}%; dense in-search "
        f"{a['dense_in_search_ms']:.4f} ms, "
        f"re-measured {a['dense_remeasured_ms']}"
    )
    print("figures written to", out)


if __name__ == "__main__":
    main()
