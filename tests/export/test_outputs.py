"""Models with several outputs export end to end: a two-headed classifier (tuple) and a dict-output model (a dict
holding a list, a grid cached per input shape) in every format, each output compared on its own scale; tracing
that cannot work is one line; torchvision's MNASNet rebuilds with its state-dict metadata."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import prunetuna
from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.export import EXPORTERS, ExportCheckFailed, trace_model
from prunetuna.objectives import output_leaves
from prunetuna.workload import digits

runner = CliRunner()
FORMATS = ["onnx", "torchscript", "pt"]
MODELS = {
    "tuple": ("F1Module", {"channels": 6, "aux": True}, ["output_0", "output_1"]),
    "dict": ("DictModule", {"channels": 6}, ["logits", "extras_0", "extras_1"]),
}


@pytest.fixture(scope="module", params=list(MODELS))
def searched(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    target, kwargs, _ = MODELS[request.param]
    folder = tmp_path_factory.mktemp(f"outputs-{request.param}")
    config = tiny_config(
        request.param,
        model={"builtin": None, "target": f"user_modules:{target}", "kwargs": kwargs, "prune": "net"},
        metric={"name": "val/f1", "mode": "max"},
        objectives=["metric", "flops"],
        search={"sampler": "random", "n_trials": 2},
    )
    path = write_config(folder, config)
    result = runner.invoke(app, ["search", str(path), "--workdir", str(folder / "w")])
    assert result.exit_code == 0, result.output
    return request.param, folder, path


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_output_exports_and_is_checked(searched: tuple[str, Path, Path], fmt: str) -> None:
    kind, folder, config = searched
    out = folder / f"model.{fmt}"
    result = runner.invoke(
        app, ["export", str(config), "--workdir", str(folder / "w"), "--trial", "1", "--format", fmt, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    names = MODELS[kind][2]
    card = json.loads(Path(f"{out}.json").read_text())
    assert card["outputs"] == names and list(card["checks"]["outputs"]) == names
    for check in card["checks"]["outputs"].values():  # each output held to a bound scaled to its own magnitudes
        assert check["passed"] and check["max_abs_diff"] <= check["atol"] == pytest.approx(1e-4 * check["scale"])
    assert card["checks"]["max_rel_diff_vs_torch"] == max(c["max_rel_diff"] for c in card["checks"]["outputs"].values())

    # the file answers every output for a batch of another size than the one it was traced with
    x = next(iter(digits(batch_size=32).val_dataloader()))[0][:5]
    model = prunetuna.load_pruned(config, trial=1, workdir=folder / "w")
    with torch.no_grad():
        expected = output_leaves(model(x))
    if fmt == "onnx":
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == names
        got = session.run(None, {"input": x.numpy()})
    else:
        got = EXPORTERS[fmt].run(out, x)
    assert [name for name, _ in expected] == names
    for (_, tensor), array in zip(expected, got):
        np.testing.assert_allclose(array, tensor.numpy(), rtol=1e-4, atol=1e-4 * max(1.0, float(tensor.abs().max())))
    if fmt == "torchscript" and kind == "dict":  # a dict holding a list: a trace types it as a flat tuple of leaves
        assert isinstance(torch.jit.load(str(out))(x), tuple)


class _Alternating(nn.Module):
    """Takes another Python branch at every call: the trace and its check record different graphs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv(x) * 2 if self.calls % 2 else torch.relu(self.conv(x))


def test_a_model_that_cannot_be_traced_is_one_line() -> None:
    with pytest.raises(ExportCheckFailed) as caught:
        trace_model(_Alternating(), torch.zeros(1, 1, 4, 4))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("the model cannot be traced by torch.jit.trace (")
    assert "Graphs differed across invocations" in message and len(message) < 400
    with pytest.raises(TypeError, match="output output_1 is a int"):
        output_leaves((torch.zeros(1), 3))


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed")
def test_mnasnet_searches_and_exports_with_its_state_dict_metadata(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        tiny_config(
            "mnasnet",
            model={"builtin": None, "target": "torchvision.models:mnasnet0_5", "kwargs": {"num_classes": 4}},
            data={"builtin": None, "target": "zoo_models:Images", "kwargs": {"n": 64, "size": 32}, "batch_size": 32},
            finetune={"epochs": 1, "lr": 0.001, "max_batches": 2},
            search={"n_trials": 1, "warm_start": False},
        ),
    )
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "mnasnet.pt"  # rebuilt twice: from the trial's logged weights, then from the file
    exported = runner.invoke(
        app,
        ["export", str(config), "--workdir", str(tmp_path / "w"), "--trial", "0", "--format", "pt", "--out", str(out)],
    )
    assert exported.exit_code == 0, exported.output
    card = json.loads(Path(f"{out}.json").read_text())
    assert card["checks"]["validation_accuracy"] == card["checks"]["logged_accuracy"]
