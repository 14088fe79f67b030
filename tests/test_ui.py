"""`prunetuna ui` serves the MLflow UI on 127.0.0.1, and a real headless browser sees the study's runs in it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from services import free_port
from typer.testing import CliRunner

from conftest import HERE, tiny_config, write_config
from prunetuna.cli import app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (.ci/run installs Debian's chromium)")


def _text(html: str) -> str:
    html = re.sub(r"<(style|script).*?</\1>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _page_text(url: str, profile: Path, expect: str) -> str:
    """The rendered page's text; the single-page app may need a second load while the server warms up."""
    text = ""
    for attempt in range(4):
        command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={profile}-{attempt}", "--virtual-time-budget=30000", "--dump-dom", url]
        text = _text(subprocess.run(command, capture_output=True, text=True, timeout=180).stdout)
        if expect in text:
            break
    return text


def test_mlflow_ui_lists_the_runs_with_params_and_metrics(tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_config("ui-study", search={"n_trials": 2}))
    workdir = tmp_path / "w"
    assert CliRunner().invoke(app, ["search", str(config), "--workdir", str(workdir)]).exit_code == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ui-study")
    child = next(r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name == "trial-1")

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    server = subprocess.Popen([sys.executable, "-m", "prunetuna", "ui", str(config), "--workdir", str(workdir), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240  # a loaded 2-core CI machine takes its time to start it
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(f"the MLflow UI did not come up: {server.stderr.read() if server.poll() is not None else 'timeout'}")
                time.sleep(0.5)
        runs_page = _page_text(f"{base}/#/experiments/{experiment.experiment_id}/runs", tmp_path / "c1", "matching runs")
        assert "ui-study" in runs_page and "3 matching runs" in runs_page, runs_page[:2000]  # the parent and its two trials
        run_page = _page_text(f"{base}/#/experiments/{experiment.experiment_id}/runs/{child.info.run_id}", tmp_path / "c2", "val_accuracy")
        assert "trial-1" in run_page, run_page[:2000]
        for param in (k for k in child.data.params if k.startswith("sparsity.")):
            assert param in run_page
        for metric in ("accuracy", "flops_ratio", "params_ratio", "val_accuracy"):
            assert metric in run_page
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

