"""Per-trial overhead of prunetuna: a trial's wall time minus a bare PyTorch loop doing the same work.

Runs a search in-process (``run_search``, fresh temporary work dir, default 12 trials). A trial's
wall time is Optuna's datetime_complete - datetime_start: sampling, pruning, cost measurement,
MLflow logging, the Lightning fine-tune and validation. Right after each trial (from the search's
``on_trial`` hook, so outside the trial's timestamps and under the same machine load), the
candidate is rebuilt from the trial's ``sparsity.<layer>`` params (load_workload,
prepare_baseline's cached dense weights, prepare_space, space.apply) and a bare loop is timed on
it: torch seeded with config.seed + trial number, ``finetune.epochs`` epochs of Adam(finetune.lr)
cross-entropy over train_dataloader(), then top-1 over val_dataloader() under torch.no_grad() in
eval mode. Only the loop and the evaluation are timed; pruning is prunetuna's work.

overhead = trial - bare (median of --repeats bare runs). Timing wrappers around the trial's
steps (Optuna suggest and user attrs, space.apply, measure_costs, MLflow calls, Trainer
construction, fine_tune) break the overhead down; they cost microseconds per call.

Target: overhead <= 10% of the trial. Measured and reported, not asserted.

    .venv/bin/python experiments/benchmarks/trial_overhead.py [--n-trials 12] [--repeats 1]
        [--config experiments/mnist.yaml] [--out runs/benchmarks/trial_overhead.json] [--profile FILE]

--profile writes cProfile stats of the search (bare loops excluded) to FILE (read with pstats).
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
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from statistics import mean, median

REPO = Path(__file__).resolve().parents[2]
TARGET_PERCENT = 10.0

os.environ.pop("MLFLOW_TRACKING_URI", None)  # keep MLflow in the temporary work dir

import lightning.pytorch as pl  # noqa: E402
import optuna  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import prunetuna.search._loop as loop  # noqa: E402
from prunetuna.baseline import prepare_baseline  # noqa: E402
from prunetuna.config import load_config  # noqa: E402
from prunetuna.search import StudyTracker, prepare_space, resolve_workspace, run_search  # noqa: E402
from prunetuna.spaces import PruningSpace  # noqa: E402
from prunetuna.workload import load_workload  # noqa: E402

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


def bare_loop(model: torch.nn.Module, datamodule, *, epochs: int, lr: float, seed: int, max_batches: int | None) -> tuple[float, float]:
    """(seconds, top-1) of a plain Adam/cross-entropy fine-tune plus evaluation of ``model`` (trained in place)."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    accuracy = 0.0
    for _ in range(epochs):
        model.train()
        for x, y in itertools.islice(datamodule.train_dataloader(), max_batches):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        model.eval()
        correct = seen = 0
        with torch.no_grad():
            for x, y in datamodule.val_dataloader():
                correct += int((model(x).argmax(dim=1) == y).sum())
                seen += len(y)
        accuracy = correct / max(seen, 1)
    return time.perf_counter() - start, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "experiments" / "mnist.yaml"))
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=1, help="bare runs per candidate (the median is used)")
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "trial_overhead.json"))
    parser.add_argument("--profile", default=None, help="write cProfile stats of the search to this file")
    args = parser.parse_args()

    config = load_config(args.config)
    workdir = Path(tempfile.mkdtemp(prefix="prunetuna-overhead-"))
    workspace = resolve_workspace(config.name, workdir, None, None)

    instrument(optuna.trial.Trial, "suggest_float", "optuna suggest")
    instrument(optuna.trial.Trial, "set_user_attr", "optuna set_user_attr")
    instrument(PruningSpace, "apply", "space.apply")
    instrument(loop, "measure_costs", "measure_costs")
    instrument(StudyTracker, "start_trial", "mlflow start_trial")
    instrument(StudyTracker, "log_epoch", "mlflow log_epoch")
    instrument(StudyTracker, "end_trial", "mlflow end_trial")
    instrument(pl.Trainer, "__init__", "Trainer()")
    instrument(pl.Trainer, "fit", "Trainer.fit")
    instrument(loop, "fine_tune", "fine_tune")  # contains Trainer(), Trainer.fit and log_epoch

    profiler = cProfile.Profile() if args.profile else None
    rows: list[dict] = []
    bench: dict = {}  # the rebuilt workload, made once the baseline is cached

    def on_trial(record, finished: int) -> None:
        if profiler:
            profiler.disable()
        steps = dict(spent)
        spent.clear()
        if record.state != "COMPLETE":
            print(f"trial {record.number}: {record.state} ({record.reason}); skipped")
            return
        if not bench:
            bench["workload"] = workload = load_workload(config)
            prepare_baseline(config, workload, workspace.workdir)  # loads the cached dense weights
            bench["space"] = prepare_space(config, workload)
            bench["study"] = optuna.load_study(study_name=config.name, storage=workspace.storage_url)
        workload, space = bench["workload"], bench["space"]
        trial = next(t for t in bench["study"].get_trials(deepcopy=False) if t.number == record.number)
        vector = {k.removeprefix("sparsity."): round(v, 6) for k, v in trial.params.items() if k.startswith("sparsity.")}
        candidate = space.apply(workload.model, vector, workload.example)
        runs = [
            bare_loop(copy.deepcopy(candidate), workload.datamodule, epochs=config.finetune.epochs, lr=config.finetune.lr,
                      seed=config.seed + trial.number, max_batches=config.finetune.max_batches)
            for _ in range(args.repeats)
        ]
        trial_s = (trial.datetime_complete - trial.datetime_start).total_seconds()
        bare_s = median(s for s, _ in runs)
        rows.append({
            "number": trial.number, "trial_s": trial_s, "bare_s": bare_s, "overhead_s": trial_s - bare_s,
            "overhead_pct": 100 * (trial_s - bare_s) / trial_s,
            "accuracy_trial": record.metrics["accuracy"], "accuracy_bare": runs[0][1],
            "steps_s": steps,
        })
        print(f"trial {trial.number:>3}: trial {trial_s:6.3f} s  bare {bare_s:6.3f} s  overhead {trial_s - bare_s:6.3f} s "
              f"({100 * (trial_s - bare_s) / trial_s:5.1f}%)  accuracy {record.metrics['accuracy']:.4f} / bare {runs[0][1]:.4f}",
              flush=True)
        if profiler:
            profiler.enable()

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    # spent.clear() on start: the baseline's own training (a Trainer.fit) is not a trial's.
    run_search(config, workspace, n_trials=args.n_trials, on_start=lambda outcome: spent.clear(), on_trial=on_trial)
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    total = time.perf_counter() - t0
    shutil.rmtree(workdir, ignore_errors=True)

    def stats(key: str) -> dict[str, float]:
        return stats_of([r[key] for r in rows])

    labels = sorted({k for r in rows for k in r["steps_s"]})
    steps = {k: stats_of([r["steps_s"].get(k, 0.0) for r in rows]) for k in labels}
    # What the trial spends outside fine_tune, and inside fine_tune beyond the bare loop.
    outside = [r["trial_s"] - r["steps_s"].get("fine_tune", 0.0) for r in rows]
    lightning_extra = [r["steps_s"].get("fine_tune", 0.0) - r["steps_s"].get("mlflow log_epoch", 0.0) - r["bare_s"] for r in rows]
    overhead_pct_of_means = 100 * mean(r["overhead_s"] for r in rows) / mean(r["trial_s"] for r in rows)
    figures = {
        "command": f".venv/bin/python experiments/benchmarks/trial_overhead.py --n-trials {args.n_trials} --repeats {args.repeats}",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "torch": torch.__version__},
        # 1-minute load average before and after: well above 1 means another process shared the cores.
        "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "trials": len(rows),
        "search_wall_seconds_incl_bare_loops": round(total, 2),
        "trial_s": stats("trial_s"), "bare_s": stats("bare_s"), "overhead_s": stats("overhead_s"), "overhead_pct": stats("overhead_pct"),
        "overhead_pct_of_mean_times": round(overhead_pct_of_means, 2),
        "steps_s": steps,
        "outside_fine_tune_s": stats_of(outside),
        "fine_tune_beyond_bare_s": stats_of(lightning_extra),
        "per_trial": rows,
        "target": {"max_overhead_pct": TARGET_PERCENT},
        "target_met": median(r["overhead_pct"] for r in rows) <= TARGET_PERCENT,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")

    f = figures
    print(f"\nmachine: {f['machine']['cpus']} CPUs, torch {f['machine']['torch']} with {f['machine']['torch_threads']} threads")
    print(f"load average (1 min) before / after: {f['loadavg_1min_before_after']}")
    print(f"{f['trials']} trials                mean      median")
    for key, label in (("trial_s", "trial wall (s)"), ("bare_s", "bare loop (s)"), ("overhead_s", "overhead (s)"), ("overhead_pct", "overhead (% of trial)")):
        print(f"  {label:<22} {f[key]['mean']:8.3f}  {f[key]['median']:8.3f}")
    print(f"  overhead of mean times: {f['overhead_pct_of_mean_times']:.1f}%")
    print("breakdown per trial (s):           mean    median")
    for label, value in steps.items():
        print(f"  {label:<30} {value['mean']:8.4f}  {value['median']:8.4f}")
    print(f"  {'trial outside fine_tune':<30} {f['outside_fine_tune_s']['mean']:8.4f}  {f['outside_fine_tune_s']['median']:8.4f}")
    print(f"  {'fine_tune - log_epoch - bare':<30} {f['fine_tune_beyond_bare_s']['mean']:8.4f}  {f['fine_tune_beyond_bare_s']['median']:8.4f}")
    print(f"target: overhead <= {TARGET_PERCENT:.0f}% of the trial (median): {'MET' if f['target_met'] else 'NOT MET'}")
    print("figures written to", out)


def stats_of(values: list[float]) -> dict[str, float]:
    return {"mean": round(mean(values), 4), "median": round(median(values), 4)}


if __name__ == "__main__":
    main()
