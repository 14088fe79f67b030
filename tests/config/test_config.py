from __future__ import annotations

from pathlib import Path

import pytest

from conftest import tiny_config, write_config
from prunetuna.config import load_config, parse_config
from prunetuna.errors import UserError


def test_embedded_default_loads() -> None:
    config = load_config(Path(__file__).parents[2] / "experiments" / "mnist.yaml")
    assert config.name == "mnist-resnet"
    assert config.model.builtin == "tiny-resnet" and config.data.builtin == "mnist-5k"
    assert config.objectives == ["accuracy", "flops"]
    assert config.search.n_trials >= 30
    # sized so that fewer FLOPs are less time on a CPU (README, What the embedded default trades)
    assert (
        config.model.kwargs == {"width": 48}
        and config.pruning.round_to == 16
        and config.latency.backend == "onnxruntime"
    )
    assert config.pruning.scale == "log"  # measured better than the step grid (experiments/benchmarks/ratio_scale.py)


def test_scientific_notation_reads_as_float(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nfinetune: {lr: 1e-3}\n")
    assert load_config(path).finetune.lr == pytest.approx(0.001)


def test_defaults_fill_missing_sections() -> None:
    config = parse_config({"name": "only-a-name"})
    assert config.pruning.max_sparsity == 0.8 and config.search.sampler == "tpe"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"finetune": {"epoch": 2}}, "unknown key 'finetune.epoch'"),
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"finetune": {"epochs": "two"}}, "finetune.epochs"),
        ({"pruning": {"max_sparsity": 1.0}}, "pruning.max_sparsity"),
        ({"pruning": {"max_sparsity": -0.1}}, "pruning.max_sparsity"),
        ({"objectives": ["accuracy", "speed"]}, "unknown objective 'speed'"),
        ({"search": {"sampler": "grid"}}, "unknown sampler 'grid'"),
        ({"constraints": {"flops": 1.5}}, "(0, 1]"),
        ({"model": {"builtin": "a", "target": "b:c"}}, "exactly one"),
        ({"name": "has space"}, "key 'name'"),
        ({"constraints": {"speed": 0.5}}, "unknown constraint 'speed'"),
        ({"constraints": {"params": 50000}}, "for an absolute budget write params_count: 50000"),
        ({"constraints": {"latency_ms": -1}}, "must be positive"),
        ({"objectives": ["accuracy", "flops", "params"], "tolerance": {"accuracy_drop": 0.01}}, "exactly one"),
        ({"tolerance": {"accuracy_drop": 1.5}}, "tolerance.accuracy_drop"),
        ({"scalarize": {"params": 1.0}}, "one weight per cost"),
        ({"latency": {"backend": "tvm"}}, "unknown latency backend 'tvm'"),
        ({"search": {"sampler": "cmaes"}}, "cmaes"),
        ({"finetune": {"max_images": 64}}, "max_batches and max_images both set"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, overrides: dict, fragment: str) -> None:
    path = write_config(tmp_path, tiny_config(**overrides))
    with pytest.raises(UserError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and fragment in message
    assert "\n" not in message


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match=r"malformed YAML at line \d+"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(scalar)


def test_unsafe_yaml_tags_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(UserError, match="malformed YAML"):
        load_config(path)


def test_modes_and_budgets() -> None:
    config = parse_config(
        {
            "name": "m",
            "objectives": ["latency"],
            "tolerance": {"accuracy_drop": 0.01},
            "constraints": {"flops": 0.5, "latency_ms": 3, "size_bytes": 20000},
        }
    )
    assert config.mode == "tolerance" and config.costs == ["latency"]
    assert parse_config({"name": "s", "scalarize": {"flops": 0.5}}).mode == "scalarized"
    assert (
        parse_config({"name": "c", "objectives": ["accuracy"], "search": {"sampler": "cmaes"}}).search.sampler
        == "cmaes"
    )
