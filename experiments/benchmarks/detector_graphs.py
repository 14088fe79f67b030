"""torchvision's detectors: what building their pruning space costs (torch-pruning's dependency graph, measured by
``space.graph_cost``: CPU seconds, wall seconds, peak GB) and how many dimensions it finds. Random weights, 3
classes, one 320x320 example, ``max_sparsity`` 0.5, step 0.1; one model per process.

    .venv/bin/python experiments/benchmarks/detector_graphs.py [--archs ssdlite320_mobilenet_v3_large ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARCHS = ["ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn"]
ONE = """
import json, sys, torch
from torchvision.models import detection
from prunetuna.spaces import GraphLimits, PruningSpace
arch = sys.argv[1]
model = getattr(detection, arch)(weights=None, weights_backbone=None, num_classes=3).eval()
space = PruningSpace.from_model(model, torch.zeros(1, 3, 320, 320), max_sparsity=0.5, step=0.1,
                                graph_limits=GraphLimits(seconds=120.0, memory_gb=6.0))
cost = space.graph_cost
print(json.dumps({"model": arch, "dimensions": len(space.dimensions), "graph_cpu_s": round(cost.cpu_seconds, 2),
                  "graph_wall_s": round(cost.seconds, 2), "graph_peak_gb": round(cost.peak_gb, 3)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=ARCHS)
    for arch in parser.parse_args().archs:
        done = subprocess.run([sys.executable, "-c", ONE, arch], capture_output=True, text=True, cwd=REPO)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        print(lines[-1] if lines else json.dumps({"model": arch, "error": done.stderr.strip().splitlines()[-1:]}))


if __name__ == "__main__":
    main()
