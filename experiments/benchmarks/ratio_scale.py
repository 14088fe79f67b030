"""Which ratio space finds the better front at equal trials: ``pruning.scale: linear`` or ``log``?

The embedded default (--config, experiments/mnist.yaml), objectives (accuracy, flops), no budget, TPE,
--n-trials trials per study, for each seed in --seeds: once with ``pruning.scale: linear`` (sparsity on
the 0.05 grid) and once with ``log`` (kept fraction on a log scale, continuous), in-process
(``run_search``), one work dir per seed (shared dense baseline), latency not measured (FLOPs are the cost). Reported:
the Pareto hypervolume of
(1 - accuracy, flops_ratio) over COMPLETE trials, reference (1, 1), after every 10 trials and at the
end, per seed and its mean. Measured, not asserted; the default changes only on a measured win.

--no-wait skips waiting for a quiet machine (the CPU other processes used is still recorded).

    .venv/bin/python experiments/benchmarks/ratio_scale.py [--n-trials 30] [--seeds 0 1 2]
        [--config experiments/mnist.yaml] [--out runs/benchmarks/ratio_scale.json] [--no-wait]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from statistics import mean

from _machine import machine
from _search_bench import DEFAULT_CONFIG, REPO, CpuMeter, hv_curve, run_study, wait_for_free_machine, with_changes

os.environ.pop("MLFLOW_TRACKING_URI", None)  # keep MLflow in the temporary work dir

from prunetuna.config import load_config

SCALES = ("linear", "log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "ratio_scale.json"))
    parser.add_argument("--no-wait", action="store_true")
    args = parser.parse_args()
    command = " ".join([".venv/bin/python", "experiments/benchmarks/ratio_scale.py", *sys.argv[1:]])
    base = load_config(args.config)
    root = Path(tempfile.mkdtemp(prefix="prunetuna-scale-"))
    waited = None if args.no_wait else wait_for_free_machine()
    checkpoints = sorted({*range(10, args.n_trials + 1, 10), args.n_trials})
    curves: dict[str, list[dict[int, float]]] = {s: [] for s in SCALES}
    with CpuMeter() as meter:
        for seed in args.seeds:
            for scale in SCALES:
                config = with_changes(
                    base,
                    name=f"{base.name}-{scale}-s{seed}",
                    seed=seed,
                    constraints={},
                    latency={"every_trial": False},
                    pruning={"scale": scale},
                    search={"sampler": "tpe", "n_trials": args.n_trials},
                )
                items, _ = run_study(config, root / f"seed{seed}")
                curves[scale].append(hv_curve(items, checkpoints))
                print(json.dumps({"seed": seed, "scale": scale, "hypervolume": curves[scale][-1]}), flush=True)
    means = {s: {k: round(mean(c[k] for c in cs), 5) for k in checkpoints} for s, cs in curves.items()}
    last = checkpoints[-1]
    wins = sum(lg[last] > li[last] for li, lg in zip(curves["linear"], curves["log"]))
    figures = {
        "command": command,
        "machine": machine(),
        "waited_for_free_machine": waited,
        "noise": meter.summary(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "checkpoints": checkpoints,
        "per_seed": curves,
        "mean": means,
        "log_wins_at_end": wins,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    print(f"\n{meter.line()}")
    print("trials  " + "  ".join(f"{s:>8}" for s in SCALES))
    for k in checkpoints:
        print(f"{k:>6}  " + "  ".join(f"{means[s][k]:8.4f}" for s in SCALES))
    print(f"log above linear at {last} trials in {wins} of {len(args.seeds)} seeds")
    print("figures written to", out)


if __name__ == "__main__":
    main()
