"""Rebuilding finished trials: the vector the search applied is the one every rebuild uses and every view shows."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from mlflow import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.config import load_config
from prunetuna.export import rebuild_trial
from prunetuna.spaces import PruningSpace
from prunetuna.sparsity import PARAM_PREFIX, canonical
from prunetuna.store import load_study, resolve_workspace
from prunetuna.training import evaluate_accuracy
from prunetuna.workload import TinyResNet

runner = CliRunner()


def _kept(channels: int, ratio: float) -> int:
    return int(channels * (1 - ratio))  # how torch-pruning rounds a ratio to channels


def test_every_finished_trial_rebuilds_although_optuna_hands_out_float_artefacts(tmp_path: Path) -> None:
    # Width 10: groups of 10, 20 and 40 channels, where Optuna's 0.6000000000000001 and 0.7000000000000001
    # keep one channel fewer than the 0.6 and 0.7 the search applies.
    config_path = write_config(
        tmp_path,
        tiny_config(
            "floats",
            model={"builtin": "tiny-resnet", "kwargs": {"width": 10}},
            pruning={"max_sparsity": 0.7, "step": 0.1},
            search={"sampler": "random", "n_trials": 4},
        ),
    )
    result = runner.invoke(app, ["search", str(config_path), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    config = load_config(config_path)
    workspace = resolve_workspace(config.name, tmp_path / "w", None, None)
    study = load_study(workspace, config.name)
    finished = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(finished) == 4

    channels = {
        d.name: d.channels
        for d in PruningSpace.from_model(
            TinyResNet(width=10), torch.zeros(1, 1, 8, 8), max_sparsity=0.7, step=0.1
        ).dimensions
    }
    exposed = [
        (t.number, k)
        for t in finished
        for k, v in t.params.items()
        if _kept(channels[k.removeprefix(PARAM_PREFIX)], v)
        != _kept(channels[k.removeprefix(PARAM_PREFIX)], round(v, 6))
    ]
    assert exposed, "no trial drew a ratio whose float spelling changes a channel count: the test would prove nothing"

    rebuilt = {t.number: rebuild_trial(config, workspace, t) for t in finished}  # a size mismatch here was the bug
    val = rebuilt[finished[0].number].workload.datamodule.val_dataloader()
    for trial in finished:
        assert evaluate_accuracy(rebuilt[trial.number].model, val) == trial.user_attrs["metrics"]["accuracy"]

    # One spelling everywhere: stored with the trial, in the report, in MLflow's params.
    client = MlflowClient(workspace.tracking_uri)
    shown = {
        t["number"]: t["sparsity"]
        for t in json.loads(
            runner.invoke(app, ["report", str(config_path), "--workdir", str(tmp_path / "w"), "--json"]).stdout
        )["trials"]
    }
    for trial in finished:
        vector = rebuilt[trial.number].sparsity
        assert vector == trial.user_attrs["sparsity"] == shown[trial.number]
        assert vector == canonical(
            {k.removeprefix(PARAM_PREFIX): v for k, v in trial.params.items()}
        )  # no budget: as sampled
        params = client.get_run(trial.user_attrs["mlflow_run_id"]).data.params
        assert {k: v for k, v in params.items() if k.startswith(PARAM_PREFIX)} == {
            PARAM_PREFIX + k: str(v) for k, v in vector.items()
        }
