"""Per-trial overhead of prunetuna: a trial's wall time minus a bare PyTorch loop doing the same work.

Runs a search in-process (``run_search``, fresh temporary work dir, default 12 trials). A trial's
wall time is Optuna's datetime_complete - datetime_start: sampling, pruning, cost measurement,
MLflow logging, the Lightning fine-tune and validation.

The bare loop: the candidate is rebuilt from the trial's ``sparsity.<layer>`` params
(load_workload, prepare_baseline's cached dense weights, prepare_space, space.apply; not timed),
then torch is seeded with config.seed + trial number and ``finetune.epochs`` epochs of
Adam(finetune.lr) cross-entropy run over train_dataloader() with ClassifierModule's per-step
cosine LR decay, then top-1 over val_dataloader() under torch.no_grad() in eval mode. Only the
loop and the evaluation are timed. It reproduces the trial's weights, so its accuracy must equal
the trial's (a mismatch is reported: the two loops would no longer do the same work).

It is timed two ways:
- cold (the reference): after the search, in --repeats fresh worker processes (this script with
  --bare-worker), each warmed up by one loop on the dense model as the search is by the baseline,
  then one loop per candidate. As in the search, each candidate's layer shapes are new to the
  process, and the first pass over new shapes costs extra (oneDNN kernels, allocator): a trial
  pays that too, so the reference must.
- warm: in the search process right after each trial (its ``on_trial`` hook), on shapes the trial
  has just run; a lower bound, printed beside.

overhead = trial - cold bare (median over repeats). Timing wrappers around the trial's steps
(Optuna suggest and user attrs, space.apply, measure_costs, MLflow calls, Trainer construction
and fit, fine_tune) break the overhead down; they cost microseconds per call.

Target: overhead <= 10% of the trial (median over trials). Measured and reported, not asserted.

    .venv/bin/python experiments/benchmarks/trial_overhead.py [--n-trials 12] [--repeats 3]
        [--config experiments/mnist.yaml] [--out runs/benchmarks/trial_overhead.json] [--profile FILE]

--profile writes cProfile stats of the search (the warm bare loops excluded) to FILE (pstats).
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import functools
import itertools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from statistics import mean, median

REPO = Path(__file__).resolve().parents[2]
TARGET_PERCENT = 10.0

os.environ.pop("MLFLOW_TRACKING_URI", None)  # keep MLflow in the temporary work dir

import lightning.pytorch as pl
import optuna
import torch
from _machine import busy_cpu_seconds, cpu_model
from torch.nn import functional as F

from prunetuna.config import ExperimentConfig, load_config, parse_config
from prunetuna.search import SearchEvents, calibration_batches, prepare_space, run_search
from prunetuna.spaces import PruningSpace
from prunetuna.store import StudyTracker, resolve_workspace
from prunetuna.training import recalibrate_batchnorm
from prunetuna.workload import (
    Workload,
    load_workload,
    prepare_baseline,
)


def bare_loop(
    model: torch.nn.Module, datamodule, *, epochs: int, lr: float, seed: int, max_batches: int | None
) -> tuple[float, float]:
    """(seconds, top-1) of a plain Adam/cross-entropy fine-tune plus evaluation of ``model`` (trained in place)."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # ClassifierModule's per-step cosine decay over all steps, so the bare loop trains the same weights.
    steps = epochs * min(len(datamodule.train_dataloader()), max_batches or sys.maxsize)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    accuracy = 0.0
    for _ in range(epochs):
        model.train()
        for x, y in itertools.islice(datamodule.train_dataloader(), max_batches):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        correct = seen = 0
        with torch.no_grad():
            for x, y in datamodule.val_dataloader():
                correct += int((model(x).argmax(dim=1) == y).sum())
                seen += len(y)
        accuracy = correct / max(seen, 1)
    return time.perf_counter() - start, accuracy


