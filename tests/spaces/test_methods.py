from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app

runner = CliRunner()


@pytest.mark.parametrize("method", ["unstructured", "nm"])
def test_mask_methods_search_report_and_export(tmp_path: Path, method: str) -> None:
    config = write_config(
        tmp_path,
        tiny_config(
            f"m-{method}", pruning={"method": method, "max_sparsity": 0.75, "step": 0.25}, search={"n_trials": 2}
        ),
    )
    workdir = str(tmp_path / "w")
    assert runner.invoke(app, ["search", str(config), "--workdir", workdir]).exit_code == 0
    report = json.loads(runner.invoke(app, ["report", str(config), "--workdir", workdir, "--json"]).stdout)
    assert report["method"] == method and report["flops_kind"].startswith("effective")
    for trial in report["trials"]:
        metrics = trial["metrics"]
        assert metrics["size_ratio"] == 1.0, "masked weights are stored dense"
        if any(v > 0 for v in trial["sparsity"].values()):
            assert metrics["flops_ratio"] < 1.0
    out = tmp_path / "m.onnx"
    exported = runner.invoke(
        app, ["export", str(config), "--workdir", workdir, "--trial", "0", "--format", "onnx", "--out", str(out)]
    )
    assert exported.exit_code == 0, exported.output
    assert json.loads((tmp_path / "m.onnx.json").read_text())["checks"]["max_abs_diff_vs_torch"] <= 1e-4
