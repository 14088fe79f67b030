"""Which sampler reaches the front soonest where allocation matters? GP, TPE and NSGA-II at --n-trials
trials against random search at twice as many, on the cluttered task (cluttered_task.py).

For each architecture (--archs) and seed S (--seeds): unbudgeted multi-objective (accuracy, flops) studies,
one per sampler, in one work dir per architecture (the dense model trained once per architecture and
seed; ``search.warm_start: false``, so every trial is the sampler's; each sampler is prunetuna's, as
``search.sampler`` names it: prunetuna.search._samplers). Hypervolume of the search scores
(1 - accuracy, flops ratio) with reference (1, 1), issue 21's reference point (score 0, cost ratio 1),
over the trials numbered below k, for k every 5 trials. Reported: per sampler the mean +- std over seeds
at each checkpoint, and whether each sampler at --n-trials reaches random search at 2 x --n-trials.

    PYTHONPATH=. .venv/bin/python experiments/benchmarks/sampler_hypervolume.py [--archs resnet mobilenet]
        [--samplers gp tpe nsga2] [--seeds 0 1 2] [--n-trials 30] [--trial-batches 20] [--baseline-epochs 8]
        [--canvas 32] [--width 16] [--workdir DIR] [--out runs/benchmarks/sampler_hypervolume.json] [--threads K]

Measured and reported, not asserted; the wall time is printed and written with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean, pstdev

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO)]

import torch  # noqa: E402
from _search_bench import hv_curve  # noqa: E402
from cluttered import _config, add_task_arguments  # noqa: E402

from prunetuna.config import parse_config  # noqa: E402
from prunetuna.results import build_report  # noqa: E402
from prunetuna.search import run_search  # noqa: E402
from prunetuna.store import load_study, resolve_workspace  # noqa: E402


def _study_config(args: argparse.Namespace, arch: str, seed: int, sampler: str, n_trials: int) -> dict:
    raw = _config(args, arch, 1.0, seed, "random", None)
    raw["name"] = f"hv-{arch}-s{seed}-{sampler}-{n_trials}"
    raw.pop("constraints")
    raw["search"] = {"sampler": sampler, "n_trials": n_trials, "warm_start": False}
    return raw


def run(args: argparse.Namespace) -> dict:
    root = Path(args.workdir or tempfile.mkdtemp(prefix="sampler-hv-"))
    curves: dict[str, dict[str, list[dict[int, float]]]] = {}
    for arch in args.archs:
        for seed in args.seeds:
            for sampler, n_trials in [(s, args.n_trials) for s in args.samplers] + [("random", 2 * args.n_trials)]:
                config = parse_config(_study_config(args, arch, seed, sampler, n_trials))
                workspace = resolve_workspace(config.name, root / arch, None, None)
                started = time.perf_counter()
                run_search(config, workspace)
                trials = build_report(load_study(workspace, config.name)).as_json()["trials"]
                checkpoints = sorted({*range(5, n_trials + 1, 5), n_trials})
                curve = hv_curve(trials, checkpoints)
                curves.setdefault(arch, {}).setdefault(sampler, []).append(curve)
                print(
                    json.dumps(
                        {
                            "arch": arch,
                            "seed": seed,
                            "sampler": sampler,
                            "curve": curve,
                            "seconds": round(time.perf_counter() - started, 1),
                        }
                    ),
                    flush=True,
                )
    return curves


def summarize(curves: dict, n_trials: int) -> dict:
    summary = {}
    for arch, by_sampler in curves.items():
        random_all = [c[2 * n_trials] for c in by_sampler.get("random", [])]
        entry = {}
        for sampler, runs in by_sampler.items():
            at = n_trials if sampler != "random" else 2 * n_trials
            values = [c[at] for c in runs]
            entry[sampler] = {
                "trials": at,
                "hv_mean": mean(values),
                "hv_std": pstdev(values),
                "per_seed": values,
                "curve_mean": {k: mean(c[k] for c in runs) for k in runs[0]},
            }
            if sampler != "random" and random_all:
                entry[sampler]["vs_random_at_twice"] = mean(values) - mean(random_all)
        summary[arch] = entry
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet", "mobilenet"], choices=["resnet", "mobilenet"])
    parser.add_argument("--samplers", nargs="+", default=["gp", "tpe", "nsga2"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_task_arguments(parser, final_epochs=1, canvas=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "sampler_hypervolume.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    curves = run(args)
    figures = {"curves": curves, "summary": summarize(curves, args.n_trials), "settings": vars(args).copy()}
    figures["wall_s"] = time.perf_counter() - started
    figures["settings"].pop("out")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    for arch, entry in figures["summary"].items():
        print(f"{arch}:")
        for sampler, s in entry.items():
            versus = f", {s['vs_random_at_twice']:+.4f} vs random at twice" if "vs_random_at_twice" in s else ""
            print(f"  {sampler:7s} at {s['trials']:3d} trials: HV {s['hv_mean']:.4f} +- {s['hv_std']:.4f}{versus}")
    print(f"wall time {figures['wall_s']:.0f} s; figures written to {out}")


if __name__ == "__main__":
    main()
