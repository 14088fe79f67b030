"""The edge-era timm classifiers of ``model_zoo.py --edge``: the list, their 64x64 data, and the space check.

Each model (random weights, 4 classes, 3x64x64 inputs) gets, in a process of its own, the space check
(:data:`SPACE_CHECK`: torch-pruning's dependency graph, measured as ``space.graph_cost`` in CPU seconds and peak
GB, the dimensions before and after the pre-flight check), then ``model_zoo.full``: a 3-trial search and the export
of its most pruned trial as ONNX and TorchScript.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# 2022-2024 designs edge teams pick; img_size where the model's attention biases are sized for it.
# efficientformer_l1 is left out: its last stage's attention biases are fixed at 7x7 (no img_size argument),
# so it does not run on 64x64 inputs at all.
_EDGE_NAMES = {
    "mobilenetv4_conv_small": {},
    "mobilenetv4_hybrid_medium": {},
    "fastvit_t8": {},
    "efficientvit_b0": {},  # MIT: linear attention
    "efficientvit_m0": {},  # MSRA: cascaded group attention
    "efficientformerv2_s0": {"img_size": 64},
    "edgenext_xx_small": {},
    "levit_128s": {"img_size": 64},
    "repvit_m0_9": {},
    "ghostnetv2_100": {},
    "mobilevitv2_050": {},
    "mobileone_s0": {},
    "tiny_vit_5m_224": {},
    "hgnetv2_b0": {},
    "repghostnet_050": {},
    "convnextv2_atto": {},
    "starnet_s1": {},
    "swiftformer_xs": {},
}
EDGE: dict[str, tuple[str, dict]] = {
    name: ("timm:create_model", {"model_name": name, "pretrained": False, "num_classes": 4, **extra})
    for name, extra in _EDGE_NAMES.items()
}


class QuadrantImages(pl.LightningDataModule):
    """128 random 3x``size``x``size`` images labelled by their brightest quadrant (96 train, 32 validation)."""

    def __init__(self, n: int = 128, batch_size: int = 32, size: int = 64) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, size, size, generator=generator)
        h = size // 2
        quadrants = [self.x[..., :h, :h], self.x[..., :h, h:], self.x[..., h:, :h], self.x[..., h:, h:]]
        self.y = torch.stack([q.sum(dim=(1, 2, 3)) for q in quadrants], 1).argmax(dim=1)
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x[:96], self.y[:96]), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x[96:], self.y[96:]), batch_size=self.batch_size)


SPACE_CHECK = """
import io, json, sys, contextlib, yaml
from prunetuna.config import parse_config
from prunetuna.spaces import PruningSpace, preflight
from prunetuna.workload import load_workload
config = parse_config(yaml.safe_load(open(sys.argv[1])), sys.argv[1])
workload = load_workload(config)
space = PruningSpace.from_config(config.pruning, workload.model, workload.example, check=False)
cost = space.graph_cost
row = {"graph_cpu_s": round(cost.cpu_seconds, 2), "graph_s": round(cost.seconds, 2), "graph_gb": round(cost.peak_gb, 3),
       "dims_total": len(space.dimensions)}
kept, broken = preflight(space, label="model")
row["dims_kept"] = len(kept.dimensions)
row["dropped"] = [f"{b.dimension.name}: {b.error}"[:160] for b in broken][:3]
print("ROW " + json.dumps(row), flush=True)
"""


def space_check(config: Path, limit: float = 300.0) -> dict:
    """The graph cost and the dimensions kept by the pre-flight, in a fresh process (``limit`` seconds)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO)])}
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-c", SPACE_CHECK, str(config)], capture_output=True, text=True, env=env, timeout=limit
        )
    except subprocess.TimeoutExpired:
        return {"space_error": f"no space within {limit:g} s", "space_s": round(time.perf_counter() - start, 1)}
    rows = [line[4:] for line in done.stdout.splitlines() if line.startswith("ROW ")]
    row = json.loads(rows[-1]) if rows else {}
    if not rows:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        row["space_error"] = lines[-1][:300] if lines else f"exit {done.returncode}"
    row["space_s"] = round(time.perf_counter() - start, 1)
    return row


def edge_config(base: dict) -> dict:
    """The zoo's search config for a 64x64 edge model."""
    return {**base, "data": {"target": "_zoo_edge:QuadrantImages", "kwargs": {"size": 64}, "batch_size": 32}}


def write_config(folder: Path, config: dict) -> Path:
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def markdown(rows: list[dict]) -> str:
    """The rows as the table of docs/benchmarks.md."""
    lines = [
        "| model | graph CPU-s | graph GB | dims kept / found | search (failed trials) | FLOPs ratio "
        "| ONNX / TorchScript "
        "| error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        flops = "-".join(f"{v:.3f}" for v in r["flops_ratio"]) if r.get("flops_ratio") else "-"
        search = ("ok" if r.get("search_ok") else "failed") if "search_ok" in r else "-"
        if "trials_failed" in r:
            search += f" ({r['trials_failed']})"
        export = " / ".join(
            ("ok" if r[f"{f}_ok"] else "failed") if f"{f}_ok" in r else "-" for f in ("onnx", "torchscript")
        )
        error = r.get("space_error") or r.get("error") or r.get("onnx_error") or r.get("torchscript_error") or ""
        lines.append(
            f"| {r['model']} | {r.get('graph_cpu_s', '-')} | {r.get('graph_gb', '-')} | {r.get('dims_kept', '-')} / "
            f"{r.get('dims_total', '-')} | {search} | {flops} | {export} | {error[:120]} |"
        )
    return "\n".join(lines)
