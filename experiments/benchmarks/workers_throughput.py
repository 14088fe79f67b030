"""Does the search scale out? Trials per hour with 1 and 2 worker processes sharing a PostgreSQL study.

A throwaway PostgreSQL cluster is started on 127.0.0.1 (tests/services.py, shared with tests/search/test_workers.py:
Debian's
initdb and pg_ctl, as the postgres user when run as root); MLflow uses the default SQLite store of one
temporary work dir. All runs use the embedded default (--config, experiments/mnist.yaml) with the
study name changed, and the same work dir, so the dense baseline is trained once, by a 1-trial warm-up
study, and every timed run loads it from the cache. Then, each on a fresh study, in this order:
- 1 worker, 1 thread:   prunetuna search CFG --workdir W --storage PG --threads 1 --n-trials N
- 2 workers, 1 thread:  prunetuna search CFG --workdir W --storage PG --threads 1 --n-trials N --workers 2
  (the launcher prepares the study and starts two processes with --threads 1, OMP_NUM_THREADS=1)
- for reference, 1 worker with 2 threads (what one process gets on this machine): --threads 2
OMP_NUM_THREADS is set to the thread count in every case. Throughput = finished trials (COMPLETE or
PRUNED) / (last trial's datetime_complete - first trial's datetime_start), from the Optuna study; the
command's whole wall time (start-up included) is reported beside it. The PostgreSQL server's CPU-seconds
are reported apart from other processes' (they serve the run). Target: 2 workers >= 1.7x the
trials per hour of 1 worker (both 1 thread). Measured and reported, not asserted.

Waits (polling every 20 s, up to 20 min) until no other experiments/benchmarks script or pytest runs and other
processes use under 15% of one CPU, and records the CPU-seconds other processes used during each run.

    .venv/bin/python experiments/benchmarks/workers_throughput.py [--n-trials 40] [--no-reference]
        [--config experiments/mnist.yaml] [--out runs/benchmarks/workers_throughput.json]
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
from statistics import mean, median

import optuna
import yaml
from _machine import machine
from _search_bench import DEFAULT_CONFIG, REPO, CpuMeter, wait_for_free_machine

sys.path.insert(0, str(REPO / "tests"))
from services import INITDB, POSTGRES_MISSING, throwaway_postgres  # one copy, shared with the tests

TARGET_SPEEDUP = 1.7


def postgres_cpu_seconds() -> float:
    """CPU-seconds of the PostgreSQL server: live processes plus backends the postmaster has reaped."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "postgres":
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                total += sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
        except OSError:
            continue
    return total


