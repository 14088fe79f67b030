"""Does the per-trial score rank candidates as the final fine-tune does? The search can only pick well if
its cheap score (a short fine-tune, or the accuracy right after pruning and BatchNorm recalibration)
orders the candidates as the outcome a user gets (``prunetuna finetune``, then the test split) orders them.

On the cluttered task (cluttered_task.py), for one architecture and FLOPs budget B: a random-sampler search
of --n-trials trials (seed S; ``search.projection: relative``, so every candidate sits at about the
budget's cost and only its allocation differs) is run once per per-trial fine-tune *variant* (--variants:
``N`` = ``finetune.max_batches: N``, one epoch; ``Nd`` = the same with ``finetune.distill`` from the
dense model, alpha 0.5, T 4). The random sampler is seeded per trial number, so every variant fine-tunes
the same candidates. Each finished candidate of every variant is then given the same final fine-tune
(``final_finetune``: --final-epochs epochs, seed 1000 + S; it starts from the trial's weights, as
``prunetuna finetune`` does) and scored on the test split.
Reported per variant: Spearman's rank correlation of the search score with the final test accuracy, the
same for the pre-fine-tune score (``accuracy_pruned``, the same in every variant), and the *regret*: the
test accuracy of the best candidate minus that of the candidate the search score picks (points).

    PYTHONPATH=. .venv/bin/python experiments/benchmarks/proxy_ranking.py [--arch resnet] [--budget 0.1]
        [--seeds 0] [--n-trials 16] [--variants 20 80 20d] [--final-epochs 4] [--canvas 32] [--width 16]
        [--baseline-epochs 8] [--workdir DIR] [--out runs/benchmarks/proxy_ranking.json] [--threads K]

Measured and reported, not asserted; the wall time is printed and written with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO)]

import torch  # noqa: E402
from cluttered import _config, _test_accuracy, add_task_arguments  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from prunetuna.config import parse_config  # noqa: E402
from prunetuna.export import final_finetune  # noqa: E402
from prunetuna.search import run_search  # noqa: E402
from prunetuna.store import TrialRecord, load_study, resolve_workspace  # noqa: E402


def _variant_config(args: argparse.Namespace, seed: int, variant: str) -> dict:
    batches = int(variant.rstrip("d"))
    raw = _config(args, args.arch, args.budget, seed, "random", None)
    raw["name"] = f"proxy-{args.arch}-b{args.budget:g}-s{seed}-{variant}"
    raw["finetune"] = {"epochs": 1, "lr": 0.002, "max_batches": batches}
    if variant.endswith("d"):
        raw["finetune"]["distill"] = {"alpha": 0.5, "temperature": 4.0}
    raw["search"] = {"sampler": "random", "n_trials": args.n_trials, "warm_start": False, "projection": "relative"}
    return raw


def _regret(scores: list[float], tests: list[float]) -> float:
    picked = max(range(len(scores)), key=scores.__getitem__)
    return 100 * (max(tests) - tests[picked])


def run(args: argparse.Namespace) -> list[dict]:
    root = Path(args.workdir or tempfile.mkdtemp(prefix="proxy-ranking-"))
    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            config = parse_config(_variant_config(args, seed, variant))
            workspace = resolve_workspace(config.name, root, None, None)
            started = time.perf_counter()
            run_search(config, workspace)
            search_s = time.perf_counter() - started
            study = load_study(workspace, config.name)
            for trial in study.get_trials(deepcopy=False):
                if trial.state.name != "COMPLETE":
                    continue
                started = time.perf_counter()
                done = final_finetune(config, workspace, trial=trial.number)
                row = {
                    "seed": seed,
                    "variant": variant,
                    "trial": trial.number,
                    "flops_ratio": done.metrics["flops_ratio"],
                    "pruned": (TrialRecord.of(trial).screening or {}).get("score"),  # after pruning + BN recalibration
                    "search": done.metrics["accuracy_search"],
                    "final_val": done.metrics["accuracy"],
                    "test": _test_accuracy(config, workspace, trial),
                    "finetune_s": time.perf_counter() - started,
                    "search_s": search_s,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    table = []
    for seed in dict.fromkeys(r["seed"] for r in rows):
        for variant in dict.fromkeys(r["variant"] for r in rows):
            group = [r for r in rows if r["seed"] == seed and r["variant"] == variant]
            if len(group) < 3:
                continue
            tests = [r["test"] for r in group]
            entry = {
                "seed": seed,
                "variant": variant,
                "n": len(group),
                "spearman_search": spearmanr([r["search"] for r in group], tests).statistic,
                "regret_search": _regret([r["search"] for r in group], tests),
                "best_test": 100 * max(tests),
                "mean_test": 100 * sum(tests) / len(tests),
            }
            pruned = [r["pruned"] for r in group]
            if all(p is not None for p in pruned):
                entry["spearman_pruned"] = spearmanr(pruned, tests).statistic
                entry["regret_pruned"] = _regret(pruned, tests)
            table.append(entry)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet", choices=["resnet", "mobilenet"])
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    add_task_arguments(parser, n_trials=16, final_epochs=4, canvas=32, projection="relative")
    parser.add_argument("--variants", nargs="+", default=["20", "80", "20d"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "proxy_ranking.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = run(args)
    figures = {"rows": rows, "summary": summarize(rows), "settings": {k: v for k, v in vars(args).items()}}
    figures["wall_s"] = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    for entry in figures["summary"]:
        pruned = (
            f"; pre-fine-tune score: Spearman {entry['spearman_pruned']:+.2f}, regret {entry['regret_pruned']:.2f}"
            if "spearman_pruned" in entry
            else ""
        )
        print(
            f"seed {entry['seed']} variant {entry['variant']} (n={entry['n']}): search score Spearman "
            f"{entry['spearman_search']:+.2f}, regret {entry['regret_search']:.2f} points of best "
            f"{entry['best_test']:.2f}{pruned}"
        )
    print(f"wall time {figures['wall_s']:.0f} s; figures written to {out}")


if __name__ == "__main__":
    main()
