"""Budgets, three objectives, tolerance and scalarized modes, through the CLI on real stores."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app

runner = CliRunner()


def _search(tmp_path: Path, name: str, **overrides) -> tuple[optuna.Study, dict]:
    config = write_config(tmp_path, tiny_config(name, **overrides), f"{name}.yaml")
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / name)])
    assert result.exit_code == 0, result.output
    shown = runner.invoke(app, ["report", str(config), "--workdir", str(tmp_path / name), "--json"])
    assert shown.exit_code == 0, shown.output
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / name / 'optuna.db'}")
    return study, json.loads(shown.stdout)


def test_budget_every_finished_trial_within_it(tmp_path: Path) -> None:
    study, report = _search(
        tmp_path,
        "budget",
        pruning={"max_sparsity": 0.75, "step": 0.05},
        constraints={"flops": 0.2},
        search={"sampler": "tpe", "n_trials": 4, "warm_start": False},
    )
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4
    for trial in complete:
        assert trial.user_attrs["metrics"]["flops_ratio"] <= 0.2
        assert trial.user_attrs["feasible"] is True
        assert trial.constraints["flops"] == pytest.approx((trial.user_attrs["metrics"]["flops_ratio"] - 0.2) / 0.2)
    projected = [t for t in report["trials"] if t["budget"] == "projected"]
    assert projected, "the random start samples mostly over budget; they are projected, not wasted"
    for item in projected:
        trial = study.trials[item["number"]]
        assert all(item["sparsity"][k] >= trial.params[f"sparsity.{k}"] for k in item["sparsity"])
    assert all(t["feasible"] for t in report["trials"])
    assert report["constraints"] == {"flops": 0.2}


def test_unreachable_budget_is_bad_input_before_any_fine_tune(tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_config("tight", pruning={"max_sparsity": 0.5}, constraints={"flops": 0.01}))
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and "constraints.flops: 0.01 cannot be met" in line and "lowest reachable is 0." in line
    assert not list((tmp_path / "w").glob("baseline-*")), "nothing was trained"
    config = write_config(tmp_path, tiny_config("abs", constraints={"latency_ms": 1e-6}), "abs.yaml")
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w2")])
    assert result.exit_code == 2 and "constraints.latency_ms" in result.stderr and " ms" in result.stderr


def test_three_objectives_with_onnxruntime_latency(tmp_path: Path) -> None:
    study, report = _search(
        tmp_path,
        "three",
        objectives=["accuracy", "flops", "latency"],
        latency={"backend": "onnxruntime", "repeats": 10, "warmup": 2},
        search={"n_trials": 3},
    )
    assert len(study.directions) == 3
    assert all(len(t.values) == 3 for t in study.trials)
    for trial in report["trials"]:
        metrics = trial["metrics"]
        assert metrics["latency_ms"] > 0 and metrics["latency_ratio"] > 0
        assert metrics["speedup"] == report["dense"]["latency_ms"] / metrics["latency_ms"]
        assert isinstance(trial["slow_for_flops"], bool)
    assert any(t["pareto"] for t in report["trials"])


def test_tolerance_mode_minimizes_the_cost_within_the_accuracy_drop(tmp_path: Path) -> None:
    study, report = _search(
        tmp_path, "tol", objectives=["flops"], tolerance={"accuracy_drop": 0.5}, search={"n_trials": 3}
    )
    assert [d.name for d in study.directions] == ["MINIMIZE"]
    assert report["mode"] == "tolerance" and report["tolerance"] == 0.5
    within = [t for t in report["trials"] if t["feasible"]]
    for trial in report["trials"]:
        drop = report["dense"]["accuracy"] - trial["metrics"]["accuracy"]
        assert trial["feasible"] == (drop <= 0.5)
    if within:
        best = min(within, key=lambda t: t["metrics"]["flops_ratio"])
        assert report["best"] == best["number"]
    table = runner.invoke(app, ["report", str(tmp_path / "tol.yaml"), "--workdir", str(tmp_path / "tol")])
    assert "within tolerance" in table.stdout


def test_scalarized_mode_is_one_number(tmp_path: Path) -> None:
    study, report = _search(
        tmp_path, "scal", objectives=["accuracy", "flops"], scalarize={"flops": 0.2}, search={"n_trials": 2}
    )
    assert [d.name for d in study.directions] == ["MAXIMIZE"]
    for trial in study.trials:
        metrics = trial.user_attrs["metrics"]
        assert trial.values[0] == metrics["score"] == metrics["accuracy"] - 0.2 * metrics["flops_ratio"]
    assert report["best"] == max(study.trials, key=lambda t: t.values[0]).number


def test_mode_change_on_an_existing_study_is_refused(tmp_path: Path) -> None:
    _search(tmp_path, "same", objectives=["accuracy", "flops"], search={"n_trials": 1})
    config = write_config(
        tmp_path, tiny_config("same", objectives=["accuracy", "flops"], scalarize={"flops": 1.0}), "same2.yaml"
    )
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "same")])
    assert result.exit_code == 2 and "already exists" in result.stderr
