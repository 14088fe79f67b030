"""Real torchvision and timm architectures end to end: search, export (ONNX, TorchScript), checks, wall time.

For each model of ZOO (random weights, 3x32x32 random images made here, labelled by their brightest
quadrant): ``prunetuna search`` (3 trials, random sampler, 1 baseline epoch, 2 fine-tune batches),
then ``prunetuna export --trial N`` of the trial that removed the most, as ONNX and as TorchScript
(export re-checks accuracy and compares the file's outputs with torch's). Reported: dimensions
found, search ok, FLOPs ratio range of the trials, export ok per format, max output difference,
wall time. With ``--rest``, every other torchvision classification model gets the space check only
(dependency graph, pre-flight; one process each, 60 s limit by default): it either yields a search space or is
refused in one line. One model at a time, each in its own process.

With ``--edge``, the edge-era timm classifiers of ``_zoo_edge.EDGE`` instead (3x64x64 images), each first
through a space check in its own process: graph CPU seconds and peak GB (``space.graph_cost``), dimensions kept by
the pre-flight check of all found (``--space-only`` stops there).

    nice .venv/bin/python experiments/benchmarks/model_zoo.py [--rest | --rest-only] [--only resnet18,...] [--out
    runs/benchmarks/model_zoo.json]
    nice .venv/bin/python experiments/benchmarks/model_zoo.py --edge [--space-only] --out runs/benchmarks/zoo_edge.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _zoo_edge import EDGE, edge_config, markdown, space_check, write_config

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

VIT_KWARGS = {
    "image_size": 32,
    "patch_size": 8,
    "num_layers": 4,
    "num_heads": 4,
    "hidden_dim": 64,
    "mlp_dim": 128,
    "num_classes": 4,
}
ZOO: dict[str, tuple[str, dict]] = {
    "resnet18": ("torchvision.models:resnet18", {"num_classes": 4}),
    "resnet50": ("torchvision.models:resnet50", {"num_classes": 4}),
    "mobilenet_v2": ("torchvision.models:mobilenet_v2", {"num_classes": 4}),
    "mobilenet_v3_small": ("torchvision.models:mobilenet_v3_small", {"num_classes": 4}),
    "efficientnet_b0": ("torchvision.models:efficientnet_b0", {"num_classes": 4}),
    "densenet121": ("torchvision.models:densenet121", {"num_classes": 4}),
    "convnext_tiny": ("torchvision.models:convnext_tiny", {"num_classes": 4}),
    "vit (torchvision, 4 layers, 32x32)": ("torchvision.models.vision_transformer:VisionTransformer", VIT_KWARGS),
    "timm resnet18": ("timm:create_model", {"model_name": "resnet18", "pretrained": False, "num_classes": 4}),
    "timm vit_tiny (4 blocks, 32x32)": (
        "timm:create_model",
        {
            "model_name": "vit_tiny_patch16_224",
            "pretrained": False,
            "img_size": 32,
            "patch_size": 8,
            "depth": 4,
            "num_classes": 4,
        },
    ),
}


def _config(name: str, target: str, kwargs: dict) -> dict:
    return {
        "name": name,
        "seed": 0,
        "model": {"target": target, "kwargs": kwargs},
        "data": {"target": "_zoo_edge:QuadrantImages", "kwargs": {"size": 32}, "batch_size": 32},
        "baseline": {"epochs": 1, "lr": 0.01},
        "pruning": {"max_sparsity": 0.5, "step": 0.25},
        "finetune": {"epochs": 1, "lr": 0.001, "max_batches": 2},
        "objectives": ["accuracy", "flops"],
        "search": {"sampler": "random", "n_trials": 3, "warm_start": False},
    }


def _run(args: list[str], timeout: float) -> tuple[subprocess.CompletedProcess[str] | None, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO)])}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "prunetuna", *args], capture_output=True, text=True, env=env, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        done = None
    return done, time.perf_counter() - start


def _last_line(done: subprocess.CompletedProcess[str] | None) -> str:
    if done is None:
        return "timed out"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def full(label: str, target: str, kwargs: dict, folder: Path, edge: bool = False, space_only: bool = False) -> dict:
    """Search, then export the most pruned trial as ONNX and TorchScript (``edge``: 64x64 data, space check first)."""
    settings = _config("zoo", target, kwargs)
    config = write_config(folder, edge_config(settings) if edge else settings)
    row: dict = {"model": label}
    if edge:
        row.update(space_check(config))
        if "space_error" in row or not row.get("dims_kept") or space_only:
            return row
    work = ["--workdir", str(folder / "w"), "--threads", "1"]
    searched, seconds = _run(["search", str(config), *work], 1800)
    row["search_s"] = round(seconds, 1)
    row["search_ok"] = searched is not None and searched.returncode == 0
    if not row["search_ok"]:
        row["error"] = _last_line(searched)
        return row
    report = json.loads(_run(["report", str(config), "--workdir", str(folder / "w"), "--json"], 300)[0].stdout)
    trials = [t for t in report["trials"] if t["state"] == "COMPLETE"]
    row["trials_failed"] = len([t for t in report["trials"] if t["state"] == "FAIL"])
    if not trials:
        row["search_ok"], row["error"] = False, "no trial finished"
        return row
    row["dimensions"] = len(trials[0]["sparsity"]) if trials else 0
    flops = [t["metrics"]["flops_ratio"] for t in trials]
    row["flops_ratio"] = [round(min(flops), 3), round(max(flops), 3)] if flops else None
    most = max(trials, key=lambda t: sum(t["sparsity"].values()))
    for fmt in ("onnx", "torchscript"):
        out = folder / f"model.{fmt}"
        exported, seconds = _run(
            [
                "export",
                str(config),
                "--workdir",
                str(folder / "w"),
                "--trial",
                str(most["number"]),
                "--format",
                fmt,
                "--out",
                str(out),
            ],
            900,
        )
        ok = exported is not None and exported.returncode == 0
        row[f"{fmt}_ok"], row[f"{fmt}_s"] = ok, round(seconds, 1)
        if ok:
            checks = json.loads(Path(f"{out}.json").read_text())["checks"]
            row[f"{fmt}_max_abs_diff"], row[f"{fmt}_max_rel_diff"] = (
                checks["max_abs_diff_vs_torch"],
                checks["max_rel_diff_vs_torch"],
            )
        else:
            row[f"{fmt}_error"] = _last_line(exported)
    return row


SPACE_CHECK = """
import sys, time, torch, torchvision, yaml
from prunetuna.config import parse_config
from prunetuna.search import prepare_space
from prunetuna.workload import load_workload
config = parse_config(yaml.safe_load(open(sys.argv[1])), sys.argv[1])
space = prepare_space(config, load_workload(config))
print(f"dimensions {len(space.dimensions)}", file=sys.stderr)
"""


def space_only(name: str, folder: Path, limit: float = 60.0) -> dict:
    """The dependency graph and the pre-flight check only, in a fresh process under ``limit`` seconds."""
    config = folder / "experiment.yaml"
    config.write_text(
        yaml.safe_dump({**_config(name, f"torchvision.models:{name}", {"num_classes": 4}), "baseline": {"epochs": 0}})
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO)])}
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-c", SPACE_CHECK, str(config)], capture_output=True, text=True, env=env, timeout=limit
        )
        line = _last_line(done)
        outcome = (
            "space"
            if done.returncode == 0
            else ("refused" if "UserError" in done.stderr or line.startswith("prunetuna") else "error")
        )
    except subprocess.TimeoutExpired:
        line, outcome = f"no space and not refused within {limit:g} s", "timeout"
    return {"model": name, "outcome": outcome, "seconds": round(time.perf_counter() - start, 1), "line": line}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated labels of ZOO")
    parser.add_argument(
        "--rest", action="store_true", help="also the space check of every other torchvision classification model"
    )
    parser.add_argument("--rest-only", action="store_true", help="only that space check")
    parser.add_argument(
        "--rest-models",
        default="",
        help="comma-separated torchvision names for the space check (default: all the others)",
    )
    parser.add_argument("--rest-limit", type=float, default=60.0, help="seconds per model of the space check")
    parser.add_argument("--edge", action="store_true", help="the edge-era timm models (_zoo_edge.EDGE) at 64x64")
    parser.add_argument("--space-only", action="store_true", help="with --edge: graph and pre-flight only")
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "model_zoo.json"))
    args = parser.parse_args()
    zoo = EDGE if args.edge else ZOO
    chosen = [] if args.rest_only else [label for label in zoo if not args.only or label in args.only.split(",")]
    rows, rest = [], []
    for label in chosen:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            row = full(label, *zoo[label], Path(folder), edge=args.edge, space_only=args.space_only)
            row["wall_s"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.rest or args.rest_only:
        import torchvision

        done = {
            "resnet18",
            "resnet50",
            "mobilenet_v2",
            "mobilenet_v3_small",
            "efficientnet_b0",
            "densenet121",
            "convnext_tiny",
        }
        names = (
            args.rest_models.split(",")
            if args.rest_models
            else sorted(set(torchvision.models.list_models(module=torchvision.models)) - done)
        )
        for name in names:
            with tempfile.TemporaryDirectory() as folder:
                rest.append(space_only(name, Path(folder), args.rest_limit))
            print(json.dumps(rest[-1]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"models": rows, "rest": rest}, indent=2))
    if args.edge:
        print(markdown(rows))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
