"""The CLI end to end: a real search on SQLite + a real MLflow store, resumed; and every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from conftest import HERE, tiny_config, write_config
from prunetuna.cli import app
from prunetuna.training import evaluate_accuracy
from prunetuna.workload import TinyResNet, digits

runner = CliRunner()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "prunetuna", *args], capture_output=True, text=True, env=env, timeout=600
    )


def _study(workdir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / 'optuna.db'}")


def _runs(workdir: Path, name: str) -> tuple[list, list]:
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("prunetuna.role") == "study"]
    children = [r for r in runs if r.data.tags.get("prunetuna.role") == "trial"]
    return parents, children


def test_search_resume_report_end_to_end(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, tiny_config("e2e", finetune={"epochs": 2}, search={"sampler": "tpe", "n_trials": 3})
    )
    workdir = tmp_path / "work"

    first = _cli("search", str(config), "--workdir", str(workdir))
    assert first.returncode == 0, first.stderr
    assert "trial   0" in first.stderr and "3/3 finished" in first.stderr
    assert (
        f"see: prunetuna report {config} --workdir {workdir}\n" in first.stderr
    )  # the next command, pointed at the same study
    assert len(list(workdir.glob("baseline-*.pt"))) == 1

    resumed = _cli("search", str(config), "--workdir", str(workdir), "--n-trials", "5")
    assert resumed.returncode == 0, resumed.stderr
    assert "5/5 finished trials (2 run now" in resumed.stderr
    again = _cli("search", str(config), "--workdir", str(workdir), "--n-trials", "5")
    assert again.returncode == 0 and "5/5 finished trials (0 run now" in again.stderr

    study = _study(workdir, "e2e")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 5
    names = study.user_attrs["dimensions"]
    assert len(names) == 6 and len({tuple(sorted(t.params.items())) for t in study.trials}) == 5

    parents, children = _runs(workdir, "e2e")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.info.run_name for r in children) == [f"trial-{n}" for n in range(5)]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    for run in children:
        number = int(run.data.tags["optuna.trial_number"])
        trial = study.trials[number]
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags["optuna.state"] == "COMPLETE" and run.info.status == "FINISHED"
        assert run.data.tags["prunetuna.origin"] == "sampler"
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert {f"sparsity.{n}" for n in names} <= set(run.data.params)
        assert float(run.data.params[f"sparsity.{names[0]}"]) == trial.params[f"sparsity.{names[0]}"]
        assert {"accuracy", "flops", "flops_ratio", "params", "params_ratio"} <= set(run.data.metrics)
        assert run.data.metrics["accuracy"] == pytest.approx(trial.values[0])
        assert run.data.metrics["flops_ratio"] == pytest.approx(trial.values[1])
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == [1, 2] and history[-1].value == pytest.approx(run.data.metrics["accuracy"])

    shown = _cli("report", str(config), "--workdir", str(workdir), "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["study"] == "e2e" and report["objectives"] == ["accuracy", "flops"]
    assert {"accuracy", "flops", "params", "size_bytes", "latency_ms"} <= set(report["dense"]) and report["dense"][
        "flops"
    ] > 0
    assert len(report["trials"]) == 5
    for item in report["trials"]:
        assert {"number", "state", "metrics", "sparsity", "pareto", "feasible", "origin", "mlflow_run_id"} <= set(item)
        assert {
            "accuracy",
            "flops",
            "flops_ratio",
            "params",
            "params_ratio",
            "latency_ms",
            "latency_ratio",
            "dense_latency_ms",
            "speedup",
        } <= set(item["metrics"])
        assert set(item["sparsity"]) == set(names) and item["origin"] == "sampler" and item["feasible"] is True
    pareto = {t["number"] for t in report["trials"] if t["pareto"]}
    assert pareto == {t.number for t in study.best_trials}
    table = _cli("report", str(config), "--workdir", str(workdir))
    assert table.returncode == 0 and "dense" in table.stdout and "Pareto" in table.stdout


@pytest.mark.parametrize("model", ["ResidualNet", "DepthwiseNet", "ConcatNet"])
def test_user_model_and_data_targets(tmp_path: Path, model: str) -> None:
    config = write_config(
        tmp_path,
        tiny_config(
            f"user-{model.lower()}",
            model={"builtin": None, "target": f"user_models:{model}", "kwargs": {"channels": 6, "num_classes": 4}},
            data={"builtin": None, "target": "user_models:RandomImages", "kwargs": {"n": 256}},
            search={"n_trials": 2},
        ),
    )
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    study = _study(tmp_path / "w", f"user-{model.lower()}")
    assert len(study.trials) == 2 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert all(0.0 <= t.values[0] <= 1.0 and 0.0 < t.values[1] <= 1.0 for t in study.trials)


def test_checkpoint_state_dict_and_lightning_ckpt(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyResNet(width=4)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    torch.save(
        {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}, tmp_path / "lit.ckpt"
    )
    for name in ("plain.pt", "lit.ckpt"):
        config = write_config(
            tmp_path,
            tiny_config(f"ckpt-{name[:3]}", model={"checkpoint": str(tmp_path / name)}, search={"n_trials": 1}),
        )
        workdir = tmp_path / f"w-{name}"
        result = runner.invoke(app, ["search", str(config), "--workdir", str(workdir)])
        assert result.exit_code == 0, result.output
        assert not list(workdir.glob("baseline-*.pt")), "a checkpoint is used as is, never retrained"
        dense = _study(workdir, f"ckpt-{name[:3]}").user_attrs["dense"]
        assert dense["accuracy"] == evaluate_accuracy(model, digits(batch_size=32).val_dataloader())


# ---- bad input: one line, exit 2, no traceback, nothing stored is touched ---------------------------


@pytest.fixture(scope="module")
def existing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("existing")
    config = write_config(folder, tiny_config("kept", search={"n_trials": 2}))
    result = runner.invoke(app, ["search", str(config), "--workdir", str(folder / "w")])
    assert result.exit_code == 0, result.output
    return folder, folder / "w"


def _bad_cases(folder: Path) -> dict[str, tuple[list[str], str]]:
    torch.save(TinyResNet(width=8).state_dict(), folder / "wide.pt")
    (folder / "broken.yaml").write_text("name: kept\nmodel: [\n")

    def cfg(filename: str, **overrides) -> str:
        return str(write_config(folder, tiny_config("kept", **overrides), filename))

    return {
        "missing file": ([str(folder / "nope.yaml")], "no such config file"),
        "malformed": ([str(folder / "broken.yaml")], "malformed YAML"),
        "unknown key": ([cfg("k.yaml", finetune={"epochz": 1})], "unknown key 'finetune.epochz'"),
        "wrong type": ([cfg("t.yaml", finetune={"epochs": "one"})], "finetune.epochs"),
        "bound": ([cfg("b.yaml", pruning={"max_sparsity": 1.2})], "pruning.max_sparsity"),
        "target import": (
            [cfg("i.yaml", model={"builtin": None, "target": "no_such_pkg.models:Net", "kwargs": {}})],
            "cannot import module 'no_such_pkg.models'",
        ),
        "target attr": (
            [cfg("a.yaml", model={"builtin": None, "target": "user_models:Nope", "kwargs": {}})],
            "has no attribute 'Nope'",
        ),
        "target type": (
            [cfg("n.yaml", model={"builtin": None, "target": "user_models:not_a_module", "kwargs": {}})],
            "not a torch.nn.Module",
        ),
        "checkpoint fit": ([cfg("c.yaml", model={"checkpoint": str(folder / "wide.pt")})], "does not fit the model"),
        "checkpoint missing": ([cfg("m.yaml", model={"checkpoint": str(folder / "absent.pt")})], "does not exist"),
        "nothing prunable": (
            [cfg("p.yaml", model={"builtin": None, "target": "user_models:LinearOnly", "kwargs": {}})],
            "nothing to prune",
        ),
        "objectives changed": ([cfg("o.yaml", objectives=["accuracy", "params"])], "already exists with objectives"),
        "scale changed": ([cfg("scale.yaml", pruning={"scale": "log"})], "was searched with scale 'linear'"),
        "storage": ([cfg("s.yaml"), "--storage", "postgresql://me:topsecret@127.0.0.1:1/db"], "--storage: cannot open"),
        "n-trials": ([cfg("z.yaml"), "--n-trials", "0"], "--n-trials"),
        "storage password with / and #": (
            [cfg("s2.yaml"), "--storage", "postgresql://me:topsecret/x#y@127.0.0.1:1/db"],
            "--storage: cannot open",
        ),
        "data kwargs value": (
            [cfg("d.yaml", data={"kwargs": {"val_fraction": 1.5}})],
            "data: building it failed (ValueError: val_fraction",
        ),
    }


def test_bad_input_one_line_exit_2_nothing_touched(existing: tuple[Path, Path]) -> None:
    folder, workdir = existing
    before_trials = len(_study(workdir, "kept").trials)
    before_runs = sorted(r.info.run_id for r in sum(_runs(workdir, "kept"), []))
    for case, (args, fragment) in _bad_cases(folder).items():
        result = runner.invoke(app, ["search", *args, "--workdir", str(workdir)])
        assert result.exit_code == 2, (case, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], (case, result.stderr)
        assert "Traceback" not in result.output and "topsecret" not in result.output, case
    assert len(_study(workdir, "kept").trials) == before_trials
    assert sorted(r.info.run_id for r in sum(_runs(workdir, "kept"), [])) == before_runs


def test_bad_input_in_a_real_process(existing: tuple[Path, Path]) -> None:
    folder, workdir = existing
    config = write_config(folder, tiny_config("kept", pruning={"max_sparsity": 1.0}), "real.yaml")
    result = _cli("search", str(config), "--workdir", str(workdir))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "pruning.max_sparsity" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_without_a_study(tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_config("never-run"))
    result = runner.invoke(app, ["report", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2 and "run 'prunetuna search' first" in result.stderr
