"""Export round trips (ONNX, TorchScript, pt) with the accuracy re-check; load_pruned; plots and artifacts; bad
input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

import prunetuna
from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.export import EXPORTERS, Exporter, compare_outputs
from prunetuna.training import evaluate_accuracy
from prunetuna.workload import digits

runner = CliRunner()


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("export")
    config = write_config(folder, tiny_config("exp", search={"n_trials": 3}))
    result = runner.invoke(app, ["search", str(config), "--workdir", str(folder / "w")])
    assert result.exit_code == 0, result.output
    return folder, config


def _export(config: Path, folder: Path, *args: str) -> object:
    return runner.invoke(app, ["export", str(config), "--workdir", str(folder / "w"), *args])


def _logged(folder: Path) -> dict:
    shown = runner.invoke(app, ["report", str(folder / "experiment.yaml"), "--workdir", str(folder / "w"), "--json"])
    return json.loads(shown.stdout)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "pt"])
def test_export_round_trip_reproduces_the_logged_trial(searched: tuple[Path, Path], fmt: str) -> None:
    folder, config = searched
    out = folder / f"model-{fmt}.bin"
    result = _export(config, folder, "--trial", "1", "--format", fmt, "--out", str(out))
    assert result.exit_code == 0, result.output
    card = json.loads((folder / f"model-{fmt}.bin.json").read_text())
    logged = next(t for t in _logged(folder)["trials"] if t["number"] == 1)
    assert card["trial"] == 1 and card["format"] == fmt
    assert card["metrics"] == logged["metrics"] and card["sparsity"] == logged["sparsity"]
    assert card["checks"]["validation_accuracy"] == logged["metrics"]["accuracy"]
    checks = card["checks"]
    assert (
        checks["max_abs_diff_vs_torch"] <= checks["atol"]
        and checks["max_rel_diff_vs_torch"] == checks["max_abs_diff_vs_torch"] / checks["output_scale"]
    )
    assert checks["same_top_class"] == 1.0
    assert card["input_shape"] == [1, 1, 8, 8] and "torch" in card["versions"]
    # The file itself reproduces the trial's accuracy on the validation split.
    val = digits(batch_size=32).val_dataloader()
    if fmt == "onnx":
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        correct = sum(int((session.run(None, {"input": x.numpy()})[0].argmax(1) == y.numpy()).sum()) for x, y in val)
        accuracy = correct / len(val.dataset)
    elif fmt == "torchscript":
        accuracy = evaluate_accuracy(torch.jit.load(str(out)), val)
    else:
        accuracy = evaluate_accuracy(prunetuna.load_pruned(out), val)
    assert accuracy == logged["metrics"]["accuracy"]


def test_load_pruned_from_python(searched: tuple[Path, Path]) -> None:
    folder, config = searched
    model = prunetuna.load_pruned(config, trial=2, workdir=folder / "w")
    logged = next(t for t in _logged(folder)["trials"] if t["number"] == 2)
    assert evaluate_accuracy(model, digits(batch_size=32).val_dataloader()) == logged["metrics"]["accuracy"]
    best = prunetuna.load_pruned(config, max_flops=1.0, workdir=folder / "w")
    assert isinstance(best, torch.nn.Module) and not best.training


def test_best_within_bounds(searched: tuple[Path, Path]) -> None:
    folder, config = searched
    trials = [t for t in _logged(folder)["trials"] if t["state"] == "COMPLETE"]
    bound = sorted(t["metrics"]["flops_ratio"] for t in trials)[1]
    out = folder / "best.onnx"
    result = _export(config, folder, "--best", "--max-flops", str(bound), "--format", "onnx", "--out", str(out))
    assert result.exit_code == 0, result.output
    eligible = [t for t in trials if t["metrics"]["flops_ratio"] <= bound]
    assert (
        json.loads((folder / "best.onnx.json").read_text())["trial"]
        == max(eligible, key=lambda t: t["metrics"]["accuracy"])["number"]
    )


def test_trial_artifacts_and_plots_in_mlflow(searched: tuple[Path, Path]) -> None:
    folder, _ = searched
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'w' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("exp")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("prunetuna.role") == "study")
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "plots")} == {
        "plots/pareto_front.png",
        "plots/sparsity_profiles.png",
        "plots/optimization_history.png",
    }
    for name in ("pareto_front.png", "sparsity_profiles.png", "optimization_history.png"):
        assert (folder / "w" / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for run in (r for r in runs if r.data.tags.get("prunetuna.role") == "trial"):
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"model", "sparsity_profile.png"} <= names
        manifest = json.loads(
            Path(client.download_artifacts(run.info.run_id, "model/manifest.json", str(folder))).read_text()
        )
        assert manifest["seed"] == 0 and len(manifest["config_sha256"]) == 64
        assert manifest["sparsity"] and manifest["versions"]["torch"] == torch.__version__


def test_export_bad_input(searched: tuple[Path, Path]) -> None:
    folder, config = searched
    (folder / "taken.onnx").write_bytes(b"keep me")
    cases = {
        "missing trial": (["--trial", "99", "--format", "onnx", "--out", str(folder / "a.onnx")], "has trials 0..2"),
        "no bound met": (
            ["--best", "--max-flops", "0.0001", "--format", "onnx", "--out", str(folder / "b.onnx")],
            "the closest is trial",
        ),
        "exists": (["--trial", "0", "--format", "onnx", "--out", str(folder / "taken.onnx")], "--force"),
        "both": (["--trial", "0", "--best", "--format", "onnx", "--out", str(folder / "c.onnx")], "exactly one"),
        "format": (["--trial", "0", "--format", "tflite", "--out", str(folder / "d.x")], "unknown format 'tflite'"),
    }
    for case, (args, fragment) in cases.items():
        result = _export(config, folder, *args)
        assert result.exit_code == 2, (case, result.output)
        assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1, (case, result.stderr)
    assert (folder / "taken.onnx").read_bytes() == b"keep me"
    forced = _export(config, folder, "--trial", "0", "--format", "onnx", "--out", str(folder / "taken.onnx"), "--force")
    assert forced.exit_code == 0 and np.frombuffer((folder / "taken.onnx").read_bytes()[:4], dtype=np.uint8).size == 4


def test_output_check_is_scaled_to_the_outputs() -> None:
    rng = np.random.default_rng(0)
    logits = rng.uniform(-4.0, 4.0, (32, 1000)).astype(np.float32)
    logits[np.arange(32), rng.integers(0, 1000, 32)] = 4.9  # each sample's top class, with a margin
    # resnet50's ONNX export: 2.1e-4 at logits up to 4.9, same top class everywhere -- a correct export
    drift = np.float32(2.1e-4) * np.sign(rng.normal(size=logits.shape)).astype(np.float32)
    check = compare_outputs(logits + drift, logits)
    assert check.passed and check.scale == pytest.approx(4.9) and check.same_top_class == 1.0
    assert check.max_abs_diff == pytest.approx(2.1e-4, rel=1e-2) and check.max_rel_diff == pytest.approx(
        2.1e-4 / 4.9, rel=1e-2
    )
    # a wrong graph is still caught, and so is a small drift on small outputs (the bound is absolute below magnitude 1)
    assert not compare_outputs(logits + 0.05, logits).passed
    assert not compare_outputs(logits[:, ::-1], logits).passed
    small = logits / 10
    assert compare_outputs(small + 5e-5, small).passed and not compare_outputs(small + 5e-4, small).passed
    assert not compare_outputs(logits[:, :10], logits).passed  # a shape change never passes


def test_failed_output_check_leaves_no_file(searched: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, config = searched
    onnx = EXPORTERS["onnx"]
    monkeypatch.setitem(
        EXPORTERS,
        "onnx",
        Exporter(onnx.suffix, onnx.write, lambda path, batch: [a + 0.5 for a in onnx.run(path, batch)]),
    )
    out = folder / "broken.onnx"
    result = _export(config, folder, "--trial", "0", "--format", "onnx", "--out", str(out))
    assert result.exit_code == 1 and "export check failed" in result.stderr and "no file was written" in result.stderr
    assert not out.exists() and not (folder / "broken.onnx.json").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left
    monkeypatch.setitem(EXPORTERS, "onnx", onnx)
    again = _export(config, folder, "--trial", "0", "--format", "onnx", "--out", str(out))  # no --force needed
    assert again.exit_code == 0, again.output
    assert out.exists() and (folder / "broken.onnx.json").exists()
