"""search.projection: relative: every sampled candidate is scaled onto a ratio budget (at about equal cost),
not only the ones over it; toward_max leaves a sample under the budget where it was drawn."""

from __future__ import annotations

from pathlib import Path

import optuna
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app

runner = CliRunner()


def test_relative_projection_puts_every_sample_on_the_budget(tmp_path: Path) -> None:
    config = tiny_config(
        "rel",
        model={"builtin": "tiny-resnet", "kwargs": {"width": 8}},
        pruning={"max_sparsity": 0.8, "step": 0.05},
        constraints={"flops": 0.5},
        search={"sampler": "random", "n_trials": 3, "warm_start": False, "projection": "relative"},
    )
    path = write_config(tmp_path, config)
    result = runner.invoke(app, ["search", str(path), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="rel", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    ratios = [t.user_attrs["metrics"]["flops_ratio"] for t in study.trials]
    assert all(0.42 <= r <= 0.5 for r in ratios), ratios
    assert all(t.user_attrs["budget"] == "projected" for t in study.trials)
