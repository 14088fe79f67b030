"""Does the searched candidate beat what a user gets without a search, at equal cost and equal final fine-tune,
on a task where allocation matters? Cluttered MNIST (cluttered_task.py: digits on larger canvases with
fragments of other digits; validation and test splits of 3,000 images each, disjoint by source digit).

For each architecture (--archs: ``resnet``, the built-in tiny-resnet; ``mobilenet``, cluttered_task's
inverted-residual net), FLOPs budget B (--budgets) and seed S (--seeds), in one work dir per architecture:
- the dense model is trained once (seed 0's baseline, ``baseline.epochs``); later seeds start from it
  (``model.checkpoint``), so the seeds vary the search and the final fine-tunes, not the dense model;
- a TPE search of --n-trials trials, ``constraints: {flops: B}``, with ``search.baselines: [uniform, global,
  sensitivity]`` enqueued first (trials 0-2: the uniform, global-ranking and sensitivity-threshold
  allocations, each the least pruning that fits B), ``search.projection`` from --projection;
- a random-sampler search of the same number of trials (no baselines enqueued).
Candidates: *searched*, the trial ``prunetuna export --best --max-flops B`` takes from the TPE study
(selected by validation score, so it may be one of the enqueued baselines: its origin is reported);
*uniform*, *global*, *sensitivity*: those trials; *random*: ``--best --max-flops B`` of the random study.
Each is given the same final fine-tune, ``prunetuna finetune`` (``final_finetune``: --final-epochs epochs
of --final-batches batches, seed 1000 + S, the built-in classifier), and its fine-tuned weights, rebuilt
as ``export --finetuned`` rebuilds them, are scored on the **test** split (never seen by the search).
Reported: per architecture and budget, each candidate's test accuracy mean +- std over seeds and FLOPs
ratio, and the searched candidate's gain over the best alternative.
*narrowed*: the same architecture built with the largest ``width`` whose FLOPs ratio to the dense model is
at most B (every layer narrowed alike; Crowley et al. 2018), trained from scratch (seed S) for
--baseline-epochs + --final-epochs whole epochs (at least the dense model's training plus the final
fine-tune) and scored on the test split (--no-narrowed: not).
--latency-budgets L: the same under ``constraints: {latency: L}`` (onnxruntime, batch 1, one thread; objectives
accuracy and latency); *searched* and *random* are then the best feasible trials, *narrowed* the widest width
whose measured latency ratio fits (median of 5 alternating measurements of it and the dense net); every
candidate's latency ratio is measured again so after its final fine-tune (``ratio_remeasured``). The
hypervolume targets are sampler_hypervolume.py's. --uniform-at L: the uniform allocation fitted to level L of the
same cost, given the same final fine-tune (candidate ``uniform@L``, not an alternative: it costs more), to read
how much cheaper the searched candidate is than uniform at equal accuracy.

    PYTHONPATH=. .venv/bin/python experiments/benchmarks/cluttered.py [--archs resnet mobilenet]
        [--budgets 0.25 0.1 0.05] [--seeds 0 1 2] [--n-trials 30] [--final-epochs 10] [--final-batches 0]
        [--trial-batches 20] [--baseline-epochs 8] [--canvas 40] [--width 16] [--projection toward_max]
        [--latency-budgets L ...] [--uniform-at L ...] [--promote-top 0] [--promote-epochs 1] [--no-narrowed]
        [--out runs/benchmarks/cluttered.json] [--workdir DIR] [--threads K]

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
from _cluttered_alternatives import narrowed, ratio_of  # noqa: E402

from prunetuna.config import parse_config  # noqa: E402
from prunetuna.errors import UserError  # noqa: E402
from prunetuna.export import final_finetune, rebuild_trial, select_trial  # noqa: E402
from prunetuna.search import run_search  # noqa: E402
from prunetuna.store import TrialRecord, load_study, resolve_workspace  # noqa: E402
from prunetuna.training import evaluate_accuracy  # noqa: E402
from prunetuna.workload import load_workload  # noqa: E402

ALTERNATIVES = ("uniform", "global", "sensitivity", "random", "narrowed")


TASK_DEFAULTS = {
    "n_trials": 30,
    "final_epochs": 10,
    "final_batches": 0,
    "trial_batches": 20,
    "baseline_epochs": 8,
    "canvas": 40,
    "width": 16,
    "projection": "toward_max",
}


def add_task_arguments(parser: argparse.ArgumentParser, **defaults: object) -> None:
    """The settings ``_config`` reads, for this script and the benchmarks built on its studies
    (proxy_ranking.py, sampler_hypervolume.py, final_distill.py), each with its own ``defaults``."""
    chosen = TASK_DEFAULTS | defaults
    for name, value in chosen.items():
        flag = "--" + name.replace("_", "-")
        if name == "projection":
            parser.add_argument(flag, default=value, choices=["toward_max", "relative"])
        else:
            parser.add_argument(
                flag, type=int, default=value, help="0: whole epochs" if name == "final_batches" else None
            )


def _config(
    args: argparse.Namespace,
    arch: str,
    budget: float,
    seed: int,
    kind: str,
    checkpoint: str | None,
    cost: str = "flops",
) -> dict:
    if arch == "resnet":
        model = {"builtin": "tiny-resnet", "kwargs": {"width": args.width}}
    else:
        model = {"target": "cluttered_task:mobilenet", "kwargs": {"width": args.width, "expand": 4}}
    if checkpoint is not None:
        model["checkpoint"] = checkpoint
    search = {"sampler": "tpe" if kind == "tpe" else "random", "n_trials": args.n_trials}
    if kind == "tpe":
        search |= {"baselines": ["uniform", "global", "sensitivity"], "projection": args.projection}
    elif kind == "uniform":  # --uniform-at: the uniform allocation alone, fitted to ``budget``
        search |= {"n_trials": 1, "baselines": ["uniform"], "projection": args.projection}
    else:
        search |= {"warm_start": False, "projection": args.projection}
    if getattr(args, "promote_top", 0):  # successive halving's second rung, in both studies (only the sampler differs)
        search["promote"] = {"top": args.promote_top, "epochs": args.promote_epochs}
    final = {"epochs": args.final_epochs, "lr": 0.002, "seed": 1000 + seed}
    if args.final_batches:
        final["max_batches"] = args.final_batches
    return {
        "name": f"clut-{arch}-b{budget:g}-s{seed}-{kind}"
        + ("" if args.projection == "toward_max" else f"-{args.projection}")
        + (f"-p{args.promote_top}e{args.promote_epochs}" if getattr(args, "promote_top", 0) else "")
        + ("" if cost == "flops" else f"-{cost}"),
        "seed": seed,
        "model": model,
        "data": {
            "target": "cluttered_task:cluttered",
            "kwargs": {"canvas": args.canvas, "copies": 3, "batch_size": 64},
        },
        "baseline": {"epochs": args.baseline_epochs, "lr": 0.002},
        "pruning": {"max_sparsity": 0.9, "step": 0.05, "calibration_batches": 4},
        "finetune": {"epochs": 1, "lr": 0.002, "max_batches": args.trial_batches},
        "final_finetune": final,
        "objectives": ["accuracy", cost],
        "constraints": {cost: budget},
        "latency": {"every_trial": False, "backend": "onnxruntime"},  # measured only under a latency budget
        "search": search,
    }


def _test_accuracy(config, workspace, trial, cost: str) -> tuple[float, float]:  # noqa: ANN001
    """Test accuracy of what ``export --finetuned`` rebuilds, and its cost ratio measured again (_ratio_of)."""
    rebuilt = rebuild_trial(config, workspace, trial, finetuned=True)
    accuracy = evaluate_accuracy(rebuilt.model, rebuilt.workload.datamodule.test_dataloader())
    dense = load_workload(config).model  # the architecture is what costs; its weights do not matter
    return accuracy, ratio_of(cost, rebuilt.model, dense, rebuilt.workload.example)


def _candidates(config_tpe, config_random, workspace_tpe, workspace_random, budget: float, cost: str) -> dict:  # noqa: ANN001
    limit = budget if cost == "flops" else None  # a latency budget: --best takes the best feasible trial

    def best(study):  # noqa: ANN001, ANN202 - None when no trial is feasible (a latency budget measured over it)
        try:
            return select_trial(study, max_flops=limit)
        except UserError as exc:
            print(f"no candidate: {exc}", flush=True)
            return None

    tpe = load_study(workspace_tpe, config_tpe.name)
    chosen = {"searched": (config_tpe, workspace_tpe, best(tpe))}
    for trial in tpe.get_trials(deepcopy=False):
        origin = TrialRecord.of(trial).origin
        if origin in ALTERNATIVES and trial.state.name == "COMPLETE" and origin not in chosen:
            chosen[origin] = (config_tpe, workspace_tpe, trial)
    random = load_study(workspace_random, config_random.name)
    chosen["random"] = (config_random, workspace_random, best(random))
    return {name: picked for name, picked in chosen.items() if picked[2] is not None}


def run(args: argparse.Namespace) -> dict:
    root = Path(args.workdir or tempfile.mkdtemp(prefix="cluttered-"))
    rows = []
    for arch in args.archs:
        workdir = root / arch
        # Seed 0's dense model starts every later seed, also when a rerun names only later seeds.
        made = sorted(workdir.glob("baseline-*.pt"), key=lambda p: p.stat().st_mtime)
        checkpoint = str(made[0]) if made and 0 not in args.seeds else None
        for seed in args.seeds:
            for cost, budget in [("flops", b) for b in args.budgets] + [("latency", b) for b in args.latency_budgets]:
                configs = {
                    kind: parse_config(_config(args, arch, budget, seed, kind, checkpoint, cost))
                    for kind in ("tpe", "random")
                }
                spaces = {kind: resolve_workspace(c.name, workdir, None, None) for kind, c in configs.items()}
                started = time.perf_counter()
                for kind in ("tpe", "random"):
                    run_search(configs[kind], spaces[kind])
                searched_s = time.perf_counter() - started
                if checkpoint is None:  # seed 0's dense model: the start of every later seed
                    checkpoint = str(sorted(workdir.glob("baseline-*.pt"), key=lambda p: p.stat().st_mtime)[0])
                chosen = _candidates(configs["tpe"], configs["random"], spaces["tpe"], spaces["random"], budget, cost)
                for level in args.uniform_at:  # uniform at a higher level, for "how much faster at equal accuracy"
                    config = parse_config(_config(args, arch, level, seed, "uniform", checkpoint, cost))
                    workspace = resolve_workspace(config.name, workdir, None, None)
                    run_search(config, workspace)
                    chosen[f"uniform@{level:g}"] = (config, workspace, load_study(workspace, config.name).trials[0])
                for name, (config, workspace, trial) in chosen.items():
                    started = time.perf_counter()
                    done = final_finetune(config, workspace, trial=trial.number)
                    test, remeasured = _test_accuracy(config, workspace, trial, cost)
                    row = {
                        "arch": arch,
                        "budget": budget,
                        "cost": cost,
                        "seed": seed,
                        "candidate": name,
                        "trial": trial.number,
                        "origin": TrialRecord.of(trial).origin,
                        "ratio": done.metrics[f"{cost}_ratio"],
                        "flops_ratio": done.metrics["flops_ratio"],
                        "val_search": done.metrics["accuracy_search"],
                        "val_final": done.metrics["accuracy"],
                        "test": test,
                        "ratio_remeasured": remeasured,
                        "finetune_s": time.perf_counter() - started,
                        "search_s": searched_s,
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                if args.narrowed:
                    raw = _config(args, arch, budget, seed, "narrowed", None, cost)
                    rows.append(narrowed(args, raw, arch, budget, seed, workdir, cost))
                    print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows, "workdir": str(root)}


def summarize(rows: list[dict]) -> list[dict]:
    table = []
    for arch, cost, budget in dict.fromkeys((r["arch"], r.get("cost", "flops"), r["budget"]) for r in rows):
        group = [r for r in rows if (r["arch"], r.get("cost", "flops"), r["budget"]) == (arch, cost, budget)]
        if not group:
            continue
        by = {}
        extra = dict.fromkeys(r["candidate"] for r in group if r["candidate"].startswith("uniform@"))
        for name in ("searched", *ALTERNATIVES, *extra):
            picked = [r for r in group if r["candidate"] == name]
            if picked:
                tests = [100 * r["test"] for r in picked]
                by[name] = {
                    "test_mean": mean(tests),
                    "test_std": pstdev(tests),
                    "ratio_mean": mean(r.get("ratio", r.get("flops_ratio")) for r in picked),
                    "ratio_remeasured_mean": mean(r.get("ratio_remeasured", r.get("ratio", 0.0)) for r in picked),
                    "n": len(picked),
                    "origins": [r["origin"] for r in picked],
                }
        best_alt = max((n for n in ALTERNATIVES if n in by), key=lambda n: by[n]["test_mean"], default=None)
        gain = by["searched"]["test_mean"] - by[best_alt]["test_mean"] if best_alt and "searched" in by else None
        table.append(
            {"arch": arch, "cost": cost, "budget": budget, "candidates": by, "best_alternative": best_alt, "gain": gain}
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet", "mobilenet"], choices=["resnet", "mobilenet"])
    parser.add_argument("--budgets", type=float, nargs="*", default=[0.25, 0.1, 0.05])
    parser.add_argument("--latency-budgets", type=float, nargs="*", default=[], help="e.g. 0.333: a third of dense")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--uniform-at",
        type=float,
        nargs="*",
        default=[],
        help="also uniform at these levels of the same cost (not alternatives)",
    )
    add_task_arguments(parser)
    parser.add_argument("--promote-top", type=int, default=0, help="search.promote.top (0: off)")
    parser.add_argument("--promote-epochs", type=int, default=1, help="search.promote.epochs")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-narrowed", dest="narrowed", action="store_false", help="skip the narrowed net")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "cluttered.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    figures = run(args)
    figures["summary"] = summarize(figures["rows"])
    figures["settings"] = {k: v for k, v in vars(args).items() if k != "out"}
    figures["wall_s"] = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    for entry in figures["summary"]:
        print(f"{entry['arch']} at {entry['cost']} {entry['budget']:g}:")
        for name, c in entry["candidates"].items():
            print(
                f"  {name:12s} test {c['test_mean']:.2f} +- {c['test_std']:.2f} (n={c['n']}), {entry['cost']} ratio "
                f"{c['ratio_mean']:.3f} (measured again {c['ratio_remeasured_mean']:.3f}), origins {c['origins']}"
            )
        if entry["gain"] is not None:
            print(f"  searched - best alternative ({entry['best_alternative']}): {entry['gain']:+.2f} points")
    print(f"wall time {figures['wall_s']:.0f} s; figures written to {out}")


if __name__ == "__main__":
    main()
