"""What acknowledging a trial of a shared study costs: the upload its trial waits for before Optuna is told.

In a shared study (any storage but SQLite, or a tracking server) a finished trial's final metrics, params and tags
(one ``log_batch``) and its ``model/state_dict.pt`` and ``model/manifest.json`` (two ``log_artifact``) are written
to the tracking store before Optuna is told (``TrialWriter.finish``). This times those three calls against an
``mlflow server`` on 127.0.0.1 (SQLite backend, artifacts proxied to a local folder), for the *dense* weights of

- the embedded default (``experiments/mnist.yaml``: tiny-resnet width 48), and
- torchvision's resnet50 (``weights=None``; 25.6 M parameters),

dense being the upper bound: a pruned trial's state_dict is smaller. Median and max over --repeats uploads, each to
a new run. Loopback only: a remote server adds the network's transfer time (size / bandwidth).

    .venv/bin/python experiments/benchmarks/upload_cost.py [--repeats 7] [--out runs/benchmarks/upload_cost.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def _models() -> dict[str, object]:
    import torchvision

    from prunetuna.config import load_config
    from prunetuna.workload import build_model

    config = load_config(REPO / "experiments" / "mnist.yaml")
    return {
        "embedded default (tiny-resnet w48)": build_model(config.model.model_copy(update={"checkpoint": None})),
        "torchvision resnet50": torchvision.models.resnet50(weights=None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks" / "upload_cost.json")
    args = parser.parse_args()

    import torch
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    from services import mlflow_server

    results = []
    with tempfile.TemporaryDirectory() as folder, mlflow_server(Path(folder) / "server") as url:
        client = MlflowClient(tracking_uri=url)
        experiment = client.create_experiment("upload-cost")
        for label, model in _models().items():
            model_dir = Path(folder) / label.split()[0] / "model"
            model_dir.mkdir(parents=True)
            torch.save(model.state_dict(), model_dir / "state_dict.pt")
            (model_dir / "manifest.json").write_text(json.dumps({"trial": 0, "sparsity": {"layer": 0.5}}))
            size = (model_dir / "state_dict.pt").stat().st_size
            seconds = []
            for _ in range(args.repeats):
                run = client.create_run(experiment).info.run_id
                client.log_batch(run, params=[Param(f"sparsity.l{i}", "0.5") for i in range(50)])
                start = time.perf_counter()
                stamp = int(time.time() * 1000)
                client.log_batch(
                    run,
                    metrics=[Metric(k, 0.5, stamp, 0) for k in ("accuracy", "flops", "params", "score")],
                    params=[Param(f"sparsity.l{i}", "0.5") for i in range(50)],
                    tags=[RunTag("optuna.state", "COMPLETE")],
                )
                for name in ("state_dict.pt", "manifest.json"):
                    client.log_artifact(run, str(model_dir / name), "model")
                seconds.append(time.perf_counter() - start)
            row = {"model": label, "bytes": size, "median_s": median(seconds), "max_s": max(seconds)}
            results.append(row)
            print(f"{label:36s} {size / 1e6:8.2f} MB   ack median {row['median_s']:.3f} s  max {row['max_s']:.3f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"repeats": args.repeats, "results": results}, indent=2))


if __name__ == "__main__":
    main()
