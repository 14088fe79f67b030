"""What measuring latency in every trial costs, as a share of the trial's wall time, per backend.

Short searches of the embedded default (--config, experiments/mnist.yaml; objectives unchanged),
in-process with run_search, all in one temporary work dir (one cached dense baseline), same seed
(so the same candidates): one with ``latency.every_trial: false`` ("none", the reference trial
time without latency), then one per backend (torch, onnxruntime) with ``every_trial: true`` and the
config's other latency settings (defaults: batch 1, threads 1, warmup 10, repeats 50,
max_ci 0.05, attempts 3).

Inside each trial, prunetuna's latency cost (COSTS["latency"].measure, i.e. measure_latency) is
wrapped with a timer, and so is the backend's runner construction (LATENCY_BACKENDS[backend]:
ONNX export and session creation for onnxruntime; nothing for torch). The dense model's latency,
measured once before the first trial, is not counted. A trial's wall time is Optuna's
datetime_complete - datetime_start. Reported per backend: median seconds of the measurement, of the
trial, and median share of the trial; the trial time beside the "none" run's shows any cost the
wrapper misses.

Target: latency measurement <= 5% of the trial's time (median over trials). Measured, not asserted.
Each search waits for idle CPUs, records the CPU-seconds other processes used meanwhile, and is run
again as a fresh study (up to 3 times, the quietest kept) when they used more than 10% of one CPU.

    .venv/bin/python experiments/benchmarks/latency_cost.py [--n-trials 10] [--config experiments/mnist.yaml]
        [--out runs/benchmarks/latency_cost.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from statistics import median

import yaml
from _machine import machine, quietly

REPO = Path(__file__).resolve().parents[2]
TARGET_PERCENT = 5.0

os.environ.pop("MLFLOW_TRACKING_URI", None)  # keep MLflow in the temporary work dir

from prunetuna.config import parse_config
from prunetuna.objectives import _costs, _latency
from prunetuna.search import SearchEvents, run_search
from prunetuna.store import resolve_workspace

spent: dict[str, float] = defaultdict(float)


def timed(function, label: str):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - start

    return wrapper


def search(attempt: int, data: dict, workdir: Path, n_trials: int) -> list[dict]:
    """A fresh study (the name suffixed with the attempt) of ``n_trials`` trials; one row per complete trial."""
    config = parse_config({**data, "name": f"{data['name']}-{attempt}"}, "latency_cost")
    rows: list[dict] = []

    class Rows(SearchEvents):
        def started(self, outcome) -> None:  # noqa: ANN001
            spent.clear()

        def trial_finished(self, record, finished: int) -> None:  # noqa: ANN001
            steps = dict(spent)
            spent.clear()
            if record.state == "COMPLETE":
                rows.append(
                    {
                        "number": record.number,
                        "trial_s": record.seconds,
                        "latency_s": steps.get("latency", 0.0),
                        "setup_s": steps.get("runner setup", 0.0),
                        "attempts": record.metrics.get("latency_attempts"),
                        "spread": record.metrics.get("latency_spread"),
                    }
                )

    run_search(config, resolve_workspace(config.name, workdir, None, None), n_trials=n_trials, events=Rows())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "experiments" / "mnist.yaml"))
    parser.add_argument("--n-trials", type=int, default=10)
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "latency_cost.json"))
    args = parser.parse_args()

    cost = _costs.COSTS["latency"]
    _costs.COSTS["latency"] = dataclasses.replace(cost, measure=timed(cost.measure, "latency"))
    for backend, factory in list(_latency.LATENCY_BACKENDS.items()):
        _latency.LATENCY_BACKENDS[backend] = timed(factory, "runner setup")

    base = yaml.safe_load(Path(args.config).read_text())
    workdir = Path(tempfile.mkdtemp(prefix="prunetuna-latcost-"))
    results = {}
    for backend in ("none", "torch", "onnxruntime"):
        latency = {**base.get("latency", {}), "every_trial": backend != "none"}
        if backend != "none":
            latency["backend"] = backend
        print(f"search: latency {backend if backend != 'none' else 'not measured (every_trial false)'}", flush=True)
        data = {**base, "name": f"{base['name']}-latcost-{backend}", "latency": latency}
        rows, noise = quietly(search, data, workdir, args.n_trials)
        for r in rows:
            r["latency_pct"] = 100 * r["latency_s"] / r["trial_s"]
        results[backend] = {
            "complete_trials": len(rows),
            **noise.summary(),
            "median_trial_s": round(median(r["trial_s"] for r in rows), 4),
            "median_latency_s": round(median(r["latency_s"] for r in rows), 4),
            "median_runner_setup_s": round(median(r["setup_s"] for r in rows), 4),
            "median_latency_pct": round(median(r["latency_pct"] for r in rows), 2),
            "latency_pct_of_summed_trials": round(
                100 * sum(r["latency_s"] for r in rows) / sum(r["trial_s"] for r in rows), 2
            ),
            "trials_with_retries": sum(1 for r in rows if (r["attempts"] or 1) > 1),
            "per_trial": rows,
        }
        print(f"  {len(rows)} complete trials; {noise.line()}", flush=True)
    shutil.rmtree(workdir, ignore_errors=True)

    reference = results["none"]["median_trial_s"]
    for backend in ("torch", "onnxruntime"):
        results[backend]["median_trial_s_minus_none"] = round(results[backend]["median_trial_s"] - reference, 4)
        results[backend]["target_met"] = results[backend]["median_latency_pct"] <= TARGET_PERCENT
    figures = {
        "command": f".venv/bin/python experiments/benchmarks/latency_cost.py --n-trials {args.n_trials}",
        "machine": machine(),
        "latency_settings": {**base.get("latency", {})} or "defaults",
        "results": results,
        "target": {"max_latency_pct_of_trial": TARGET_PERCENT},
        "target_met": all(results[b]["target_met"] for b in ("torch", "onnxruntime")),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")

    m = figures["machine"]
    print(
        f"\nmachine: {m['cpus']} CPUs ({m['processor']}), torch {m['torch']}; {args.n_trials} trials per search, "
        "medians over trials"
    )
    print(
        f"{'latency':<12} {'trial s':>8} {'vs none':>8} {'latency s':>9} {'setup s':>8} {'% trial':>8} "
        f"{'% summed':>8} {'retried':>7}  other CPU-s"
    )
    for backend, r in results.items():
        vs = f"{r['median_trial_s_minus_none']:+.3f}" if backend != "none" else "-"
        print(
            f"{backend:<12} {r['median_trial_s']:>8.3f} {vs:>8} {r['median_latency_s']:>9.4f} "
            f"{r['median_runner_setup_s']:>8.4f} "
            f"{r['median_latency_pct']:>8.1f} {r['latency_pct_of_summed_trials']:>8.1f} "
            f"{r['trials_with_retries']:>7}  {r['other_processes_cpu_s']}"
        )
    for backend in ("torch", "onnxruntime"):
        print(
            f"target: latency measurement <= {TARGET_PERCENT:.0f}% of the trial with {backend}: "
            f"{'MET' if results[backend]['target_met'] else 'NOT MET'} ({results[backend]['median_latency_pct']:.1f}%)"
        )
    print("figures written to", out)


if __name__ == "__main__":
    main()
