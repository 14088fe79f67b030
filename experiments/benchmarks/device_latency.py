"""The device agent against local onnxruntime on the same machine, and the latency cache's hit rate.

1. Agreement and overhead. 30 candidates of the embedded model (tiny-resnet, random weights,
   torch.manual_seed(0)): random per-dimension ratios on the default grid (max_sparsity 0.8, step
   0.05, seeded). Each is measured with the ``onnxruntime`` backend in this process and with the
   ``remote`` backend against ``prunetuna device serve`` started on loopback (token set), the two
   interleaved, batch 1, one thread, --warmup/--repeats, max_ci 0.05. Figures: the median over
   candidates of remote / local median latency (target: within 10% of 1), and the agent's overhead
   per measurement = median of (remote wall time - local wall time): both export to ONNX and build a
   session; the remote one adds HTTP, the upload, the agent's model check and its JSON answer.
2. Cache hit rate. ``experiments/mnist.yaml`` (TPE, 30 trials) measuring on the agent, fine-tunes cut
   to --finetune-batches batches (the hit rate depends on the sampled shapes, not on the fine-tune),
   with and without ``pruning.round_to: 8``: the share of trials whose latency came from the cache.

    .venv/bin/python experiments/benchmarks/device_latency.py [--warmup 10] [--repeats 100] [--trials 30]
        [--finetune-batches 5] [--out runs/benchmarks/device_latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from _machine import Noise, busy_cpu_seconds, machine, own_cpu_seconds, wait_idle

from prunetuna.config import parse_config
from prunetuna.objectives import LatencySettings, measure_latency
from prunetuna.spaces import PruningSpace
from prunetuna.workload import BUILTIN_MODELS

REPO = Path(__file__).resolve().parents[2]
TARGET = 0.10


class Load(Noise):
    """Noise, waiting at most ``wait_s`` for idle CPUs (a shared machine may never be idle): the load is recorded."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s

    def __enter__(self) -> Load:
        self.idle = wait_idle(timeout=self.wait_s)
        self.busy0, self.own0, self.t0 = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        return self


def start_agent(log: Path, token: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PRUNETUNA_DEVICE_TOKEN": token, "PYTHONPATH": str(REPO)}
    handle = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "prunetuna", "device", "serve", "--port", "0", "--quiet"],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while not (found := re.search(r"device agent on (http://\S+)", log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the agent did not start: {log.read_text()}")
        time.sleep(0.1)
    return process, found.group(1)


def agreement(url: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    model = BUILTIN_MODELS["tiny-resnet"]().eval()
    example = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    space = PruningSpace.from_model(model, example, max_sparsity=0.8, step=0.05)
    rng = random.Random(0)
    common = {
        "batch_size": 1,
        "threads": 1,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "max_ci": 0.05,
        "attempts": 3,
        "cache": False,
    }
    local = LatencySettings(backend="onnxruntime", **common)
    remote = LatencySettings(backend="remote", url=url, **common)
    rows = []
    for i in range(args.candidates):
        vector = {name: rng.choice([round(k * 0.05, 2) for k in range(17)]) for name in space.names}
        pruned = space.apply(vector, structure_only=True)
        first, second = (local, remote) if i % 2 == 0 else (remote, local)  # interleaved: drift hits both alike
        a, b = measure_latency(pruned, example, first), measure_latency(pruned, example, second)
        here, there = (a, b) if first is local else (b, a)
        rows.append(
            {
                "local_ms": round(here.median_ms, 5),
                "remote_ms": round(there.median_ms, 5),
                "ratio": round(there.median_ms / here.median_ms, 4),
                "local_s": round(here.seconds, 4),
                "remote_s": round(there.seconds, 4),
                "local_ci": round(here.ci, 4),
                "remote_ci": round(there.ci, 4),
            }
        )
    ratios = [r["ratio"] for r in rows]
    overhead = [r["remote_s"] - r["local_s"] for r in rows]
    return {
        "candidates": rows,
        "median_ratio": round(statistics.median(ratios), 4),
        "ratio_range": [min(ratios), max(ratios)],
        "within_target": abs(statistics.median(ratios) - 1) <= TARGET,
        "overhead_s_median": round(statistics.median(overhead), 4),
        "local_s_median": round(statistics.median(r["local_s"] for r in rows), 4),
        "remote_s_median": round(statistics.median(r["remote_s"] for r in rows), 4),
    }


def hit_rate(url: str, workdir: Path, round_to: int | None, args: argparse.Namespace) -> dict:
    from prunetuna.search import run_search
    from prunetuna.store import resolve_workspace

    data = yaml.safe_load((REPO / "experiments" / "mnist.yaml").read_text())
    data["name"] = f"device-cache-round{round_to or 'none'}"
    data["pruning"]["round_to"] = round_to
    data["finetune"]["max_batches"] = args.finetune_batches
    data["search"]["n_trials"] = args.trials
    data["latency"] = {"backend": "remote", "url": url, "warmup": args.warmup, "repeats": args.repeats}
    config = parse_config(data)
    start = time.perf_counter()
    run_search(config, resolve_workspace(config.name, workdir, None, None))
    import optuna

    study = optuna.load_study(study_name=config.name, storage=f"sqlite:///{workdir / 'optuna.db'}")
    cached = [t.user_attrs["metrics"].get("latency_cached") for t in study.trials if "metrics" in t.user_attrs]
    hits = sum(c == 1.0 for c in cached)
    return {
        "round_to": round_to,
        "trials": len(cached),
        "hits": hits,
        "hit_rate": round(hits / max(1, len(cached)), 3),
        "architectures_measured": sum(k.startswith("latency_cache:") for k in study.user_attrs),
        "search_s": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--finetune-batches", type=int, default=5)
    parser.add_argument("--wait-idle", type=float, default=60.0, help="seconds to wait for idle CPUs before measuring")
    parser.add_argument("--skip-search", action="store_true", help="only the agreement and overhead")
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "device_latency.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    work = out.parent / "device_latency"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    token = secrets.token_urlsafe(24)
    os.environ["PRUNETUNA_DEVICE_TOKEN"] = token
    agent, url = start_agent(work / "agent.log", token)
    try:
        with Load(args.wait_idle) as noise:
            figures = {"agreement": agreement(url, args)}
        figures["agreement"]["noise"] = noise.summary()
        a = figures["agreement"]
        print(
            f"agreement over {args.candidates} candidates: median remote/local {a['median_ratio']:.3f} (range "
            f"{a['ratio_range'][0]:.3f}-"
            f"{a['ratio_range'][1]:.3f}; target within {TARGET:.0%}: {'met' if a['within_target'] else 'MISSED'}); "
            "per measurement "
            f"local {a['local_s_median']:.3f} s, remote {a['remote_s_median']:.3f} s, overhead "
            f"{a['overhead_s_median'] * 1e3:.0f} ms; "
            f"{noise.line()}",
            flush=True,
        )
        if not args.skip_search:
            figures["cache"] = [hit_rate(url, work / "search", round_to, args) for round_to in (None, 8)]
            for c in figures["cache"]:
                print(
                    f"cache, {c['trials']}-trial TPE search, round_to {c['round_to']}: {c['hits']} hits "
                    f"({c['hit_rate']:.0%}), "
                    f"{c['architectures_measured']} architectures measured, {c['search_s']} s",
                    flush=True,
                )
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    figures.update(
        command=f".venv/bin/python experiments/benchmarks/device_latency.py --warmup {args.warmup} --repeats "
        f"{args.repeats} "
        f"--trials {args.trials} --finetune-batches {args.finetune_batches}",
        machine=machine(),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
