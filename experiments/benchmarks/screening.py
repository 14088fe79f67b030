"""Screening before fine-tuning: the Pareto hypervolume it keeps and the fine-tune epochs it saves.

The embedded default (--config, experiments/mnist.yaml), objectives (accuracy, flops), no budget, TPE,
--n-trials trials per study, for each seed in --seeds (config.seed = S: data split, dense baseline and
sampler seed follow it) and each fine-tune length in --epochs (finetune.epochs): once with
``search.screening.enabled: false`` and once with it on (``min_dominating`` --min-dominating), in-process
(``run_search``), one work dir per seed (shared dense baseline). Reported per study:
- fine-tune epochs: finetune.epochs per COMPLETE trial, none for a screened-out one (``epochs_trained``);
- Pareto hypervolume of (1 - accuracy, flops_ratio) over COMPLETE trials, reference (1, 1), after all
  --n-trials trials (equal trials: a screened-out trial counts as one);
- trials screened out, wall time of the study.
Epochs saved = 1 - on / off; hypervolume kept = on / off. Targets (issue 14): within 1% of the
hypervolume with at least 40% fewer epochs, on 3 seeds, 1- and 3-epoch fine-tunes. The two arms are
different TPE trajectories once the first candidate is screened out, so single-seed differences carry
sampling noise. Measured, not asserted.

--candidates K compares several candidates per trial instead (``search.screening.candidates``, EagleEye-style,
issue 21): the arms are K = 1 and K, the dominance rule off in both, the same --n-trials (so the same number of
fine-tunes); reported per seed: the hypervolume with K over that with 1, and the wall time each took.
--max-batches caps the fine-tune's batches per epoch (finetune.max_batches) to keep a run short.

--no-wait skips waiting for a quiet machine (the CPU other processes used is still recorded).

    .venv/bin/python experiments/benchmarks/screening.py [--n-trials 30] [--seeds 0 1 2] [--epochs 1 3]
        [--min-dominating 3] [--candidates K] [--max-batches N] [--config experiments/mnist.yaml]
        [--out runs/benchmarks/screening.json] [--no-wait] [--latency] [--workdir DIR]

Latency is not measured in the trials unless --latency (FLOPs are the cost here; it halves a trial under load).
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
from _search_bench import (
    DEFAULT_CONFIG,
    REPO,
    CpuMeter,
    accuracy_flops_hv,
    epochs_trained,
    run_study,
    wait_for_free_machine,
    with_changes,
)

os.environ.pop("MLFLOW_TRACKING_URI", None)  # keep MLflow in the temporary work dir

from prunetuna.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--min-dominating", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=None, help="compare K candidates per trial with one")
    parser.add_argument("--max-batches", type=int, default=None, help="finetune.max_batches (default: the config's)")
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "screening.json"))
    parser.add_argument("--no-wait", action="store_true")
    parser.add_argument(
        "--latency",
        action="store_true",
        help="measure latency in every trial (the config's setting); off by default: FLOPs are the cost here",
    )
    parser.add_argument(
        "--workdir", default=None, help="use (and keep) this work dir: cached dense baselines in it are reused"
    )
    args = parser.parse_args()
    command = " ".join([".venv/bin/python", "experiments/benchmarks/screening.py", *sys.argv[1:]])
    base = load_config(args.config)
    if not args.latency:
        base = with_changes(base, latency={"every_trial": False})
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="prunetuna-screening-"))
    waited = None if args.no_wait else wait_for_free_machine()
    if args.candidates is not None:  # K candidates per trial against one, the dominance rule off in both
        arms = [(f"k{k}", {"enabled": False, "candidates": k}) for k in (1, args.candidates)]
    else:
        arms = [("off", {"enabled": False}), (f"on-md{args.min_dominating}", {"enabled": True})]
    finetune = {} if args.max_batches is None else {"max_batches": args.max_batches}
    rows = []
    with CpuMeter() as meter:
        for epochs in args.epochs:
            for seed in args.seeds:
                for arm, screening in arms:
                    config = with_changes(
                        base,
                        name=f"{base.name}-e{epochs}-s{seed}-{arm}",
                        seed=seed,
                        constraints={},
                        finetune={"epochs": epochs, **finetune},
                        search={
                            "sampler": "tpe",
                            "n_trials": args.n_trials,
                            "pruner": "none",
                            "screening": {**screening, "min_dominating": args.min_dominating},
                        },
                    )
                    start = time.perf_counter()
                    items, study = run_study(config, root / f"seed{seed}")
                    row = {
                        "epochs": epochs,
                        "seed": seed,
                        "arm": arm,
                        "screening": screening.get("enabled", False),
                        "candidates": screening.get("candidates", 1),
                        "hypervolume": round(accuracy_flops_hv(items), 5),
                        "epochs_trained": epochs_trained(study, epochs),
                        "screened": sum(t["state"] == "PRUNED" for t in items),
                        "trials": len(items),
                        "wall_s": round(time.perf_counter() - start, 1),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    Path(args.out).with_suffix(".partial.jsonl").open("a").write(json.dumps(row) + "\n")
    summary = {}
    for epochs in args.epochs:
        by_arm = {arm: {r["seed"]: r for r in rows if r["epochs"] == epochs and r["arm"] == arm} for arm, _ in arms}
        pairs = [(by_arm[arms[0][0]][s], by_arm[arms[1][0]][s]) for s in args.seeds]
        kept = [on["hypervolume"] / off["hypervolume"] for off, on in pairs]
        if args.candidates is not None:
            summary[str(epochs)] = {
                "hv_ratio_per_seed": kept,
                "hv_ratio_mean": mean(kept),
                "hv_per_seed": {arm: [by_arm[arm][s]["hypervolume"] for s in args.seeds] for arm, _ in arms},
                "wall_ratio_per_seed": [on["wall_s"] / off["wall_s"] for off, on in pairs],
            }
            continue
        saved = [1 - on["epochs_trained"] / off["epochs_trained"] for off, on in pairs]
        summary[str(epochs)] = {
            "epochs_saved_per_seed": saved,
            "hv_kept_per_seed": kept,
            "epochs_saved_mean": mean(saved),
            "hv_kept_mean": mean(kept),
            "target_met": all(k >= 0.99 for k in kept) and all(s >= 0.4 for s in saved),
        }
    figures = {
        "command": command,
        "machine": machine(),
        "waited_for_free_machine": waited,
        "noise": meter.summary(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "rows": rows,
        "summary": summary,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{meter.line()}")
    for epochs, s in summary.items():
        if args.candidates is not None:
            print(
                f"{epochs}-epoch fine-tunes, {args.n_trials} fine-tunes per study: hypervolume with "
                f"{args.candidates} candidates per trial / with 1: {s['hv_ratio_mean']:.4f} (per seed "
                f"{', '.join(f'{v:.4f}' for v in s['hv_ratio_per_seed'])}; {s['hv_per_seed']}); wall time ratio per "
                f"seed {', '.join(f'{v:.2f}' for v in s['wall_ratio_per_seed'])}"
            )
            continue
        print(
            f"{epochs}-epoch fine-tunes: epochs saved {100 * s['epochs_saved_mean']:.1f}% (per seed "
            f"{', '.join(f'{100 * v:.1f}%' for v in s['epochs_saved_per_seed'])}); hypervolume kept "
            f"{100 * s['hv_kept_mean']:.2f}% "
            f"(per seed {', '.join(f'{100 * v:.2f}%' for v in s['hv_kept_per_seed'])}); target (>= 99% kept, >= 40% "
            "saved): "
            f"{'MET' if s['target_met'] else 'NOT MET'}"
        )
    print("figures written to", out)


if __name__ == "__main__":
    main()
