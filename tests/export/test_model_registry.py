"""`prunetuna export --register NAME`: the exported model as a Model Registry version that pyfunc loads and
`mlflow models serve` serves, predicting what the exported file predicts; on a SQLite store and an `mlflow server`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from services import free_port, throwaway_mlflow_server, wait_for_http
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.export import EXPORTERS

runner = CliRunner()


def _search(folder: Path, name: str, *args: str) -> Path:
    config = write_config(folder, tiny_config(name, search={"n_trials": 2}))
    result = runner.invoke(app, ["search", str(config), "--workdir", str(folder / "w"), *args])
    assert result.exit_code == 0, result.output
    return config


@pytest.fixture(scope="module")
def sqlite_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("registry")
    return _search(folder, "reg"), folder


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with throwaway_mlflow_server() as url:
        yield url


def _inputs(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((5, 1, 8, 8), dtype=np.float32)


def _predictions(prediction: object) -> np.ndarray:
    """pyfunc's ONNX flavor answers a dict of outputs, its PyTorch flavor an array."""
    return np.asarray(next(iter(prediction.values()))) if isinstance(prediction, dict) else np.asarray(prediction)


def _use_store(monkeypatch: pytest.MonkeyPatch, uri: str) -> None:
    """Where ``models:/`` URIs resolve, for this test only (``mlflow.set_tracking_uri`` would outlive it)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)


def _register(config: Path, folder: Path, fmt: str, name: str, *args: str) -> tuple[object, Path]:
    out = folder / f"{name}.{fmt}"
    result = runner.invoke(
        app,
        [
            "export",
            str(config),
            "--workdir",
            str(folder / "w"),
            "--trial",
            "1",
            "--format",
            fmt,
            "--out",
            str(out),
            "--register",
            name,
            *args,
        ],
    )
    return result, out


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "pt"])
def test_registered_version_predicts_what_the_exported_file_predicts(
    sqlite_study: tuple[Path, Path], fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, folder = sqlite_study
    name = f"reg-{fmt}"
    result, out = _register(config, folder, fmt, name)
    assert result.exit_code == 0, result.output
    assert f"registered models:/{name}/1" in result.stderr
    uri = f"sqlite:///{folder / 'w' / 'mlflow.db'}"
    _use_store(monkeypatch, uri)
    x = _inputs()
    (expected,) = EXPORTERS[fmt].run(out, torch.from_numpy(x))  # the one output leaf
    model = mlflow.pyfunc.load_model(f"models:/{name}/1")
    torch.testing.assert_close(_predictions(model.predict(x)), expected, rtol=1e-5, atol=1e-5)
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, 1, 8, 8)
    assert model.metadata.flavors.keys() >= {"python_function", "onnx" if fmt == "onnx" else "pytorch"}

    card = json.loads((folder / f"{name}.{fmt}.json").read_text())
    version = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version(name, "1")
    assert version.tags["prunetuna.trial"] == "1" and version.tags["prunetuna.study"] == "reg"
    assert version.tags["prunetuna.source_run_id"] == card["mlflow_run_id"]
    assert float(version.tags["metric.accuracy"]) == pytest.approx(card["metrics"]["accuracy"], rel=1e-5)
    assert "Study `reg`, trial 1" in version.description and card["config_sha256"] in version.description
    run = MlflowClient(tracking_uri=uri).get_run(version.run_id)
    assert run.info.run_name == "export-trial-1" and run.data.tags["prunetuna.role"] == "export"


def test_mlflow_models_serve_answers_like_the_exported_file(sqlite_study: tuple[Path, Path]) -> None:
    config, folder = sqlite_study
    result, out = _register(config, folder, "onnx", "reg-served")
    assert result.exit_code == 0, result.output
    port = free_port()
    # `mlflow models serve` starts `uvicorn` by name: the environment's bin folder on PATH, as in an activated venv.
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'w' / 'mlflow.db'}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    serving = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/reg-served/1",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", serving)
        x = _inputs(1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": x.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)["predictions"]
        got = np.asarray(answer["output"] if isinstance(answer, dict) else answer, dtype=np.float32)
        torch.testing.assert_close(got, EXPORTERS["onnx"].run(out, torch.from_numpy(x))[0], rtol=1e-5, atol=1e-5)
    finally:
        os.killpg(serving.pid, signal.SIGTERM)
        serving.wait(timeout=30)


@pytest.fixture(scope="module")
def server_study(tmp_path_factory: pytest.TempPathFactory, server: str) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("registry-server")
    return _search(folder, "reg-server", "--tracking-uri", server), folder


def test_register_against_an_mlflow_server(
    server_study: tuple[Path, Path], server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, tmp_path = server_study
    result, out = _register(config, tmp_path, "onnx", "reg-on-server", "--tracking-uri", server)
    assert result.exit_code == 0, result.output
    _use_store(monkeypatch, server)
    x = _inputs(2)
    model = mlflow.pyfunc.load_model("models:/reg-on-server/1")
    torch.testing.assert_close(
        _predictions(model.predict(x)), EXPORTERS["onnx"].run(out, torch.from_numpy(x))[0], rtol=1e-5, atol=1e-5
    )
    version = MlflowClient(tracking_uri=server, registry_uri=server).get_model_version("reg-on-server", "1")
    assert version.tags["prunetuna.study"] == "reg-server"


@pytest.mark.parametrize("bad", ["team/model", "model:v2"])
def test_a_name_the_registry_refuses_is_one_line_and_writes_nothing(sqlite_study: tuple[Path, Path], bad: str) -> None:
    config, folder = sqlite_study
    uri = f"sqlite:///{folder / 'w' / 'mlflow.db'}"
    before = [m.name for m in MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()]
    result, out = _register(config, folder, "onnx", bad)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--register" in lines[0] and bad in lines[0] and "Traceback" not in result.output
    assert not out.exists() and not Path(f"{out}.json").exists()
    assert [m.name for m in MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()] == before


def test_ui_on_a_tracking_server_prints_the_trials_page_there(server_study: tuple[Path, Path], server: str) -> None:
    """Nothing to serve here: the saved view is written to the server's experiment and its address printed."""
    config, folder = server_study
    result = runner.invoke(app, ["ui", str(config), "--workdir", str(folder / "w"), "--tracking-uri", server])
    assert result.exit_code == 0, result.output
    experiment = MlflowClient(tracking_uri=server).get_experiment_by_name("reg-server")
    assert (
        f"{server}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning&viewStateShareKey="
        in result.stderr
    )
    assert "mlflow.sharedViewState.prunetuna-trials" in experiment.tags