class Bench:
    """The dense model with the search's cached weights and its space: rebuilds and times candidates."""

    def __init__(self, config: ExperimentConfig, workdir: Path) -> None:
        self.config = config
        self.workload: Workload = load_workload(config)
        prepare_baseline(config, self.workload, workdir)  # loads the cached dense weights
        self.space = prepare_space(config, self.workload)
        # A trial recalibrates BatchNorm on these batches before fine-tuning: the bare loop starts from there too.
        self.batches = calibration_batches(self.workload, config.pruning.calibration_batches)

    def time_bare(
        self, params: dict[str, float], number: int, model: torch.nn.Module | None = None
    ) -> tuple[float, float]:
        vector = {k.removeprefix("sparsity."): round(v, 6) for k, v in params.items() if k.startswith("sparsity.")}
        if model is not None:
            candidate = model
        else:
            candidate = self.space.apply(vector, self.batches)
            recalibrate_batchnorm(candidate, [x for x, _ in self.batches])
        ft = self.config.finetune
        return bare_loop(
            candidate,
            self.workload.datamodule,
            epochs=ft.epochs,
            lr=ft.lr,
            seed=self.config.seed + number,
            max_batches=ft.max_batches,
        )


def bare_worker(spec_path: str) -> None:
    """--bare-worker: time one cold bare loop per trial listed in the spec file; print JSON."""
    spec = json.loads(Path(spec_path).read_text())
    bench = Bench(parse_config(spec["config"], "spec"), Path(spec["workdir"]))
    bench.time_bare({}, 0, model=copy.deepcopy(bench.workload.model))  # process warm-up, as the baseline is in a search
    print(json.dumps({str(t["number"]): bench.time_bare(t["params"], t["number"]) for t in spec["trials"]}))


# Seconds spent in each instrumented step during the current trial; reset after every trial.
spent: dict[str, float] = defaultdict(float)


def instrument(owner: object, attr: str, label: str) -> None:
    """Replace ``owner.attr`` by a wrapper that adds its wall time to ``spent[label]``."""
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - start

    setattr(owner, attr, wrapper)


