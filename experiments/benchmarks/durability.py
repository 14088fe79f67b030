"""What the durability guarantee costs: each finished trial's durable record, and the reconcile every start runs.

Runs a search in-process (``run_search``, fresh temporary work dir, the embedded default
``experiments/mnist.yaml``, 30 trials) with ``TrialStore.write`` timed: the record (metrics, tags,
params, per-epoch accuracy) and, for a COMPLETE trial, the fine-tuned weights and manifest written to
``<workdir>/trials/<number>/`` by temp file and rename, on the trial's path before Optuna is told.
Share = median write time / median trial wall time (Optuna's start to complete).

Then the reconcile a start of ``prunetuna search`` runs on that complete study (``reconcile`` with a
fresh tracker, as a new process would): median and max over --repeats, and once with every trial's
``synced`` marker removed (the worst case for a complete study: every run's ``model/`` listed).

Targets: write <= 2% of a trial; reconcile of a complete 30-trial study <= 1 s. Measured, not asserted.

    .venv/bin/python experiments/benchmarks/durability.py [--config experiments/mnist.yaml] [--n-trials 30]
        [--repeats 5] [--out runs/benchmarks/durability.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[2]
os.environ.pop("MLFLOW_TRACKING_URI", None)  # keep MLflow in the temporary work dir
sys.path.insert(0, str(REPO))

from _machine import machine

from prunetuna.config import load_config
from prunetuna.search import run_search
from prunetuna.store import (
    StudyTracker,
    TrialStore,
    load_study,
    reconcile,
    resolve_workspace,
)


def timed_writes() -> list[float]:
    """Wrap TrialStore.write; returns the list the durations go to."""
    seconds: list[float] = []
    write = TrialStore.write

    def timed(self, *args, **kwargs):  # noqa: ANN001, ANN202
        start = time.perf_counter()
        write(self, *args, **kwargs)
        seconds.append(time.perf_counter() - start)

    TrialStore.write = timed
    return seconds


def time_reconcile(workspace, name: str, repeats: int, *, unsync: bool) -> list[float]:  # noqa: ANN001
    study = load_study(workspace, name)
    store = TrialStore(workspace.workdir)
    times = []
    for _ in range(repeats):
        if unsync:
            for marker in store.root.glob("*/synced"):
                marker.unlink()
        tracker = StudyTracker(workspace, name)  # what a new process has
        tracker.connect(create=False)
        start = time.perf_counter()
        result = reconcile(study, tracker, store)
        times.append(time.perf_counter() - start)
        assert result is not None and not result.repaired and not result.failed, (
            result
        )  # a complete study needs nothing
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "experiments" / "mnist.yaml"))
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "durability.json"))
    args = parser.parse_args()
    config = load_config(args.config)
    writes = timed_writes()
    with tempfile.TemporaryDirectory(prefix="prunetuna-durability-") as folder:
        workspace = resolve_workspace(config.name, Path(folder) / "w", None, None)
        start = time.perf_counter()
        run_search(config, workspace, n_trials=args.n_trials)
        search_s = time.perf_counter() - start
        study = load_study(workspace, config.name)
        trials = [
            (t.datetime_complete - t.datetime_start).total_seconds()
            for t in study.trials
            if t.state.name in ("COMPLETE", "PRUNED")
        ]
        record_bytes = sum(f.stat().st_size for f in (workspace.workdir / "trials").rglob("*") if f.is_file()) / max(
            1, len(trials)
        )
        synced = time_reconcile(workspace, config.name, args.repeats, unsync=False)
        unsynced = time_reconcile(workspace, config.name, 1, unsync=True)
    figures = {
        "machine": machine(),
        "config": args.config,
        "n_trials": len(trials),
        "search_s": search_s,
        "trial_median_s": median(trials),
        "write_median_s": median(writes),
        "write_max_s": max(writes),
        "write_share_percent": 100 * median(writes) / median(trials),
        "record_bytes_per_trial": record_bytes,
        "reconcile_median_s": median(synced),
        "reconcile_max_s": max(synced),
        "reconcile_unsynced_s": unsynced[0],
        "targets": {"write_share_percent": 2.0, "reconcile_s": 1.0},
    }
    print(
        f"{len(trials)} trials, {median(trials):.3f} s each (median); durable record {1000 * median(writes):.1f} ms "
        f"(median, max {1000 * max(writes):.1f} ms, {record_bytes / 1024:.0f} KiB): "
        f"{figures['write_share_percent']:.2f}% of a trial "
        f"(target 2%)"
    )
    print(
        f"reconcile of the complete study at start: {median(synced):.3f} s (median of {args.repeats}, max "
        f"{max(synced):.3f} s); "
        f"with no synced markers: {unsynced[0]:.3f} s (target 1 s)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