def run(config: Path, workdir: Path, storage: str, n_trials: int, threads: int, workers: int) -> dict:
    """One timed ``prunetuna search`` on a fresh study; throughput from the study's trial timestamps."""
    command = [
        sys.executable,
        "-m",
        "prunetuna",
        "search",
        str(config),
        "--workdir",
        str(workdir),
        "--storage",
        storage,
        "--threads",
        str(threads),
        "--n-trials",
        str(n_trials),
    ] + (["--workers", str(workers)] if workers > 1 else [])
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "OMP_NUM_THREADS": str(threads)}
    pg0 = postgres_cpu_seconds()
    with CpuMeter() as meter:
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    postgres_cpu = postgres_cpu_seconds() - pg0
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    name = yaml.safe_load(config.read_text())["name"]
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    surplus = [t for t in trials if str(t.user_attrs.get("fail_reason", "")).startswith("surplus")]
    span = (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)).total_seconds()
    first = min(t.datetime_start for t in finished)
    seconds = [(t.datetime_complete - t.datetime_start).total_seconds() for t in finished]
    return {
        "command": " ".join(command)
        .replace(storage, "PG")
        .replace(str(workdir), "W")
        .replace(str(config), f"CFG[{name}]"),
        "workers": workers,
        "threads": threads,
        "finished": len(finished),
        "surplus": len(surplus),
        "other_states": sorted({t.state.name for t in trials if t not in finished and t not in surplus}),
        "span_s": round(span, 2),
        "trials_per_hour": round(3600 * len(finished) / span, 1),
        "command_wall_s": round(meter.wall_s, 2),
        "trials_per_hour_incl_startup": round(3600 * len(finished) / meter.wall_s, 1),
        "trial_s_mean": round(mean(seconds), 3),
        "trial_s_median": round(median(seconds), 3),
        "postgres_cpu_s": round(postgres_cpu, 1),
        # Other processes' CPU-seconds less the PostgreSQL server's (which serves this run).
        "noise": {**meter.summary(), "other_processes_cpu_s_excl_postgres": round(meter.other_cpu_s - postgres_cpu, 1)},
        "per_trial": [
            {
                "number": t.number,
                "start_s": round((t.datetime_start - first).total_seconds(), 2),
                "seconds": round((t.datetime_complete - t.datetime_start).total_seconds(), 3),
            }
            for t in finished
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--n-trials", type=int, default=40)
    parser.add_argument("--no-reference", action="store_true", help="skip the 1-worker, 2-thread reference run")
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "workers_throughput.json"))
    args = parser.parse_args()
    command = " ".join([".venv/bin/python", "experiments/benchmarks/workers_throughput.py", *sys.argv[1:]])

    base = yaml.safe_load(Path(args.config).read_text())
    workdir = Path(tempfile.mkdtemp(prefix="prunetuna-workers-"))

    def config(name: str) -> Path:
        path = workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**base, "name": f"{base['name']}-{name}"}))
        return path

    waited = wait_for_free_machine()
    runs = {}
    if not INITDB:
        raise SystemExit(POSTGRES_MISSING)
    with throwaway_postgres() as storage:
        warm = run(config("warmup"), workdir, storage, 1, 1, 1)  # trains and caches the dense baseline
        print(f"warm-up (baseline training + 1 trial): {warm['command_wall_s']:.1f} s", flush=True)
        plan = [("1 worker x 1 thread", 1, 1), ("2 workers x 1 thread", 2, 1)] + (
            [] if args.no_reference else [("1 worker x 2 threads", 1, 2)]
        )
        for label, workers, threads in plan:
            runs[label] = run(config(f"w{workers}t{threads}"), workdir, storage, args.n_trials, threads, workers)
            r = runs[label]
            print(
                f"{label}: {r['finished']} trials in {r['span_s']:.1f} s -> {r['trials_per_hour']:.0f} trials/h "
                f"(command {r['command_wall_s']:.1f} s); "
                f"CPU-s by others {r['noise']['other_processes_cpu_s_excl_postgres']}, by PostgreSQL "
                f"{r['postgres_cpu_s']}",
                flush=True,
            )
    shutil.rmtree(workdir, ignore_errors=True)

    one, two = runs["1 worker x 1 thread"], runs["2 workers x 1 thread"]
    speedup = two["trials_per_hour"] / one["trials_per_hour"]
    reference = runs.get("1 worker x 2 threads")
    figures = {
        "command": command,
        "machine": machine(),
        "waited_for_free_machine": waited,
        "warmup": warm,
        "runs": runs,
        "speedup_2_vs_1_worker": round(speedup, 3),
        "speedup_2_vs_1_worker_incl_startup": round(
            two["trials_per_hour_incl_startup"] / one["trials_per_hour_incl_startup"], 3
        ),
        "speedup_2_workers_vs_1_worker_2_threads": round(two["trials_per_hour"] / reference["trials_per_hour"], 3)
        if reference
        else None,
        "target": {"min_speedup": TARGET_SPEEDUP},
        "target_met": speedup >= TARGET_SPEEDUP,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")

    m = figures["machine"]
    print(
        f"\nmachine: {m['cpus']} CPUs ({m['processor']}), torch {m['torch']}; PostgreSQL study, SQLite MLflow, "
        f"{args.n_trials} trials per run"
    )
    print(
        f"{'run':<22} {'trials':>6} {'span s':>7} {'trials/h':>9} {'trial s':>8} {'cmd s':>6} {'/h incl. start':>14} "
        f"{'others CPU-s':>12} {'PG CPU-s':>8}"
    )
    for label, r in runs.items():
        print(
            f"{label:<22} {r['finished']:>6} {r['span_s']:>7.1f} {r['trials_per_hour']:>9.0f} "
            f"{r['trial_s_mean']:>8.2f} "
            f"{r['command_wall_s']:>6.1f} {r['trials_per_hour_incl_startup']:>14.0f} "
            f"{r['noise']['other_processes_cpu_s_excl_postgres']:>12} {r['postgres_cpu_s']:>8}"
        )
    print(
        f"2 workers vs 1 (1 thread each): {speedup:.2f}x (incl. start-up "
        f"{figures['speedup_2_vs_1_worker_incl_startup']:.2f}x)"
        + (
            f"; vs 1 worker with 2 threads: {figures['speedup_2_workers_vs_1_worker_2_threads']:.2f}x"
            if reference
            else ""
        )
    )
    print(f"target: >= {TARGET_SPEEDUP}x with 2 workers: {'MET' if figures['target_met'] else 'NOT MET'}")
    print("figures written to", out)


if __name__ == "__main__":
    main()
