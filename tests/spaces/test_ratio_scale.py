from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.config import parse_config
from prunetuna.errors import UserError
from prunetuna.spaces import PruningSpace, sampler_params
from prunetuna.sparsity import from_params
from prunetuna.workload import TinyResNet


def _space(scale: str) -> PruningSpace:
    return PruningSpace.from_model(
        TinyResNet(width=4), torch.randn(2, 1, 28, 28), max_sparsity=0.75, step=0.25, scale=scale
    )


def test_log_scale_draws_kept_fractions_and_applies_sparsity() -> None:
    space = _space("log")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        vector = space.suggest(trial)
        assert set(trial.params) == {f"kept.{name}" for name in space.names}
        for name, ratio in vector.items():
            assert 0.0 <= ratio <= 0.75 and ratio == pytest.approx(1 - trial.params[f"kept.{name}"], abs=1e-6)
        assert from_params(trial.params) == vector  # the fallback reading of params gives the same vector
        study.tell(trial, 0.0)
    dist = study.trials[0].distributions[f"kept.{space.names[0]}"]
    assert dist.log and dist.low == 0.25 and dist.high == 1.0


def test_sampler_params_stay_in_the_distributions() -> None:
    exact = {name: 0.3712 for name in _space("linear").names}
    assert set(sampler_params(_space("linear"), exact).values()) == {0.25}  # nearest grid point
    assert set(sampler_params(_space("log"), exact).values()) == {0.6288}  # exact kept fraction


def test_scale_config() -> None:
    assert parse_config(tiny_config()).pruning.scale == "linear"
    assert parse_config(tiny_config(pruning={"scale": "log"})).pruning.scale == "log"
    with pytest.raises(UserError, match="scale"):
        parse_config(tiny_config(pruning={"scale": "exp"}))
    with pytest.raises(UserError, match="scale 'log'"):
        parse_config(tiny_config(pruning={"scale": "log", "method": "nm"}))


def test_log_scale_search_with_baselines(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        tiny_config(
            "logscale",
            pruning={"scale": "log", "max_sparsity": 0.75},
            constraints={"flops": 0.5},
            search={"sampler": "tpe", "n_trials": 4},
        ),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Fixed parameter")  # enqueued params inside the distributions
        result = CliRunner().invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="logscale", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    assert [t.user_attrs.get("origin") for t in study.trials[:2]] == ["uniform", "global"]
    for trial in study.trials:
        assert trial.state.name == "COMPLETE" and trial.user_attrs["metrics"]["flops_ratio"] <= 0.5
        assert all(k.startswith("kept.") for k in trial.params)
