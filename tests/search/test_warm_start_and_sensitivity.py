from __future__ import annotations

import json
from pathlib import Path

import optuna
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app

runner = CliRunner()


def test_baselines_enqueued_tagged_and_fine_tuned(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        tiny_config(
            "warm",
            pruning={"max_sparsity": 0.75, "step": 0.05},
            constraints={"flops": 0.5},
            search={"n_trials": 4, "sampler": "tpe"},
        ),
    )
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="warm", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    first = study.trials[:2]
    assert [t.user_attrs["origin"] for t in first] == ["uniform", "global"]
    assert all(t.state.name == "COMPLETE" and "accuracy" in t.user_attrs["metrics"] for t in first)
    assert all(t.user_attrs["metrics"]["flops_ratio"] <= 0.5 for t in study.trials if t.state.name == "COMPLETE")
    uniform = {v for k, v in first[0].params.items()}
    assert len(uniform) == 1, "the uniform allocation has one ratio"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'w' / 'mlflow.db'}")
    for trial in first:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["prunetuna.origin"] == trial.user_attrs["origin"] and run.info.status == "FINISHED"
    report = json.loads(runner.invoke(app, ["report", str(config), "--workdir", str(tmp_path / "w"), "--json"]).stdout)
    assert {b["origin"] for b in report["baselines"]} == {"uniform", "global"}
    assert all("accuracy_pruned" in t["metrics"] for t in report["trials"])
    table = runner.invoke(app, ["report", str(config), "--workdir", str(tmp_path / "w")]).stdout
    assert "vs uniform" in table and "vs global" in table
    # a resumed study does not enqueue them again
    again = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w"), "--n-trials", "5"])
    assert again.exit_code == 0
    study = optuna.load_study(study_name="warm", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    assert [t.user_attrs.get("origin", "sampler") for t in study.trials].count("uniform") == 1


def test_sensitivity_table_json_plot_mlflow_and_bounds(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        tiny_config(
            "sens",
            pruning={"max_sparsity": 0.75, "step": 0.25, "bounds_from_sensitivity": {"max_drop": 0.05}},
            search={"n_trials": 2},
        ),
    )
    threads = torch.get_num_threads()
    try:
        result = runner.invoke(app, ["sensitivity", str(config), "--workdir", str(tmp_path / "w"), "--threads", "1"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    assert (
        "pruned candidates (one dimension each)" in result.stderr and "18/18" in result.stderr
    )  # progress: 6 dimensions x 3 ratios
    saved = json.loads((tmp_path / "w" / "sensitivity.json").read_text())
    scan = saved["scan"]
    assert scan["grid"] == [0.25, 0.5, 0.75]
    assert len(scan["accuracy"]) == 6 and all(len(row) == 3 for row in scan["accuracy"].values())
    assert all(0.0 <= a <= 1.0 for row in scan["accuracy"].values() for a in row)
    for name, bound in saved["bounds"].items():
        row = scan["accuracy"][name]
        allowed = [r for r, a in zip(scan["grid"], row) if scan["dense_accuracy"] - a <= 0.05]
        assert bound >= 0.25 and (not allowed or bound >= allowed[0])
    assert (tmp_path / "w" / "plots" / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    assert "stem.0" in result.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'w' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sens")
    [run] = [
        r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("prunetuna.role") == "sensitivity"
    ]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"sensitivity.json", "sensitivity.png"}

    searched = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert searched.exit_code == 0, searched.output
    study = optuna.load_study(study_name="sens", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    for trial in study.trials:
        for name, bound in saved["bounds"].items():
            assert trial.distributions[f"sparsity.{name}"].high == min(bound, 0.75)
    # the search reuses the parent run the scan created, and adds the study's settings to it
    parents = [
        r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("prunetuna.role") == "study"
    ]
    assert len(parents) == 1 and {"objectives", "storage", "dense.accuracy"} <= set(parents[0].data.params)


def _two_baselines_searched(tmp_path: Path, name: str, objectives: list[str], constraints: dict) -> tuple:
    """A two-trial TPE search (the two enqueued baselines) of a net whose latency is measurable: width 64 on 8x8
    digits takes ~0.07 ms in onnxruntime and every dimension at 0.75 about a fifth of that. Config, study."""
    config = write_config(
        tmp_path,
        tiny_config(
            name,
            model={"builtin": "tiny-resnet", "kwargs": {"width": 64}},
            pruning={"max_sparsity": 0.75, "step": 0.05},
            objectives=objectives,
            constraints=constraints,
            latency={"backend": "onnxruntime", "repeats": 10, "warmup": 2},
            search={"n_trials": 2, "sampler": "tpe"},
        ),
    )
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    return config, optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")


def test_under_a_latency_budget_alone_the_baselines_are_fitted_to_measured_latency(tmp_path: Path) -> None:
    # a budget of 0.6 is reachable with room for the measurement's noise
    config, study = _two_baselines_searched(tmp_path, "lat", ["accuracy", "latency"], {"latency": 0.6})
    attrs = [t.user_attrs for t in study.trials]
    assert [a.get("origin") for a in attrs] == ["uniform", "global"]
    assert all(a["warm_start_level"] == 0.6 for a in attrs)
    uniform = set(attrs[0]["sparsity"].values())
    assert len(uniform) == 1 and 0 < uniform.pop() <= 0.75, "one ratio, some pruning: fitted, not the dense model"
    assert all(t.state.name == "COMPLETE" and t.user_attrs["metrics"]["latency_ratio"] > 0 for t in study.trials)
    report = json.loads(runner.invoke(app, ["report", str(config), "--workdir", str(tmp_path / "w"), "--json"]).stdout)
    assert {(b["origin"], b["cost"]) for b in report["baselines"]} == {("uniform", "latency"), ("global", "latency")}


def test_with_a_flops_and_a_latency_budget_the_baselines_take_the_flops_level_only(tmp_path: Path) -> None:
    _, study = _two_baselines_searched(tmp_path, "both", ["accuracy", "flops"], {"flops": 0.5, "latency": 0.95})
    enqueued = [t.user_attrs for t in study.get_trials() if "origin" in t.user_attrs]  # WAITING ones too
    assert [(a["origin"], a["warm_start_level"]) for a in enqueued] == [("uniform", 0.5), ("global", 0.5)]
    assert all(a["metrics"]["flops_ratio"] <= 0.5 for a in enqueued)
