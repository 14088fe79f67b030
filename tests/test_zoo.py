"""Family building blocks (tests/zoo_models.py) through search -> export (ONNX, TorchScript) with the export's
output and accuracy checks; real torchvision and timm models when importable; refused models in one line."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from conftest import HERE, tiny_config, write_config
from prunetuna.cli import app

runner = CliRunner()
REPLICAS = [
    "InvertedResidualSE",
    "DepthwiseSeparable",
    "GroupedConv",
    "ChannelConcat",
    "ConvNeXtBlock",
    "ViTEncoder",
    "TimmStyleViT",
]


def _config(folder: Path, name: str, target: str, kwargs: dict, size: int = 16, **overrides: object) -> Path:
    data = overrides.pop(
        "data", {"builtin": None, "target": "zoo_models:Images", "kwargs": {"n": 96, "size": size}, "batch_size": 32}
    )
    return write_config(
        folder,
        tiny_config(
            name,
            model={"builtin": None, "target": target, "kwargs": kwargs},
            data=data,
            finetune={"epochs": 1, "lr": 0.001, "max_batches": 2},
            search={"n_trials": 2, "warm_start": False},
            **overrides,
        ),
    )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "prunetuna", *args], capture_output=True, text=True, env=env, timeout=300
    )


def _search_and_export(folder: Path, config: Path, name: str) -> list[dict]:
    result = runner.invoke(app, ["search", str(config), "--workdir", str(folder / "w")])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'w' / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    pruned = max(study.trials, key=lambda t: sum(t.params.values()))  # the trial that removed the most
    assert sum(pruned.params.values()) > 0
    cards = []
    for fmt in ("onnx", "torchscript"):
        out = folder / f"{name}.{fmt}"
        exported = runner.invoke(
            app,
            [
                "export",
                str(config),
                "--workdir",
                str(folder / "w"),
                "--trial",
                str(pruned.number),
                "--format",
                fmt,
                "--out",
                str(out),
            ],
        )
        assert exported.exit_code == 0, exported.output
        card = json.loads(Path(f"{out}.json").read_text())
        # export re-checked the rebuilt model's accuracy against the logged one and the file's outputs against torch's
        assert (
            card["checks"]["validation_accuracy"]
            == card["checks"]["logged_accuracy"]
            == pruned.user_attrs["metrics"]["accuracy"]
        )
        assert (
            card["checks"]["same_top_class"] and card["checks"]["max_rel_diff_vs_torch"] <= card["checks"]["rtol"] * 10
        )
        cards.append(card)
    return cards


@pytest.mark.parametrize("model", REPLICAS)
def test_family_blocks_search_and_export(tmp_path: Path, model: str) -> None:
    name = model.lower()
    config = _config(tmp_path, name, f"zoo_models:{model}", {})
    cards = _search_and_export(tmp_path, config, name)
    assert cards[0]["metrics"]["flops_ratio"] < 1.0
    shown = runner.invoke(app, ["report", str(config), "--workdir", str(tmp_path / "w"), "--json"])
    dimensions = json.loads(shown.stdout)["dimensions"]
    assert [d["name"] for d in dimensions] == list(cards[0]["sparsity"]) and all(d["layers"] >= 1 for d in dimensions)
    if model in ("ViTEncoder", "TimmStyleViT"):  # the residual stream, named after the layer that creates it
        assert dimensions[0]["name"] in ("conv_proj", "patch_embed.proj") and dimensions[0]["layers"] > 10


def test_attention_widths_are_dimensions() -> None:
    import torch
    import zoo_models

    from prunetuna.spaces import PruningSpace

    example = torch.randn(2, 3, 16, 16)
    for model, heads in ((zoo_models.TimmStyleViT(), "attns.0.qkv"), (zoo_models.ViTEncoder(), None)):
        space = PruningSpace.from_model(model, example, max_sparsity=0.5, step=0.25)
        embedding = space.dimensions[0]
        assert embedding.name in ("conv_proj", "patch_embed.proj") and len(embedding.layers) > 10  # the residual stream
        pruned = space.apply({d.name: 0.5 for d in space.dimensions})
        assert pruned(example).shape == (2, 4)
        if heads:  # two heads of 8 channels each keep 4 each: head_dim follows, num_heads stays
            attention = pruned.attns[0]
            assert attention.qkv.out_features == 24 and (attention.num_heads, attention.head_dim) == (2, 4)
        else:
            assert pruned.hidden_dim == pruned.conv_proj.out_channels == 8


def test_dimension_that_breaks_the_model_is_dropped_with_a_warning(tmp_path: Path) -> None:
    config = _config(tmp_path, "partly", "zoo_models:PartlyHardCoded", {})
    result = _cli("search", str(config), "--workdir", str(tmp_path / "w"))
    assert result.returncode == 0, result.stderr
    assert (
        "sparsity.fixed" in result.stderr
        and "dropped from the search space" in result.stderr
        and "['fixed']" in result.stderr
    )
    study = optuna.load_study(study_name="partly", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    assert study.user_attrs["dimensions"] == ["free", "mix"] and all(t.state.name == "COMPLETE" for t in study.trials)


@pytest.mark.parametrize(
    ("target", "extra", "message"),
    [
        (
            "zoo_models:ChannelShuffle",
            {"pruning": {"max_sparsity": 0.5, "step": 0.25, "graph_seconds": 2}},
            "ChannelShuffle: building the dependency graph stopped after",
        ),
        ("zoo_models:Untraceable", {}, "does not reach ['conv']"),
        (
            "user_models:FixedFlatten",
            {"data": {"builtin": None, "target": "user_models:RandomImages", "kwargs": {"n": 96}}},
            "every dimension breaks the model when pruned (first: sparsity.conv",
        ),
    ],
)
def test_models_torch_pruning_cannot_handle_are_refused_in_one_line(
    tmp_path: Path, target: str, extra: dict, message: str
) -> None:
    config = _config(tmp_path, "refused", target, {}, **extra)
    start = time.monotonic()
    result = _cli("search", str(config), "--workdir", str(tmp_path / "w"))
    assert result.returncode == 2 and time.monotonic() - start < 60
    errors = [line for line in result.stderr.splitlines() if line.startswith("prunetuna: error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr
    # the one alternative named, with what it costs: masks keep every shape, so no speedup on dense kernels
    assert "pruning.method unstructured" in errors[0] and "no speedup" in errors[0]
    assert not list((tmp_path / "w").glob("*.db"))  # refused before any store was touched


REAL = [
    ("torchvision", "torchvision.models:mobilenet_v3_small", {"num_classes": 4}),
    (
        "torchvision",
        "torchvision.models.vision_transformer:VisionTransformer",
        {
            "image_size": 32,
            "patch_size": 8,
            "num_layers": 2,
            "num_heads": 2,
            "hidden_dim": 32,
            "mlp_dim": 64,
            "num_classes": 4,
        },
    ),
    (
        "timm",
        "timm:create_model",
        {
            "model_name": "vit_tiny_patch16_224",
            "pretrained": False,
            "img_size": 32,
            "patch_size": 8,
            "depth": 2,
            "num_classes": 4,
        },
    ),
    ("timm", "timm:create_model", {"model_name": "resnet18", "pretrained": False, "num_classes": 4}),
]


@pytest.mark.parametrize(
    ("package", "target", "kwargs"), REAL, ids=["tv-mobilenet_v3_small", "tv-vit", "timm-vit", "timm-resnet18"]
)
def test_real_torchvision_and_timm_models(tmp_path: Path, package: str, target: str, kwargs: dict) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (bash scripts/install.sh --vision installs it)")
    pytest.importorskip(package, reason=f"{package} does not import in this environment")
    _search_and_export(tmp_path, _config(tmp_path, "real", target, kwargs, size=32), "real")


def test_real_shufflenet_is_refused_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip(
        "torchvision", reason="torchvision is not installed (bash scripts/install.sh --vision installs it)"
    )
    result = _cli(
        "search",
        str(_config(tmp_path, "shuffle", "torchvision.models:shufflenet_v2_x0_5", {"num_classes": 4}, size=32)),
        "--workdir",
        str(tmp_path / "w"),
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "ShuffleNetV2: torch-pruning cannot build its dependency graph (ZeroDivisionError" in result.stderr
