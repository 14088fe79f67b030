"""Shared fixtures: tiny configs (digits data, a narrow residual CNN) in a temporary folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # user_models.py, for model.target / data.target

from prunetuna.runtime import quiet_libraries  # noqa: E402 - what the CLI entry point sets, for in-process runs too

quiet_libraries()

if os.environ.get("PYTEST_XDIST_WORKER"):  # two test processes on CI's two cores: one thread each, no oversubscription
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the searches the tests start as subprocesses too
    import torch

    torch.set_num_threads(1)


def tiny_config(name: str = "tiny", **overrides: Any) -> dict[str, Any]:
    """A config that runs a trial in about a second: 8x8 digits, width-4 residual CNN, a few batches."""
    config: dict[str, Any] = {
        "name": name,
        "seed": 0,
        "model": {"builtin": "tiny-resnet", "kwargs": {"width": 4}},
        "data": {"builtin": "digits", "batch_size": 32},
        "baseline": {"epochs": 1, "lr": 0.01},
        "pruning": {"max_sparsity": 0.5, "step": 0.25},
        "finetune": {"epochs": 1, "lr": 0.001, "max_batches": 3},
        "objectives": ["accuracy", "flops"],
        "search": {"sampler": "random", "n_trials": 3},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def search_one_trial(config: Path, workdir: Path, study_name: str, below: float = 1.0) -> Any:
    """``prunetuna search CONFIG --workdir W`` through the CLI (exit 0), for a one-trial study whose trial must be
    COMPLETE below ``below`` of the dense FLOPs; the Optuna study."""
    import optuna
    from typer.testing import CliRunner

    from prunetuna.cli import app

    result = CliRunner().invoke(app, ["search", str(config), "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{workdir / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    assert study.trials[0].user_attrs["metrics"]["flops_ratio"] < below
    return study


def write_config(folder: Path, config: dict[str, Any], filename: str = "experiment.yaml") -> Path:
    path = folder / filename
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def make_config(tmp_path: Path):
    """``make_config(**overrides) -> path`` of a tiny experiment YAML in ``tmp_path``."""

    def make(filename: str = "experiment.yaml", **overrides: Any) -> Path:
        return write_config(tmp_path, tiny_config(**overrides), filename)

    return make
