"""``pip install 'prunetuna[device]'`` in a fresh virtual environment: no torch, and the agent measures."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from prunetuna.device import DeviceClient, MeasureRequest
from prunetuna.objectives import export_onnx
from prunetuna.workload import TinyResNet

from .conftest import ROOT


@pytest.mark.slow
def test_device_install_serves_without_torch(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python, cli = venv / "bin" / "python", venv / "bin" / "prunetuna"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{ROOT}[device]"], capture_output=True, text=True, timeout=900
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    for heavy in ("torch", "lightning", "optuna", "mlflow"):
        found = subprocess.run([str(python), "-c", f"import {heavy}"], capture_output=True, text=True, timeout=60)
        assert found.returncode != 0 and "No module named" in found.stderr, f"{heavy} came with the device install"

    searched = subprocess.run(
        [str(cli), "search", "experiment.yaml"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert searched.returncode == 2
    line = searched.stderr.strip()
    assert (
        "\n" not in line
        and line.startswith("prunetuna: error: prunetuna search: needs the search install")
        and "[search]" in line
    )

    log = tmp_path / "agent.log"
    with log.open("w") as handle:
        agent = subprocess.Popen(
            [str(cli), "device", "serve", "--port", "0"], stdout=handle, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"device agent on (http://\S+)", log.read_text())):
            assert agent.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        model = export_onnx(TinyResNet(width=4), torch.randn(1, 1, 28, 28))
        reply = DeviceClient(found.group(1), token="").measure(
            model, MeasureRequest([1, 1, 28, 28], warmup=1, repeats=5, max_ci=10.0)
        )
        assert reply.median_ms > 0 and reply.device["onnxruntime"]
    finally:
        agent.terminate()
        agent.wait(timeout=30)
