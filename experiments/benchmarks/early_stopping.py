"""What does multi-objective early stopping save, and what does it cost on the Pareto front?

The embedded default (--config, experiments/mnist.yaml) with finetune.epochs 3 (so that there is
something to stop), objectives (accuracy, flops), no budget, TPE, N trials (default 24) per seed
(default 0): once with search.pruner none and once with search.pruner dominated (min_dominating
--min-dominating, default 3), in-process (``run_search``) in one temporary work dir per seed (shared
dense baseline). Reported per run:
- epochs trained: len(user_attrs epoch_accuracy) where kept (the dominated runs), else finetune.epochs
  per COMPLETE trial (pruner none keeps no per-epoch record);
- fine-tune seconds: wall time inside ``fine_tune`` (a timing wrapper on the search loop's import),
  and the trials' whole wall time (Optuna datetime_complete - datetime_start);
- Pareto hypervolume of (1 - accuracy, flops_ratio) over COMPLETE trials, reference (1, 1).
Compute saved = 1 - dominated / none; hypervolume lost = none - dominated (and in %). One seed
compares two different TPE trajectories (they part at the first stopped trial), so the hypervolume
difference carries sampling noise; use more --seeds to see its size. Measured, not asserted.

Waits (polling every 20 s, up to 20 min) until no other experiments/benchmarks script or pytest runs and other
processes use under 15% of one CPU, and records the CPU-seconds other processes used.

    .venv/bin/python experiments/benchmarks/early_stopping.py [--n-trials 24] [--seeds 0] [--epochs 3]
        [--min-dominating 3] [--config experiments/mnist.yaml] [--out runs/benchmarks/early_stopping.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

from _machine import machine
from _search_bench import DEFAULT_CONFIG, REPO, CpuMeter, accuracy_flops_hv, wait_for_free_machine, with_changes

os.environ.pop("MLFLOW_TRACKING_URI", None)  # keep MLflow in the temporary work dir

from prunetuna.config import load_config
from prunetuna.results import build_report
from prunetuna.search import SearchEvents, TrialEvent, run_search
from prunetuna.store import load_study, resolve_workspace

finetune_seconds: list[float] = []


class FineTuneTimes(SearchEvents):
    """Seconds each trial spent in its fine-tune (the step timer's ``fine_tune``; the baseline's training is not a
    trial's)."""

    def trial_finished(self, event: TrialEvent, finished: int) -> None:
        finetune_seconds.append(event.steps.get("fine_tune", 0.0))


def measure(config, workdir: Path) -> dict:  # noqa: ANN001
    workspace = resolve_workspace(config.name, workdir, None, None)
    finetune_seconds.clear()
    start = time.perf_counter()
    run_search(config, workspace, events=FineTuneTimes())
    wall = time.perf_counter() - start
    study = load_study(workspace, config.name)
    trials = study.get_trials(deepcopy=False)
    items = build_report(study).as_json()["trials"]
    epochs = [
        len(t.user_attrs["epoch_accuracy"]) if "epoch_accuracy" in t.user_attrs else config.finetune.epochs
        for t in trials
        if t.state.name in ("COMPLETE", "PRUNED")
    ]
    stopped = [t for t in trials if t.state.name == "PRUNED"]
    return {
        "complete": sum(t.state.name == "COMPLETE" for t in trials),
        "stopped": len(stopped),
        "stopped_after_epoch": sorted(len(t.user_attrs.get("epoch_accuracy", [])) for t in stopped),
        "epochs_trained": sum(epochs),
        "finetune_s": round(sum(finetune_seconds), 2),
        "trial_s": round(
            sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials if t.datetime_complete), 2
        ),
        "search_wall_s": round(wall, 2),
        "hypervolume": round(accuracy_flops_hv(items), 5),
        "best_accuracy": max(i["metrics"]["accuracy"] for i in items if i["state"] == "COMPLETE"),
        "pareto": sorted(
            (round(i["metrics"]["flops_ratio"], 3), i["metrics"]["accuracy"]) for i in items if i["pareto"]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--n-trials", type=int, default=24)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--min-dominating", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "early_stopping.json"))
    args = parser.parse_args()
    command = " ".join([".venv/bin/python", "experiments/benchmarks/early_stopping.py", *sys.argv[1:]])

    base = load_config(args.config)
    root = Path(tempfile.mkdtemp(prefix="prunetuna-es-"))
    waited = wait_for_free_machine()
    runs: dict[str, dict] = {}
    with CpuMeter() as meter:
        for seed in args.seeds:
            for pruner in ("none", "dominated"):
                config = with_changes(
                    base,
                    name=f"{base.name}-es-{pruner}-s{seed}",
                    seed=seed,
                    constraints={},
                    finetune={"epochs": args.epochs},
                    search={
                        "sampler": "tpe",
                        "n_trials": args.n_trials,
                        "pruner": pruner,
                        "min_dominating": args.min_dominating,
                    },
                )
                runs[f"{pruner}/{seed}"] = r = measure(config, root / f"seed{seed}")
                print(
                    f"seed {seed} pruner {pruner:<9}: {r['complete']} complete, {r['stopped']} stopped "
                    f"{r['stopped_after_epoch']}, "
                    f"{r['epochs_trained']} epochs, fine-tune {r['finetune_s']:.1f} s, HV {r['hypervolume']:.4f}",
                    flush=True,
                )
    shutil.rmtree(root, ignore_errors=True)

    def total(pruner: str, key: str) -> float:
        return sum(runs[f"{pruner}/{s}"][key] for s in args.seeds)

    hv = {p: mean(runs[f"{p}/{s}"]["hypervolume"] for s in args.seeds) for p in ("none", "dominated")}
    summary = {
        "epochs_saved_pct": round(
            100 * (1 - total("dominated", "epochs_trained") / total("none", "epochs_trained")), 1
        ),
        "finetune_s_saved_pct": round(100 * (1 - total("dominated", "finetune_s") / total("none", "finetune_s")), 1),
        "trial_s_saved_pct": round(100 * (1 - total("dominated", "trial_s") / total("none", "trial_s")), 1),
        "hypervolume_mean": {p: round(v, 5) for p, v in hv.items()},
        "hypervolume_lost": round(hv["none"] - hv["dominated"], 5),
        "hypervolume_lost_pct": round(100 * (hv["none"] - hv["dominated"]) / hv["none"], 2),
        "hypervolume_lost_pct_per_seed": [
            round(
                100
                * (runs[f"none/{s}"]["hypervolume"] - runs[f"dominated/{s}"]["hypervolume"])
                / runs[f"none/{s}"]["hypervolume"],
                2,
            )
            for s in args.seeds
        ],
    }
    figures = {
        "command": command,
        "machine": machine(),
        "waited_for_free_machine": waited,
        "noise": meter.summary(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "runs": runs,
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
    print(
        f"TPE, {args.n_trials} trials, finetune.epochs {args.epochs}, no budget, seeds {args.seeds}; dominated: "
        f"min_dominating {args.min_dominating}"
    )
    print(
        f"{'run':<14} {'complete':>8} {'stopped':>7} {'epochs':>6} {'fine-tune s':>11} {'trials s':>8} {'HV':>7} "
        f"{'best acc':>8}"
    )
    for label, r in runs.items():
        print(
            f"{label:<14} {r['complete']:>8} {r['stopped']:>7} {r['epochs_trained']:>6} {r['finetune_s']:>11.1f} "
            f"{r['trial_s']:>8.1f} "
            f"{r['hypervolume']:>7.4f} {r['best_accuracy']:>8.4f}"
        )
    s = summary
    print(
        f"saved by dominated: {s['epochs_saved_pct']:.1f}% of epochs, {s['finetune_s_saved_pct']:.1f}% of fine-tune "
        "seconds, "
        f"{s['trial_s_saved_pct']:.1f}% of trial seconds"
    )
    print(
        f"hypervolume lost: {s['hypervolume_lost']:+.4f} ({s['hypervolume_lost_pct']:+.2f}%; per seed "
        f"{s['hypervolume_lost_pct_per_seed']})"
    )
    print("figures written to", out)


if __name__ == "__main__":
    main()
