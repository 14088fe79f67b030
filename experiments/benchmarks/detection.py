"""Stock YOLO on the generated digit-detection set: dense mAP50, a searched front against uniform pruning at
equal FLOPs, and onnxruntime latency at batch 1 (speedup over the dense model's ONNX).

One TPE search per model with ``constraints: {flops: <budget>}`` and ``warm_start``: trial 0 is the uniform
allocation at the budget (origin ``uniform``), trial 1 the global ranking, the rest TPE, all through the same
prune -> recalibrate -> fine-tune -> mAP50 pipeline. The most accurate TPE trial within the budget is compared
with uniform; both and the dense model are exported to ONNX and timed with onnxruntime (1 thread, batch 1,
median of ``--runs``). Not measured here (see docs/benchmarks.md): a full fine-tune of the front candidates.

    .venv/bin/python experiments/benchmarks/detection.py --models yolov8n --trials 6 --out runs/bench/detection.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "experiments" / "examples" / "yolo"
sys.path.insert(0, str(EXAMPLE))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))


def _ort_ms(path: Path, imgsz: int, runs: int) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)}
    for _ in range(5):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _cli(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(EXAMPLE)])}
    subprocess.run([sys.executable, "-m", "prunetuna", *args], check=True, env=env, cwd=REPO)


def run_model(name: str, args: argparse.Namespace, data: Path, folder: Path) -> dict:
    import optuna
    import torch
    from yolo_module import YoloDetector

    from prunetuna.objectives import export_onnx

    config = {
        "name": f"det-{name}",
        "seed": 0,
        "model": {
            "target": "yolo_module:YoloDetector",
            "kwargs": {"model": f"{name}.yaml", "nc": 10, "imgsz": args.imgsz},
            "prune": "model",
        },
        "metric": {"name": "val/map50", "mode": "max"},
        "objectives": ["metric", "flops"],
        "constraints": {"flops": args.budget},
        "data": {"target": "yolo_data:YoloData", "kwargs": {"data": str(data), "imgsz": args.imgsz, "batch_size": 16}},
        "baseline": {"epochs": args.dense_epochs},
        "pruning": {"max_sparsity": 0.7, "step": 0.1},
        "finetune": {"epochs": args.finetune_epochs},
        "search": {"sampler": "tpe", "n_trials": args.trials, "warm_start": True},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    workdir = folder / f"work-{name}"
    start = time.perf_counter()
    _cli("search", str(path), "--workdir", str(workdir))
    seconds = time.perf_counter() - start
    study = optuna.load_study(study_name=config["name"], storage=f"sqlite:///{workdir / 'optuna.db'}")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    rows = [
        {
            "trial": t.number,
            "origin": t.user_attrs.get("origin", "sampler"),
            "map50": t.user_attrs["metrics"].get("val/map50"),
            "map50_pruned": t.user_attrs["metrics"].get("accuracy_pruned"),
            "flops_ratio": t.user_attrs["metrics"]["flops_ratio"],
        }
        for t in done
    ]
    uniform = next(r for r in rows if r["origin"] == "uniform")
    searched = [
        r
        for r in rows
        if r["origin"] not in ("uniform", "global") and r["flops_ratio"] <= uniform["flops_ratio"] + 1e-9
    ]
    best = max(searched, key=lambda r: r["map50"]) if searched else None
    dense_onnx = folder / f"{name}-dense.onnx"
    dense_onnx.write_bytes(
        export_onnx(
            YoloDetector(f"{name}.yaml", imgsz=args.imgsz).model.eval(), torch.zeros(1, 3, args.imgsz, args.imgsz)
        )
    )
    dense_ms = _ort_ms(dense_onnx, args.imgsz, args.runs)
    for row in [uniform] + ([best] if best else []):
        out = folder / f"{name}-trial{row['trial']}.onnx"
        _cli(
            "export",
            str(path),
            "--workdir",
            str(workdir),
            "--trial",
            str(row["trial"]),
            "--format",
            "onnx",
            "--out",
            str(out),
            "--force",
        )
        row["ort_ms"] = _ort_ms(out, args.imgsz, args.runs)
        row["speedup"] = dense_ms / row["ort_ms"]
    dense = study.user_attrs.get("dense", {})
    return {
        "model": name,
        "dense": dense,
        "dense_ort_ms": dense_ms,
        "uniform": uniform,
        "searched_best": best,
        "trials": rows,
        "search_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["yolov8n", "yolo11n"])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--imgsz", type=int, default=96)
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--val", type=int, default=64)
    parser.add_argument("--dense-epochs", type=int, default=30)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "detection.json")
    args = parser.parse_args()
    from make_digits_detection import write_digit_detection

    folder = Path(tempfile.mkdtemp(prefix="bench-detection-"))
    data = write_digit_detection(folder / "digits-det", train=args.train, val=args.val, imgsz=args.imgsz, seed=0)
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "models": []}
    for name in args.models:
        results["models"].append(run_model(name, args, data, folder))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(json.dumps(results["models"][-1], indent=2), flush=True)


if __name__ == "__main__":
    main()
