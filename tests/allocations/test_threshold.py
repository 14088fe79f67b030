"""The sensitivity-threshold allocation (FastNAS / AIMET): monotone in its threshold, fitted to a FLOPs level
within one channel per dimension on a real scan, and enqueued as the ``sensitivity`` baseline of a search,
with the built-in classifier and with a user's LightningModule scored on its own metric."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.allocations import SensitivityScan, ThresholdAllocation, fit_threshold
from prunetuna.cli import app
from prunetuna.config import parse_config
from prunetuna.search import Baselines, build_plan, check_inputs

runner = CliRunner()


def test_each_dimension_takes_the_largest_ratio_under_the_threshold() -> None:
    scan = SensitivityScan(0.9, [0.25, 0.5, 0.75], {"a": [0.9, 0.8, 0.5], "b": [0.85, 0.88, 0.7]})
    allocation = ThresholdAllocation(scan, {"a": 0.75, "b": 0.5})
    assert allocation(0.0) == {"a": 0.0, "b": 0.0}
    at = allocation(0.1 + 1e-5)  # a: drop 0 at 0.25, 0.1 at 0.5; b: drop 0.05 at 0.25 (0.02 at 0.5: the worse stays)
    assert math.isclose(at["a"], 0.5, abs_tol=1e-3) and at["b"] == 0.5  # b capped by its bound
    assert allocation(0.02)["b"] < 0.25 < allocation(0.06)["b"]  # interpolated between grid points
    ratios = [allocation(t / 100)["a"] for t in range(60)]
    assert ratios == sorted(ratios) and allocation(allocation.highest) == {"a": 0.75, "b": 0.5}


def test_fitted_to_a_flops_level_within_one_channel(tmp_path: Path) -> None:
    config = parse_config(
        tiny_config(
            "thr",
            model={"builtin": "tiny-resnet", "kwargs": {"width": 8}},
            pruning={"max_sparsity": 0.75, "step": 0.05},
            constraints={"flops": 0.5},
            search={"baselines": ["sensitivity"]},
        )
    )
    plan = build_plan(check_inputs(config), tmp_path)
    assert plan.scan is not None and set(plan.scan.accuracy) == set(plan.space.names)
    baselines = Baselines(plan, "flops", ("sensitivity",))
    channels = {d.name: d.channels for d in plan.space.dimensions}
    for level in (0.5, 0.3):
        fit = fit_threshold(baselines.threshold, lambda v, lv=level: baselines.ratio_of(v) <= lv, channels)
        assert fit is not None
        assert baselines.ratio_of(fit.vector) <= level < baselines.ratio_of(fit.below)
        assert all(abs(fit.vector[n] - fit.below[n]) * channels[n] < 1 for n in channels), (fit.vector, fit.below)
        assert baselines.fit("sensitivity", level) == fit.vector


def _search(tmp_path: Path, config: dict) -> optuna.Study:
    path = write_config(tmp_path, config)
    result = runner.invoke(app, ["search", str(path), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    return optuna.load_study(study_name=config["name"], storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")


def test_a_search_enqueues_it_beside_uniform_and_global(tmp_path: Path) -> None:
    study = _search(
        tmp_path,
        tiny_config(
            "thr",
            pruning={"max_sparsity": 0.75, "step": 0.05},
            constraints={"flops": 0.5},
            search={"n_trials": 3, "baselines": ["uniform", "global", "sensitivity"]},
        ),
    )
    assert [t.user_attrs["origin"] for t in study.trials] == ["uniform", "global", "sensitivity"]
    assert all(t.state.name == "COMPLETE" and t.user_attrs["metrics"]["flops_ratio"] <= 0.5 for t in study.trials)


def test_a_user_module_is_scanned_on_its_own_metric(tmp_path: Path) -> None:
    model = {"builtin": None, "target": "user_modules:F1Module", "kwargs": {"channels": 8}, "prune": "net"}
    study = _search(
        tmp_path,
        tiny_config(
            "thrf1",
            model=model,
            metric={"name": "val/f1", "mode": "max"},
            objectives=["metric", "flops"],
            pruning={"max_sparsity": 0.75, "step": 0.05},
            constraints={"flops": 0.6},
            search={"sampler": "random", "n_trials": 1, "baselines": ["sensitivity"]},
        ),
    )
    [trial] = study.trials
    assert trial.user_attrs["origin"] == "sensitivity" and trial.state.name == "COMPLETE"
    assert trial.user_attrs["metrics"]["flops_ratio"] <= 0.6
    [cache] = (tmp_path / "w").glob("sensitivity-*.json")
    scan = json.loads(cache.read_text())
    assert scan["dense_accuracy"] == study.user_attrs["dense"]["val/f1"]  # the module's macro F1, not top-1
