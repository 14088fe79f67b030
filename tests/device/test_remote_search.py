"""A search measuring on the agent (loopback): device recorded, cache hits, agent killed mid-search, unreachable at
start."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import mlflow
import optuna
import pytest
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.config import parse_config
from prunetuna.device import DeviceClient
from prunetuna.objectives import CACHE_CONFIRMATIONS, CACHE_SAMPLES, PREFIX
from prunetuna.search import SearchEvents, run_search
from prunetuna.store import resolve_workspace

from .conftest import TOKEN

runner = CliRunner()
FAST = {"warmup": 1, "repeats": 5, "max_ci": 10.0}


def _remote(name: str, url: str, **latency) -> dict:
    return tiny_config(
        name, latency={"backend": "remote", "url": url, **FAST, **latency}, search={"sampler": "random", "n_trials": 3}
    )


def _study(workdir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / 'optuna.db'}")


def test_search_on_the_agent_records_the_device_and_reuses_measurements(
    start_agent, tmp_path: Path, monkeypatch
) -> None:
    agent = start_agent()
    monkeypatch.setenv("PRUNETUNA_DEVICE_TOKEN", TOKEN)
    config = write_config(tmp_path, _remote("remote", agent.url))
    workdir = tmp_path / "w"
    result = runner.invoke(app, ["search", str(config), "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    study = _study(workdir, "remote")
    first = study.trials[0]
    for _ in range(CACHE_CONFIRMATIONS):  # the same architecture again, in a resumed search
        study.enqueue_trial(first.params, user_attrs={"origin": "sampler"})
    more = str(3 + CACHE_CONFIRMATIONS)
    result = runner.invoke(app, ["search", str(config), "--workdir", str(workdir), "--n-trials", more])
    assert result.exit_code == 0, result.output

    study = _study(workdir, "remote")
    metrics = [t.user_attrs["metrics"] for t in study.trials]
    assert all(m["latency_ms"] > 0 and m["latency_ratio"] > 0 and "latency_cached" in m for m in metrics)
    same = [m for t, m in zip(study.trials, metrics) if t.params == first.params]
    # its first CACHE_CONFIRMATIONS uses measured it on the agent, the next one was served the stored median
    assert [m["latency_cached"] for m in same] == [0.0] * CACHE_CONFIRMATIONS + [1.0] * (
        len(same) - CACHE_CONFIRMATIONS
    )
    assert same[-1]["latency_ms"] == same[CACHE_CONFIRMATIONS - 1]["latency_ms"]
    measured = sum(m["latency_cached"] == 0.0 for m in metrics)
    entries = [v for k, v in study.user_attrs.items() if k.startswith(PREFIX)]
    assert sum(len(e[CACHE_SAMPLES]) for e in entries) == measured, "each measurement kept with its architecture"
    # the agent measured the dense model once per search process, and each candidate it was asked for
    assert DeviceClient(agent.url, token=TOKEN).info()["measurements"] == 2 + measured

    device = study.user_attrs["latency_device"]
    assert (
        device["where"] == "device agent"
        and device["url"] == agent.url
        and device["provider"] == "CPUExecutionProvider"
    )
    report = json.loads(runner.invoke(app, ["report", str(config), "--workdir", str(workdir), "--json"]).stdout)
    assert report["latency_device"]["cpu"] == device["cpu"]
    table = runner.invoke(app, ["report", str(config), "--workdir", str(workdir)]).stdout
    assert f"latency measured on device agent {agent.url}" in table
    client = mlflow.MlflowClient(f"sqlite:///{(workdir / 'mlflow.db').resolve()}")
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.data.params["device.cpu"] == device["cpu"] and parent.data.params["latency.backend"] == "remote"


def test_agent_stopping_mid_search_fails_that_trial_and_the_study_goes_on(
    start_agent, tmp_path: Path, monkeypatch
) -> None:
    agent = start_agent("--exit-after", "2")  # the dense model and trial 0; then the board is gone
    port = agent.port
    monkeypatch.setenv("PRUNETUNA_DEVICE_TOKEN", TOKEN)
    config = parse_config(_remote("gone", agent.url, cache=False))
    workspace = resolve_workspace("gone", tmp_path / "w", None, None)
    seen = []

    class Watch(SearchEvents):
        def trial_finished(self, event, finished) -> None:  # noqa: ANN001
            seen.append(event)
            if event.state == "FAIL":
                assert agent.process.wait(timeout=30) == 0
                start_agent(port=port)  # the board is back: the next trials measure again

    outcome = run_search(config, workspace, events=Watch())
    assert [r.state for r in seen] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert outcome.finished == 3 and outcome.failed == 1
    reason = seen[1].reason or ""
    assert (
        reason.startswith("DeviceUnreachable: cannot reach the device agent at " + agent.url)
        and "after 4 tries" in reason
    )
    assert _study(tmp_path / "w", "gone").trials[1].user_attrs["fail_reason"] == reason


def test_unreachable_agent_at_start_is_bad_input(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    config = write_config(tmp_path, _remote("nobody", url))
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(
        f"prunetuna: error: latency.url: cannot reach the device agent at {url}"
    )
    assert "prunetuna device serve" in line
    assert not (tmp_path / "w" / "optuna.db").exists(), "nothing was written"


@pytest.mark.parametrize(
    "latency, message",
    [
        ({"backend": "remote"}, "set latency.url"),
        (
            {"backend": "remote", "url": "http://user:secret@board:8765"},
            "remove them and export PRUNETUNA_DEVICE_TOKEN",
        ),
        ({"backend": "onnxruntime", "url": "http://board:8765"}, "go with backend remote"),
    ],
)
def test_remote_settings_are_checked(tmp_path: Path, latency: dict, message: str) -> None:
    config = write_config(tmp_path, tiny_config("bad", latency=latency))
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2 and message in result.stderr and "secret" not in result.stderr
