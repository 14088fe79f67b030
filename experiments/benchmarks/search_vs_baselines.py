"""Does the search beat hand-picked ratios at equal cost? TPE and random search against the uniform and global
allocations.

Part 1, at FLOPs budgets R (``constraints: {flops: R}``, default 0.25, 0.1 and 0.05) of each --configs
(default the embedded default, experiments/mnist.yaml; experiments/wide-resnet.yaml is searched for
(accuracy, flops) here, its latency objective replaced), for each seed S (config.seed = S: data split,
dense baseline and sampler seed all follow it):
- a TPE search of N trials with warm_start on: trials 0 and 1 are the enqueued uniform and global
  allocations at the budget (origin uniform / global), each the least pruning that fits it at channel
  resolution (search/_warm_start.py), the rest are sampled (origin sampler);
- a random-sampler search of N trials with warm_start off.
Both run in-process (``run_search``) in one temporary work dir per config and seed (shared dense baseline),
latency not measured (``latency.every_trial: false``: FLOPs are the cost here).
Candidates at equal cost: uniform, global, and for TPE (sampler-origin trials) and random the most
accurate feasible trial whose FLOPs ratio is at most the cheaper baseline's (so neither searched candidate
spends more than either baseline; when the study has no baseline, at most the budget). Beside it,
tpe@uniform and tpe@global: TPE's most accurate trial at most that baseline's own FLOPs, so each
baseline is also met at its own cost (at a budget near the lowest reachable cost the cheaper baseline
can sit at the floor, where the first rule leaves the search nothing else to pick). Every candidate's
FLOPs ratio is recorded. One-epoch fine-tunes are noisy and a best-of-N is biased upward, so each
candidate's architecture is fine-tuned again from the dense baseline with --refit-seeds fresh seeds
(1000 + k): the applied sparsity vector (report trials[].sparsity) is applied to the dense model with the
space (``space.apply(vector, calibration batches)``, as a trial does), BatchNorm
statistics are recalibrated on the calibration batches (as a trial does), then ``fine_tune`` with the
config's finetune settings. Reported per config and budget: mean +- std accuracy of each candidate over
seeds x refits, mean FLOPs ratio, and the gain of TPE over max(uniform, global) in points. Targets
(embedded default): +1.5 points at 0.1, +3 at 0.05.

Part 2, no budget: multi-objective (accuracy, flops) studies of --mo-trials trials with TPE, NSGA-II and
random (seeds --mo-seeds) on the first config; Pareto hypervolume of (1 - accuracy, flops_ratio) with
reference (1, 1), over the trials numbered below k, for k every 5 trials. NSGA-II runs with prunetuna's
sampler settings (population sized to the trial budget, about four generations: prunetuna.search._samplers),
which the output states.

Measured and reported, not asserted. Waits (polling every 20 s, up to 20 min) until no other
experiments/benchmarks script or pytest runs and other processes use under 15% of one CPU (--no-wait: not),
and records the CPU-seconds other processes used.

    .venv/bin/python experiments/benchmarks/search_vs_baselines.py [--n-trials 30] [--seeds 0 1 2]
        [--budgets 0.25 0.1 0.05 (none: part 2 only)] [--refit-seeds 3] [--mo-trials 30] [--mo-seeds 0]
        [--mo-samplers tpe nsga2 random]
        [--configs experiments/mnist.yaml experiments/wide-resnet.yaml]
        [--out runs/benchmarks/search_vs_baselines.json] [--keep] [--workdir DIR] [--no-wait]

A candidate that does not exist (the warm start skips the global allocation when even its largest
setting misses the budget; no searched trial at or below the baselines' cost) is reported as missing
and left out of the means.
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
from _search_bench import DEFAULT_CONFIG, REPO, CpuMeter, hv_curve, mean_std, wait_for_free_machine, with_changes

os.environ.pop("MLFLOW_TRACKING_URI", None)  # keep MLflow in the temporary work dir

from prunetuna.config import load_config
from prunetuna.results import build_report
from prunetuna.search import (
    calibration_batches,
    population_size,
    prepare_space,
    run_search,
)
from prunetuna.store import load_study, resolve_workspace
from prunetuna.training import fine_tune, recalibrate_batchnorm
from prunetuna.workload import (
    load_workload,
    prepare_baseline,
)

TARGETS_PT = {0.1: 1.5, 0.05: 3.0}
KINDS = ("uniform", "global", "tpe", "random", "tpe@uniform", "tpe@global")  # tpe@X: TPE at X's own cost


def search(config, workdir: Path) -> list[dict]:  # noqa: ANN001
    """Run the study to config.search.n_trials; its trials as report items, plus seconds per trial."""
    workspace = resolve_workspace(config.name, workdir, None, None)
    run_search(config, workspace)
    study = load_study(workspace, config.name)
    seconds = {
        t.number: (t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials if t.datetime_complete
    }
    return [{**item, "seconds": seconds.get(item["number"])} for item in build_report(study).as_json()["trials"]]


def best(trials: list[dict], origin: str | None = None, max_flops: float = 1.0) -> dict | None:
    """The most accurate feasible COMPLETE trial (of ``origin``) at FLOPs ratio at most ``max_flops``; None when
    there is none (e.g. a warm start the search skipped because its allocation cannot reach the budget)."""
    done = [
        t
        for t in trials
        if t["state"] == "COMPLETE"
        and t["feasible"]
        and (origin is None or t["origin"] == origin)
        and t["metrics"]["flops_ratio"] <= max_flops + 1e-12
    ]
    return max(done, key=lambda t: (t["metrics"]["accuracy"], -t["metrics"]["flops_ratio"]), default=None)


class Refit:
    """The dense baseline of one config (seed) and its space: fine-tunes a sparsity vector from dense again."""

    def __init__(self, config, workdir: Path) -> None:  # noqa: ANN001
        self.config = config
        self.workload = load_workload(config)
        prepare_baseline(config, self.workload, workdir)  # cached by the searches
        self.space = prepare_space(config, self.workload)
        self.batches = calibration_batches(self.workload, config.pruning.calibration_batches)

    def accuracy(self, vector: dict[str, float], seed: int) -> float:
        pruned = self.space.apply(vector, self.batches)
        recalibrate_batchnorm(pruned, [x for x, _ in self.batches])
        ft = self.config.finetune
        return fine_tune(
            pruned, self.workload.datamodule, epochs=ft.epochs, lr=ft.lr, max_batches=ft.max_batches, seed=seed
        ).accuracy


def part_budgets(base, args, root: Path, label: str) -> dict:  # noqa: ANN001
    rows, studies = [], []  # rows: one per (budget, seed, kind)
    for seed in args.seeds:
        workdir = root / f"{label}-seed{seed}"
        refit = None
        for budget in args.budgets:
            runs = {}
            for sampler in ("tpe", "random"):
                config = with_changes(
                    base,
                    name=f"{base.name}-flops{budget:g}-{sampler}-s{seed}",
                    seed=seed,
                    constraints={"flops": budget},
                    objectives=["accuracy", "flops"],
                    latency={"every_trial": False},
                    search={"sampler": sampler, "n_trials": args.n_trials, "warm_start": sampler == "tpe"},
                )
                runs[sampler] = search(config, workdir)
                seconds = [t["seconds"] for t in runs[sampler] if t["seconds"] is not None]
                studies.append(
                    {
                        "config": label,
                        "budget": budget,
                        "seed": seed,
                        "sampler": sampler,
                        "trials": len(seconds),
                        "trial_seconds_mean": round(mean(seconds), 3),
                        "trial_seconds_sum": round(sum(seconds), 1),
                    }
                )
            chosen = {"uniform": best(runs["tpe"], "uniform"), "global": best(runs["tpe"], "global")}
            cap = min((t["metrics"]["flops_ratio"] for t in chosen.values() if t is not None), default=budget)
            chosen |= {"tpe": best(runs["tpe"], "sampler", cap), "random": best(runs["random"], None, cap)}
            for name in ("uniform", "global"):  # TPE against each baseline at that baseline's own cost
                if chosen[name] is not None:
                    chosen[f"tpe@{name}"] = best(runs["tpe"], "sampler", chosen[name]["metrics"]["flops_ratio"])
            refit = refit or Refit(config, workdir)  # the dense baseline depends on the seed only
            refitted: dict[tuple, list[float]] = {}  # one architecture chosen twice is fine-tuned once
            for kind, trial in chosen.items():
                if trial is None:
                    rows.append(
                        {"budget": budget, "seed": seed, "kind": kind, "trial": None, "missing": True, "max_flops": cap}
                    )
                    print(
                        f"{label} flops<={budget:g} seed {seed} {kind:<8} MISSING: no COMPLETE feasible trial at "
                        f"flops <= {cap:.4f}",
                        flush=True,
                    )
                    continue
                key = tuple(sorted(trial["sparsity"].items()))
                if key not in refitted:
                    refitted[key] = [refit.accuracy(trial["sparsity"], 1000 + k) for k in range(args.refit_seeds)]
                accuracies = refitted[key]
                rows.append(
                    {
                        "budget": budget,
                        "seed": seed,
                        "kind": kind,
                        "trial": trial["number"],
                        "max_flops": cap,
                        "search_accuracy": trial["metrics"]["accuracy"],
                        "flops_ratio": trial["metrics"]["flops_ratio"],
                        "refit_accuracies": accuracies,
                        "sparsity": trial["sparsity"],
                    }
                )
                print(
                    f"{label} flops<={budget:g} seed {seed} {kind:<8} trial {trial['number']:>2}: flops "
                    f"{trial['metrics']['flops_ratio']:.4f}  "
                    f"in-search {trial['metrics']['accuracy']:.4f}  refits {' '.join(f'{a:.4f}' for a in accuracies)}",
                    flush=True,
                )
    summary = {}
    for budget in args.budgets:
        mine = [r for r in rows if r["budget"] == budget and not r.get("missing")]
        have = [k for k in KINDS if any(r["kind"] == k for r in mine)]
        stats = {kind: mean_std([a for r in mine if r["kind"] == kind for a in r["refit_accuracies"]]) for kind in have}
        search_stats = {kind: mean_std([r["search_accuracy"] for r in mine if r["kind"] == kind]) for kind in have}
        flops = {kind: mean(r["flops_ratio"] for r in mine if r["kind"] == kind) for kind in have}
        hand = max((stats[k]["mean"] for k in ("uniform", "global") if k in stats), default=None)
        per_seed = []
        for seed in args.seeds:
            seed_mean = {r["kind"]: mean(r["refit_accuracies"]) for r in mine if r["seed"] == seed}
            bases = [v for k, v in seed_mean.items() if k in ("uniform", "global")]
            if "tpe" in seed_mean and bases:
                per_seed.append(100 * (seed_mean["tpe"] - max(bases)))
        gain = 100 * (stats["tpe"]["mean"] - hand) if hand is not None and "tpe" in stats else None
        each = {
            k: 100 * (stats[f"tpe@{k}"]["mean"] - stats[k]["mean"])
            for k in ("uniform", "global")
            if k in stats and f"tpe@{k}" in stats
        }
        target = TARGETS_PT.get(budget) if label == "mnist" else None
        summary[str(budget)] = {
            "refit": stats,
            "in_search": search_stats,
            "flops_ratio": flops,
            "tpe_gain_pt": gain,
            "random_gain_pt": 100 * (stats["random"]["mean"] - hand)
            if hand is not None and "random" in stats
            else None,
            "tpe_gain_pt_per_seed": per_seed,
            "tpe_gain_pt_each_at_its_cost": each,
            "missing": [(r["seed"], r["kind"]) for r in rows if r["budget"] == budget and r.get("missing")],
            "target_gain_pt": target,
            "target_met": None if target is None or gain is None else gain >= target,
        }
    return {"studies": studies, "rows": rows, "summary": summary}


def part_pareto(base, args, root: Path) -> dict:  # noqa: ANN001
    checkpoints = sorted({*range(5, args.mo_trials + 1, 5), args.mo_trials})
    curves: dict[str, list[dict[int, float]]] = {}
    for sampler in args.mo_samplers:
        for seed in args.mo_seeds:
            config = with_changes(
                base,
                name=f"{base.name}-mo-{sampler}-s{seed}",
                seed=seed,
                constraints={},
                search={"sampler": sampler, "n_trials": args.mo_trials},
            )
            curves.setdefault(sampler, []).append(hv_curve(search(config, root / f"seed{seed}"), checkpoints))
    mean_curves = {s: {k: mean(c[k] for c in cs) for k in checkpoints} for s, cs in curves.items()}
    population = population_size(args.mo_trials)
    figures = {
        "checkpoints": checkpoints,
        "per_seed": curves,
        "mean": mean_curves,
        "nsga2_population": population,
        "nsga2_generations": -(-args.mo_trials // population),
    }
    half = args.mo_trials // 2
    if {"tpe", "random"} <= set(
        curves
    ) and half in checkpoints:  # issue 14: TPE at N/2 trials against random search at N
        tpe, rnd = mean_curves["tpe"][half], mean_curves["random"][args.mo_trials]
        figures["tpe_half_vs_random_all"] = {
            "trials": [half, args.mo_trials],
            "tpe": tpe,
            "random": rnd,
            "met": tpe >= rnd,
            "tpe_per_seed": [c[half] for c in curves["tpe"]],
            "random_per_seed": [c[args.mo_trials] for c in curves["random"]],
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=[str(DEFAULT_CONFIG)])
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=float, nargs="*", default=[0.25, 0.1, 0.05], help="none: skip part 1")
    parser.add_argument("--refit-seeds", type=int, default=3)
    parser.add_argument("--mo-trials", type=int, default=30, help="trials per multi-objective study (0: skip part 2)")
    parser.add_argument("--mo-seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--mo-samplers", nargs="+", default=["tpe", "nsga2", "random"], choices=["tpe", "nsga2", "random"]
    )
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "search_vs_baselines.json"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    parser.add_argument(
        "--workdir", default=None, help="use (and keep) this work dir: finished studies in it are reused, not rerun"
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="do not wait for a quiet machine (other processes' CPU is still recorded)",
    )
    args = parser.parse_args()
    command = " ".join([".venv/bin/python", "experiments/benchmarks/search_vs_baselines.py", *sys.argv[1:]])

    bases = {Path(c).stem: load_config(c) for c in args.configs}
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="prunetuna-svb-"))
    waited = None if args.no_wait else wait_for_free_machine()
    with CpuMeter() as meter_budgets:
        budgets = (
            {label: part_budgets(base, args, root, label) for label, base in bases.items()} if args.budgets else {}
        )
    with CpuMeter() as meter_pareto:
        pareto = part_pareto(next(iter(bases.values())), args, root) if args.mo_trials else None

    figures = {
        "command": command,
        "machine": machine(),
        "waited_for_free_machine": waited,
        "noise": {"budgets": meter_budgets.summary(), "pareto": meter_pareto.summary()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "keep")},
        "budgets": budgets,
        "pareto": pareto,
        "target_met": all(
            s["target_met"] for b in budgets.values() for s in b["summary"].values() if s["target_met"] is not None
        ),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    if args.keep or args.workdir:
        print("work dir kept:", root)
    else:
        shutil.rmtree(root, ignore_errors=True)

    m = figures["machine"]
    print(f"\nmachine: {m['cpus']} CPUs ({m['processor']}), torch {m['torch']} with {m['torch_threads']} threads")
    print(f"part 1: {meter_budgets.line()}; part 2: {meter_pareto.line()}")
    print(
        f"{len(args.seeds)} seeds x {args.n_trials} trials per search; accuracy after {args.refit_seeds} fresh "
        "fine-tunes of each "
        f"candidate per seed (mean +- std over {len(args.seeds) * args.refit_seeds}); in-search accuracy in brackets"
    )
    for label, part in budgets.items():
        for budget, s in part["summary"].items():
            cells = "  ".join(
                f"{k} {100 * s['refit'][k]['mean']:.2f}+-{100 * s['refit'][k]['std']:.2f} "
                f"[{100 * s['in_search'][k]['mean']:.2f}] "
                f"@{s['flops_ratio'][k]:.4f}"
                for k in s["refit"]
            )
            print(f"{label} flops <= {budget}: {cells}")
            seeds = ", ".join(f"{g:+.2f}" for g in s["tpe_gain_pt_per_seed"])
            if s["missing"]:
                print(f"  missing candidates (seed, kind), left out of the means: {s['missing']}")
            verdict = "no target" if s["target_met"] is None else ("MET" if s["target_met"] else "NOT MET")
            tpe = "n/a" if s["tpe_gain_pt"] is None else f"{s['tpe_gain_pt']:+.2f}"
            rnd = "n/a" if s["random_gain_pt"] is None else f"{s['random_gain_pt']:+.2f}"
            print(
                f"  TPE - max(uniform, global), at equal or lower FLOPs: {tpe} pts (per seed {seeds}); random: {rnd} "
                "pts; "
                f"target >= +{s['target_gain_pt']} pts: {verdict}"
            )
            each = ", ".join(f"{k} {v:+.2f}" for k, v in s["tpe_gain_pt_each_at_its_cost"].items())
            print(f"  TPE against each baseline at that baseline's FLOPs or less: {each} pts")
    if pareto:
        print(
            "Pareto hypervolume of (1 - accuracy, flops ratio), reference (1, 1), no budget, mean over seeds "
            f"{args.mo_seeds}:"
        )
        print("  trials  " + "  ".join(f"{s:>7}" for s in pareto["mean"]))
        for k in pareto["checkpoints"]:
            print(f"  {k:>6}  " + "  ".join(f"{pareto['mean'][s][k]:7.4f}" for s in pareto["mean"]))
        if "tpe_half_vs_random_all" in pareto:
            t = pareto["tpe_half_vs_random_all"]
            print(
                f"  TPE at {t['trials'][0]} trials {t['tpe']:.4f} vs random search at {t['trials'][1]} "
                f"{t['random']:.4f} "
                f"(target: at least): {'MET' if t['met'] else 'NOT MET'}; per seed TPE {t['tpe_per_seed']}, random "
                f"{t['random_per_seed']}"
            )
    if pareto and "nsga2" in pareto["mean"]:
        print(
            f"  (NSGA-II: population {pareto['nsga2_population']}, {pareto['nsga2_generations']} generations in "
            f"{args.mo_trials} trials; the first is random)"
        )
    print("figures written to", out)


if __name__ == "__main__":
    main()