def stats_of(values: list[float]) -> dict[str, float]:
    return {"mean": round(mean(values), 4), "median": round(median(values), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "experiments" / "mnist.yaml"))
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument(
        "--repeats", type=int, default=3, help="cold bare runs per candidate, one worker process each (median used)"
    )
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "trial_overhead.json"))
    parser.add_argument("--profile", default=None, help="write cProfile stats of the search to this file")
    parser.add_argument(
        "--core",
        action="store_true",
        help="without the per-trial extras (latency.every_trial false, pruning.calibration_batches 0)",
    )
    parser.add_argument("--bare-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_worker:
        return bare_worker(args.bare_worker)

    config = load_config(args.config)
    if args.core:
        data = config.model_dump(mode="json")
        data["latency"]["every_trial"] = False
        data["pruning"]["calibration_batches"] = 0
        config = parse_config(data, args.config)
    workdir = Path(tempfile.mkdtemp(prefix="prunetuna-overhead-"))
    workspace = resolve_workspace(config.name, workdir, None, None)

    instrument(optuna.trial.Trial, "suggest_float", "optuna suggest")
    instrument(optuna.trial.Trial, "set_user_attr", "optuna set_user_attr")
    instrument(PruningSpace, "apply", "space.apply")
    instrument(StudyTracker, "start_trial", "mlflow start_trial")
    instrument(StudyTracker, "log_epoch", "mlflow log_epoch")
    instrument(StudyTracker, "end_trial", "mlflow end_trial")
    instrument(pl.Trainer, "__init__", "Trainer()")
    instrument(pl.Trainer, "fit", "Trainer.fit")
    # The trial's own steps come with its TrialEvent (StepTimer): measure (FLOPs, params, size, latency),
    # recalibrate (BN), evaluate (accuracy_pruned), fine_tune (contains Trainer(), Trainer.fit and log_epoch).
    step_labels = {
        "measure": "measure_costs (FLOPs, params, size, latency)",
        "recalibrate": "BN recalibration",
        "evaluate": "accuracy_pruned evaluation",
        "fine_tune": "fine_tune",
    }

    profiler = cProfile.Profile() if args.profile else None
    rows: list[dict] = []
    state: dict = {}  # the in-process Bench and study, made once the baseline is cached

    def on_trial(record, finished: int) -> None:
        if profiler:
            profiler.disable()
        steps = {**dict(spent), **{step_labels[k]: v for k, v in record.steps.items() if k in step_labels}}
        spent.clear()
        if record.state == "COMPLETE":
            if not state:
                state["bench"] = Bench(config, workdir)
                state["study"] = optuna.load_study(study_name=config.name, storage=workspace.storage_url)
            trial = next(t for t in state["study"].get_trials(deepcopy=False) if t.number == record.number)
            warm_s, warm_acc = state["bench"].time_bare(trial.params, trial.number)
            rows.append(
                {
                    "number": trial.number,
                    "params": trial.params,
                    "trial_s": (trial.datetime_complete - trial.datetime_start).total_seconds(),
                    "bare_warm_s": warm_s,
                    "accuracy_trial": record.metrics["accuracy"],
                    "accuracy_bare_warm": warm_acc,
                    "steps_s": steps,
                }
            )
            print(f"trial {trial.number:>3}: {rows[-1]['trial_s']:.3f} s (warm bare loop {warm_s:.3f} s)", flush=True)
        else:
            print(f"trial {record.number}: {record.state} ({record.reason}); skipped")
        if profiler:
            profiler.enable()

    busy0, own0 = busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()

    # spent.clear() on start: the baseline's own training (a Trainer.fit) is not a trial's.
    class Steps(SearchEvents):
        def started(self, outcome) -> None:  # noqa: ANN001
            spent.clear()

        def trial_finished(self, event, finished: int) -> None:  # noqa: ANN001
            on_trial(event, finished)

    run_search(config, workspace, n_trials=args.n_trials, events=Steps())
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    search_s = time.perf_counter() - t0
    busy1, own1 = busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)

    # Cold bare loops: one worker process per repeat, each timing every candidate once.
    spec = workdir / "bare.json"
    spec.write_text(
        json.dumps(
            {
                "config": config.model_dump(mode="json"),
                "workdir": str(workdir),
                "trials": [{"number": r["number"], "params": r["params"]} for r in rows],
            }
        )
    )
    worker = [sys.executable, str(Path(__file__).resolve()), "--bare-worker", str(spec)]
    busy2, kids0 = busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    cold = [
        json.loads(subprocess.run(worker, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        for _ in range(args.repeats)
    ]
    busy3, kids1 = busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(workdir, ignore_errors=True)

    for r in rows:
        runs = [c[str(r["number"])] for c in cold]
        r["bare_s"] = median(s for s, _ in runs)
        r["bare_cold_runs_s"] = [s for s, _ in runs]
        r["accuracy_bare"] = runs[0][1]
        r["overhead_s"] = r["trial_s"] - r["bare_s"]
        r["overhead_pct"] = 100 * r["overhead_s"] / r["trial_s"]
        r["overhead_vs_warm_pct"] = 100 * (r["trial_s"] - r["bare_warm_s"]) / r["trial_s"]
        print(
            f"trial {r['number']:>3}: trial {r['trial_s']:6.3f} s  bare {r['bare_s']:6.3f} s (warm "
            f"{r['bare_warm_s']:.3f})  "
            f"overhead {r['overhead_s']:6.3f} s ({r['overhead_pct']:5.1f}%)  accuracy {r['accuracy_trial']:.4f} / "
            f"bare {r['accuracy_bare']:.4f}"
        )

    def stats(key: str) -> dict[str, float]:
        return stats_of([r[key] for r in rows])

    labels = sorted({k for r in rows for k in r["steps_s"]})
    steps = {k: stats_of([r["steps_s"].get(k, 0.0) for r in rows]) for k in labels}
    own_cpu = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
    kids_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    figures = {
        "command": f".venv/bin/python experiments/benchmarks/trial_overhead.py --n-trials {args.n_trials} --repeats "
        f"{args.repeats}",
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "processor": cpu_model(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        # CPU-seconds used by other processes on the machine while this ran (noise; ~0 is a quiet machine).
        "other_processes_cpu_seconds": {
            "search": round(busy1 - busy0 - own_cpu, 1) if busy0 is not None else None,
            "cold_bare_workers": round(busy3 - busy2 - kids_cpu, 1) if busy2 is not None else None,
        },
        "search_wall_seconds_incl_warm_bare_loops": round(search_s, 2),
        "trials": len(rows),
        "trial_s": stats("trial_s"),
        "bare_s": stats("bare_s"),
        "bare_warm_s": stats("bare_warm_s"),
        "overhead_s": stats("overhead_s"),
        "overhead_pct": stats("overhead_pct"),
        "overhead_vs_warm_pct": stats("overhead_vs_warm_pct"),
        "overhead_pct_of_mean_times": round(
            100 * mean(r["overhead_s"] for r in rows) / mean(r["trial_s"] for r in rows), 2
        ),
        "steps_s": steps,
        # The trial outside fine_tune, and fine_tune beyond the cold bare loop (Lightning, minus MLflow's log_epoch).
        "outside_fine_tune_s": stats_of([r["trial_s"] - r["steps_s"].get("fine_tune", 0.0) for r in rows]),
        "fine_tune_beyond_bare_s": stats_of(
            [r["steps_s"].get("fine_tune", 0.0) - r["steps_s"].get("mlflow log_epoch", 0.0) - r["bare_s"] for r in rows]
        ),
        "accuracy_mismatches": sum(
            abs(r["accuracy_trial"] - a) > 1e-9 for r in rows for a in (r["accuracy_bare"], r["accuracy_bare_warm"])
        ),
        "per_trial": rows,
        "target": {"max_overhead_pct": TARGET_PERCENT},
        "target_met": median(r["overhead_pct"] for r in rows) <= TARGET_PERCENT,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")

    f = figures
    print(
        f"\nmachine: {f['machine']['cpus']} CPUs ({f['machine']['processor']}), torch {f['machine']['torch']} with "
        f"{f['machine']['torch_threads']} threads"
    )
    print(
        f"CPU-seconds used by other processes: during the search {f['other_processes_cpu_seconds']['search']}, "
        f"during the cold bare loops {f['other_processes_cpu_seconds']['cold_bare_workers']}"
    )
    print(f"{f['trials']} trials, bare = median of {args.repeats} cold runs      mean    median")
    for key, label in (
        ("trial_s", "trial wall (s)"),
        ("bare_s", "bare loop, cold (s)"),
        ("bare_warm_s", "bare loop, warm (s)"),
        ("overhead_s", "overhead (s)"),
        ("overhead_pct", "overhead (% of trial)"),
        ("overhead_vs_warm_pct", "overhead vs warm bare (%)"),
    ):
        print(f"  {label:<40} {f[key]['mean']:8.3f}  {f[key]['median']:8.3f}")
    print(f"  overhead of the mean times: {f['overhead_pct_of_mean_times']:.1f}%")
    print("breakdown per trial (s)                        mean    median")
    for label, value in steps.items():
        print(f"  {label:<40} {value['mean']:8.4f}  {value['median']:8.4f}")
    print(
        f"  {'trial outside fine_tune':<40} {f['outside_fine_tune_s']['mean']:8.4f}  "
        f"{f['outside_fine_tune_s']['median']:8.4f}"
    )
    print(
        f"  {'fine_tune - log_epoch - cold bare':<40} {f['fine_tune_beyond_bare_s']['mean']:8.4f}  "
        f"{f['fine_tune_beyond_bare_s']['median']:8.4f}"
    )
    print(f"bare-loop accuracies that differ from the trial's: {f['accuracy_mismatches']} (0 expected)")
    print(f"target: overhead <= {TARGET_PERCENT:.0f}% of the trial (median): {'MET' if f['target_met'] else 'NOT MET'}")
    print("figures written to", out)


if __name__ == "__main__":
    main()
