"""What ``search.keep_weights: front`` saves: the bytes of fine-tuned weights a study stores with ``all`` and with
``front``.

The same search (the test suite's tiny config: 8x8 digits, tiny-resnet width 4, random sampler, seed 0, warm start,
objectives accuracy and flops; or ``--config`` an experiment YAML) runs twice, each in a fresh work dir with the
default local stores (SQLite, artifacts in ``<workdir>/mlartifacts``): once keeping every COMPLETE trial's weights,
once only the front's. Counted: the ``model/`` files (state_dict.pt + manifest.json) in the MLflow artifact store
and in the local durable record (``<workdir>/trials/<n>/model/``), and every artifact of the study (plots, profiles
included).
The two searches see the same trials (same seed), so the difference is the removed weights alone.

    .venv/bin/python experiments/benchmarks/keep_weights.py [--n-trials 8] [--config experiments/mnist.yaml]
        [--out runs/benchmarks/keep_weights.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def _bytes(files: list[Path]) -> int:
    return sum(f.stat().st_size for f in files if f.is_file())


def _search(config_path: Path, keep: str, n_trials: int, folder: Path) -> dict[str, object]:
    import optuna

    from prunetuna.config import load_config
    from prunetuna.search import run_search
    from prunetuna.store import resolve_workspace

    config = load_config(config_path)
    config = config.model_copy(update={"search": config.search.model_copy(update={"keep_weights": keep})})
    workdir = folder / keep
    workspace = resolve_workspace(config.name, workdir, None, None)
    start = time.perf_counter()
    run_search(config, workspace, n_trials=n_trials)
    seconds = time.perf_counter() - start
    study = optuna.load_study(study_name=config.name, storage=workspace.storage_url)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    artifacts = [f for f in (workdir / "mlartifacts").rglob("*") if f.is_file()]  # Workspace.artifact_location
    return {
        "keep_weights": keep,
        "trials": len(study.trials),
        "complete": len(complete),
        "front": len(study.best_trials),
        "mlflow_model_bytes": _bytes([f for f in artifacts if f.parent.name == "model"]),
        "mlflow_all_artifact_bytes": _bytes(artifacts),
        "local_model_bytes": _bytes(list((workdir / "trials").glob("*/model/*"))),
        "search_s": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--config", type=Path, default=None, help="an experiment YAML (default: the tiny test config)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks" / "keep_weights.json")
    args = parser.parse_args()

    from prunetuna.runtime import quiet_libraries

    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="prunetuna-keep-") as folder:
        config = args.config
        if config is None:
            from conftest import tiny_config, write_config

            config = write_config(Path(folder), tiny_config("keep-weights"))
        rows = [_search(config, keep, args.n_trials, Path(folder)) for keep in ("all", "front")]
    for row in rows:
        print(
            f"keep_weights {row['keep_weights']:5s}: {row['complete']}/{row['trials']} COMPLETE, front {row['front']}; "
            f"model/ bytes in MLflow {row['mlflow_model_bytes']:,}, in the work dir {row['local_model_bytes']:,}; "
            f"all MLflow artifacts {row['mlflow_all_artifact_bytes']:,}; search {row['search_s']} s"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"n_trials": args.n_trials, "config": str(args.config or "tiny"), "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
