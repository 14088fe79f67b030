"""Stock YOLO on the generated digit-detection set, searched on mAP50 at a FLOPs budget, and every candidate a user
would weigh given the same full fine-tune: the issue-20 benchmark.

Per model (``--models yolov8n yolo11n``): the dense model is trained ``--dense-epochs`` by the example's
LightningModule (ultralytics' loss); one TPE search with ``constraints: {flops: B}`` and ``warm_start`` (trial 0 is
uniform pruning at the budget, trial 1 the global ranking, the rest TPE; every trial pruned, BN-recalibrated,
fine-tuned ``--finetune-epochs`` and scored on mAP50); then up to five candidates get the same full fine-tune,
``prunetuna finetune`` (``final_finetune``: ``--final-epochs`` epochs, a fresh seed): the trial that
``export --best --max-flops B`` selects (``searched``), uniform, global, and the next best feasible TPE trials by
search score. Reported per candidate: FLOPs ratio, mAP50 right after pruning, after the search's fine-tune and after
the full one, and onnxruntime latency at batch 1 (one thread, prunetuna's own ``measure_latency``, the dense model
timed the same way in the same process) at the trained input size and at ``--latency-imgsz`` (320: what a camera
runs; the nets are fully convolutional); per model the Spearman rank correlation between the search's score and
the fully fine-tuned score over the candidates. Resumable: rerun with the same ``--workdir``.

    .venv/bin/python experiments/benchmarks/detection.py --models yolov8n yolo11n --workdir /work/bench/detection \
        [--imgsz 96 --train 512 --val 128 --dense-epochs 30 --trials 12 --finetune-epochs 2 --final-epochs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "experiments" / "examples" / "yolo"
sys.path[:0] = [str(EXAMPLE), str(REPO)]
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))

from scipy.stats import spearmanr  # noqa: E402

from prunetuna.config import parse_config  # noqa: E402
from prunetuna.export import final_finetune, rebuild_trial, select_trial  # noqa: E402
from prunetuna.objectives import LatencySettings, measure_latency  # noqa: E402
from prunetuna.search import run_search  # noqa: E402
from prunetuna.store import TrialRecord, load_study, resolve_workspace  # noqa: E402

MAX_CANDIDATES = 5


def detection_config(name: str, args: argparse.Namespace, data: Path) -> dict:
    return {
        "name": f"det-{name}" + ("" if args.cost == "flops" else f"-{args.cost}"),
        "seed": 0,
        "model": {
            "target": "yolo_module:YoloDetector",
            "kwargs": {"model": f"{name}.yaml", "nc": 10, "imgsz": args.imgsz},
            "prune": "model",
        },
        "metric": {"name": "val/map50", "mode": "max"},
        "objectives": ["metric", args.cost],
        "constraints": {args.cost: args.budget},
        "data": {"target": "yolo_data:YoloData", "kwargs": {"data": str(data), "imgsz": args.imgsz, "batch_size": 16}},
        "baseline": {"epochs": args.dense_epochs},
        "pruning": {"max_sparsity": 0.7, "step": 0.1},
        "finetune": {"epochs": args.finetune_epochs},
        "final_finetune": {"epochs": args.final_epochs, "seed": 1000},
        "search": {"sampler": "tpe", "n_trials": args.trials, "warm_start": True},
    }


def latency_budget(config: dict, args: argparse.Namespace) -> dict:
    """Under ``--cost latency`` each trial's onnxruntime latency (batch 1, one thread, the trained input size)."""
    if args.cost == "latency":
        config["latency"] = {"backend": "onnxruntime", "threads": 1}
    return config


def candidates(study, budget: float, cost: str, most: int) -> dict[int, tuple[object, list[str]]]:  # noqa: ANN001
    """Trial number -> (trial, its labels): ``searched`` (what ``export --best --max-flops`` takes), uniform,
    global, then the best other feasible trials by search score; at most ``most`` trials, each once. Under a latency
    budget ``--best`` takes the best feasible trial (the search measured each trial's latency ratio)."""
    chosen: dict[int, tuple[object, list[str]]] = {}

    def take(trial, label: str) -> None:  # noqa: ANN001
        chosen.setdefault(trial.number, (trial, []))[1].append(label)

    take(select_trial(study, max_flops=budget if cost == "flops" else None), "searched")
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    for trial in done:
        origin = TrialRecord.of(trial).origin
        if origin in ("uniform", "global"):
            take(trial, origin)
    feasible = [
        t
        for t in done
        if t.number not in chosen
        and TrialRecord.of(t).metrics.get(f"{cost}_ratio", 1.0) <= budget + 1e-9
        and TrialRecord.of(t).is_feasible
    ]
    for trial in sorted(feasible, key=lambda t: -t.values[0])[: max(0, most - len(chosen))]:
        take(trial, "tpe")
    return chosen


