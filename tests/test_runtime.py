"""The computing verbs' start-up: a torchvision that does not import beside torch is bad input, named in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import HERE, tiny_config, write_config


@pytest.mark.parametrize(
    "verb", [["search"], ["sensitivity"], ["export", "--trial", "0", "--format", "onnx", "--out", "m.onnx"]]
)
def test_broken_torchvision_is_one_line_naming_the_fix(tmp_path: Path, verb: list[str]) -> None:
    # What PyPI's torchvision does beside the CPU torch 2.13.0, injected: a torchvision whose import fails so.
    fake = tmp_path / "site" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    config = write_config(tmp_path, tiny_config("tv"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(HERE)])}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(
        [sys.executable, "-m", "prunetuna", verb[0], str(config), *verb[1:], "--workdir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert (
        "torchvision" in lines[0]
        and "operator torchvision::nms does not exist" in lines[0]
        and "install.sh --vision" in lines[0]
    )
    assert not (tmp_path / "w").exists()  # nothing stored


class LayerScaleNet(torch.nn.Module):
    """A CNN with a parameter outside any layer (a ConvNeXt-style layer scale): torch-pruning warns about it."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.gamma = torch.nn.Parameter(torch.ones(8, 1, 1))
        self.head = torch.nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((self.conv(x) * self.gamma).mean((2, 3)))


def test_torch_pruning_warning_about_unwrapped_parameters_shows_once_per_search(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, {**tiny_config("scale", search={"n_trials": 3}), "model": {"target": "test_runtime:LayerScaleNet"}}
    )
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(
        [sys.executable, "-m", "prunetuna", "search", str(config), "--workdir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "3/3 finished" in result.stderr
    assert result.stderr.count("Unwrapped parameters detected") == 1, result.stderr
