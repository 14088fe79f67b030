"""Does a detector's short per-trial fine-tune rank candidates as a full fine-tune does (issue 20 item 7)?

On the digit-detection set of detection.py (same data, same dense YOLO, cached in the same work dir), a random
search of --n-trials candidates at FLOPs B with ``search.projection: relative`` (every candidate at about the
budget's cost; only the allocation differs) is run once per per-trial fine-tune *variant* (--variants: ``N`` =
``finetune.epochs: N``; ``Nd`` = the same with ``finetune.distill``, the module's ``distillation_step``: the dense
model's head outputs as soft targets). The random sampler is seeded per trial number, so every variant prunes
the same candidates (checked: their applied vectors are compared). The candidates of the first variant are then
given the full fine-tune a user runs (``prunetuna finetune``, --final-epochs); the mAP50 after it is the ranking
each variant's score is compared with: Spearman's rho, and the regret (final mAP50 of the best candidate minus that
of the candidate the variant's score picks). The score right after pruning and BN recalibration
(``accuracy_pruned``) is compared the same way.

    .venv/bin/python experiments/benchmarks/detection_proxy.py --workdir /work/bench/detection/yolov8n \
        [--model yolov8n] [--n-trials 8] [--variants 1 4 1d] [--final-epochs 10] (and detection.py's data sizes)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from detection import REPO, detection_config  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from prunetuna.config import parse_config  # noqa: E402
from prunetuna.export import final_finetune  # noqa: E402
from prunetuna.search import run_search  # noqa: E402
from prunetuna.store import TrialRecord, load_study, resolve_workspace  # noqa: E402


def variant_config(args: argparse.Namespace, data: Path, variant: str) -> dict:
    raw = detection_config(args.model, args, data)
    raw["name"] = f"proxy-{args.model}-{variant}"
    raw["finetune"] = {"epochs": int(variant.rstrip("d"))}
    if variant.endswith("d"):
        raw["finetune"]["distill"] = {"alpha": 0.5, "temperature": 2.0}
    raw["search"] = {"sampler": "random", "n_trials": args.n_trials, "projection": "relative"}
    raw["final_finetune"] = {"epochs": args.final_epochs, "seed": 1000}
    return raw


def agreement(scores: dict[int, float], final: dict[int, float]) -> dict:
    common = sorted(set(scores) & set(final))
    rho = spearmanr([scores[n] for n in common], [final[n] for n in common]).statistic
    picked = max(common, key=lambda n: scores[n])
    return {"spearman": float(rho), "regret": max(final[n] for n in common) - final[picked], "picked": picked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="yolov8n")
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--variants", nargs="+", default=["1", "4", "1d"])
    parser.add_argument("--final-epochs", type=int, default=10)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--imgsz", type=int, default=96)
    parser.add_argument("--dense-epochs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", type=Path, required=True, help="detection.py's work dir of --model")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks" / "detection_proxy.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    args.trials, args.finetune_epochs = args.n_trials, 1  # detection_config's; each variant sets its own fine-tune
    data = args.workdir / "digits-det" / "data.yaml"  # detection.py's set
    root = args.workdir / args.model  # detection.py's workspace folder: the dense model is cached there
    started = time.perf_counter()
    studies, configs, spaces = {}, {}, {}
    for variant in args.variants:
        configs[variant] = parse_config(variant_config(args, data, variant))
        spaces[variant] = resolve_workspace(configs[variant].name, root, None, None)
        run_search(configs[variant], spaces[variant])
        studies[variant] = [t for t in load_study(spaces[variant], configs[variant].name).trials if t.values]
    search_s = time.perf_counter() - started
    first = args.variants[0]
    vectors = {v: {t.number: TrialRecord.of(t).sparsity for t in ts} for v, ts in studies.items()}
    same = {v: sum(vectors[v].get(n) == s for n, s in vectors[first].items()) for v in args.variants}
    final = {}
    for trial in studies[first]:
        final[trial.number] = final_finetune(configs[first], spaces[first], trial=trial.number).metrics["accuracy"]
        print(json.dumps({"trial": trial.number, "map50_final": final[trial.number]}), flush=True)
    result = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "same_vectors_as_first": same,
        "final": final,
        "pruned": agreement({t.number: TrialRecord.of(t).metrics["accuracy_pruned"] for t in studies[first]}, final),
        "variants": {
            v: {
                **agreement({t.number: t.values[0] for t in ts}, final),
                "scores": {t.number: t.values[0] for t in ts},
            }
            for v, ts in studies.items()
        },
        "search_s": search_s,
        "wall_s": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "args"}, indent=1), flush=True)


if __name__ == "__main__":
    main()