def head_prefix(name: str) -> str:
    """The Detect (or Segment) head's layer prefix in the model, found by module type: ``model.22.`` for yolov8n."""
    from ultralytics.nn.modules import Detect
    from ultralytics.nn.tasks import DetectionModel

    layers = DetectionModel(f"{name}.yaml", nc=10, verbose=False).model
    return f"model.{next(i for i, m in enumerate(layers) if isinstance(m, Detect))}."


def head_and_rest(sparsity: dict[str, float], prefix: str) -> dict[str, float]:
    """Mean sparsity of the head's inner convolutions (its prediction convs and DFL are never pruned) and of the
    backbone and neck: how much of the head a candidate prunes."""
    head = [v for k, v in sparsity.items() if k.startswith(prefix)]
    rest = [v for k, v in sparsity.items() if not k.startswith(prefix)]
    return {"sparsity_head": sum(head) / max(len(head), 1), "sparsity_rest": sum(rest) / max(len(rest), 1)}


def latency_ms(model, imgsz: int) -> float:  # noqa: ANN001
    import torch

    settings = LatencySettings(backend="onnxruntime", threads=1, repeats=100, warmup=10, cache=False)
    return measure_latency(model.eval(), torch.zeros(1, 3, imgsz, imgsz), settings).median_ms


def run_model(name: str, args: argparse.Namespace, data: Path, root: Path) -> dict:
    config = parse_config(latency_budget(detection_config(name, args, data), args))
    workspace = resolve_workspace(config.name, root / name, None, None)
    started = time.perf_counter()
    run_search(config, workspace)
    search_s = time.perf_counter() - started
    study = load_study(workspace, config.name)
    dense_map = study.user_attrs.get("dense", {}).get("accuracy")
    rows = []
    prefix = head_prefix(name)
    sizes = dict.fromkeys((args.imgsz, args.latency_imgsz))  # the trained size, and the size a camera runs at
    dense_ms: dict[int, float] = {}
    for trial, labels in candidates(study, args.budget, args.cost, args.candidates).values():
        record = TrialRecord.of(trial)
        started = time.perf_counter()
        done = final_finetune(config, workspace, trial=trial.number)
        rebuilt = rebuild_trial(config, workspace, trial)
        for size in sizes:
            dense_ms.setdefault(size, latency_ms(rebuilt.workload.model, size))
        ms = {size: latency_ms(rebuilt.model, size) for size in sizes}
        row = {
            "model": name,
            "candidate": "=".join(labels),
            "trial": trial.number,
            "origin": record.origin,
            "flops_ratio": record.metrics["flops_ratio"],
            "latency_ratio_searched": record.metrics.get("latency_ratio"),  # at the trained size, in the search
            "map50_pruned": record.metrics.get("accuracy_pruned"),
            "map50_search": record.metrics["accuracy"],
            "map50_final": done.metrics["accuracy"],
            **head_and_rest(record.sparsity, prefix),
            "final_s": time.perf_counter() - started,
            "ort_ms": {str(size): v for size, v in ms.items()},
            "speedup": {str(size): dense_ms[size] / v for size, v in ms.items()},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    rho = spearmanr([r["map50_search"] for r in rows], [r["map50_final"] for r in rows]).statistic
    return {
        "model": name,
        "dense_map50": dense_map,
        "dense_ort_ms": {str(size): v for size, v in dense_ms.items()},
        "search_s": search_s,
        "n_trials": len(study.trials),
        "spearman_search_vs_final": float(rho),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["yolov8n", "yolo11n"])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--cost", choices=["flops", "latency"], default="flops", help="what --budget caps")
    parser.add_argument("--candidates", type=int, default=MAX_CANDIDATES, help="fully fine-tuned per model")
    parser.add_argument("--imgsz", type=int, default=96)
    parser.add_argument("--train", type=int, default=512)
    parser.add_argument("--val", type=int, default=128)
    parser.add_argument("--dense-epochs", type=int, default=30)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--final-epochs", type=int, default=20)
    parser.add_argument("--latency-imgsz", type=int, default=320, help="also timed at this input side")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks" / "detection.json")
    args = parser.parse_args()
    import torch
    from make_digits_detection import write_digit_detection

    torch.set_num_threads(args.threads)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-detection-"))
    data = root / "digits-det" / "data.yaml"
    if not data.is_file():
        data = write_digit_detection(root / "digits-det", train=args.train, val=args.val, imgsz=args.imgsz, seed=0)
    started = time.perf_counter()
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "models": []}
    for name in args.models:
        results["models"].append(run_model(name, args, data, root))
        results["wall_s"] = time.perf_counter() - started
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(json.dumps({k: v for k, v in results["models"][-1].items() if k != "rows"}), flush=True)


if __name__ == "__main__":
    main()
