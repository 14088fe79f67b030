"""finetune.trainer and finetune.callbacks: validated (unknown keys refused by name) and applied to every fit."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
import user_callbacks
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.config import load_config, parse_config
from prunetuna.errors import UserError
from prunetuna.training import fine_tune, trainer_setup
from prunetuna.workload import TinyResNet, baseline_key, digits

runner = CliRunner()
ALLOWED = (
    "allowed keys here: accelerator, devices, precision, accumulate_grad_batches, gradient_clip_val, "
    "gradient_clip_algorithm"
)


@pytest.mark.parametrize(
    ("finetune", "fragment"),
    [
        ({"trainer": {"max_steps": 3}}, f"unknown key 'finetune.trainer.max_steps'; {ALLOWED}"),
        ({"trainer": {"max_epochs": 3}}, f"'max_epochs' is set by prunetuna (finetune.epochs); {ALLOWED}"),
        ({"trainer": {"logger": True}}, "'logger' is set by prunetuna"),
        ({"trainer": {"precision": "8-bit"}}, "unknown precision '8-bit'; choose one of 32-true, 16-mixed"),
        ({"trainer": {"accelerator": "tpu-v9"}}, "unknown accelerator 'tpu-v9'"),
        ({"trainer": {"devices": 2}}, "one device per fine-tune"),
        ({"trainer": {"accumulate_grad_batches": 0}}, "finetune.trainer.accumulate_grad_batches"),
        ({"trainer": {"gradient_clip_val": -1.0}}, "finetune.trainer.gradient_clip_val"),
        ({"callbacks": ["no_colon"]}, "'no_colon' is not of the form 'package.module:callable'"),
    ],
)
def test_bad_trainer_settings_are_refused_by_name(tmp_path: Path, finetune: dict, fragment: str) -> None:
    path = write_config(tmp_path, tiny_config(finetune=finetune))
    with pytest.raises(UserError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and fragment in message and "\n" not in message


def test_lightning_short_precisions_read_as_lightning_reads_them() -> None:
    for given, meant in ((16, "16-mixed"), ("bf16", "bf16-mixed"), (32, "32-true"), ("16-true", "16-true")):
        assert (
            parse_config({"name": "p", "finetune": {"trainer": {"precision": given}}}).finetune.trainer.precision
            == meant
        )
    default = parse_config({"name": "p"}).finetune
    assert trainer_setup(default).kwargs == {
        "accelerator": "auto",
        "devices": 1,
        "precision": "32-true",
        "accumulate_grad_batches": 1,
    }
    assert not trainer_setup(default).automatic_optimization


def test_default_settings_train_exactly_as_before() -> None:
    """The default trainer section changes nothing: same manual optimization, same weights."""
    datamodule = digits(batch_size=32)
    weights = []
    for setup in (None, trainer_setup(parse_config({"name": "d"}).finetune)):
        torch.manual_seed(0)
        model = TinyResNet(width=4)
        fine_tune(model, datamodule, epochs=1, lr=0.01, seed=0, max_batches=4, trainer=setup)
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_settings_and_callbacks_reach_the_baseline_and_every_fine_tune(tmp_path: Path) -> None:
    trainer = {"accelerator": "cpu", "accumulate_grad_batches": 2, "gradient_clip_val": 0.5, "precision": "bf16-mixed"}
    overrides = {
        "finetune": {"max_batches": 4, "trainer": trainer, "callbacks": ["user_callbacks:record_trainer"]},
        "search": {"sampler": "random", "n_trials": 2, "warm_start": False},
    }
    config = write_config(tmp_path, tiny_config("trainer", **overrides))
    user_callbacks.SEEN.clear()
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    seen = user_callbacks.SEEN
    assert len(seen) == 3, seen  # the dense baseline's training, then two candidates' fine-tunes
    for fit in seen:
        assert (
            fit["accumulate_grad_batches"] == 2 and fit["gradient_clip_val"] == 0.5 and fit["precision"] == "bf16-mixed"
        )
        assert fit["gradient_clip_algorithm"].endswith("NORM") and fit["accelerator"] == "CPUAccelerator"
        assert fit["automatic_optimization"]
    for fit in seen[1:]:
        assert fit["batches"] == 4 and fit["optimizer_steps"] == 2  # max_batches 4, accumulated in pairs
    assert len({fit["callback_id"] for fit in seen}) == 3, "a fresh callback for every fit"
    study = optuna.load_study(study_name="trainer", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 2
    plain = parse_config(tiny_config("trainer"))
    assert baseline_key(load_config(config)) != baseline_key(plain), "trainer settings decide the dense weights too"


@pytest.mark.parametrize(
    ("finetune", "fragment"),
    [
        (
            {"callbacks": ["user_callbacks:not_a_callback"]},
            "finetune.callbacks[0]: 'user_callbacks:not_a_callback' returned int, not a lightning.pytorch.Callback",
        ),
        (
            {"callbacks": ["user_callbacks:record_trainer", "no_such_module_here:cb"]},
            "finetune.callbacks[1]: cannot import module 'no_such_module_here'",
        ),
        (
            {"callbacks": ["user_callbacks:absent"]},
            "finetune.callbacks[0]: module 'user_callbacks' has no attribute 'absent'",
        ),
        (
            {"callbacks": ["user_callbacks:needs_an_argument"]},
            "finetune.callbacks[0]: calling 'user_callbacks:needs_an_argument' failed",
        ),
    ],
)
def test_bad_callback_targets_exit_2_in_one_line_before_training(tmp_path: Path, finetune: dict, fragment: str) -> None:
    config = write_config(tmp_path, tiny_config("bad-callback", finetune=finetune))
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("prunetuna: error:") and fragment in line, line
    assert not list((tmp_path / "w").glob("baseline-*")), "nothing was trained"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_accelerator_this_machine_lacks_is_bad_input(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, tiny_config("no-gpu", finetune={"trainer": {"accelerator": "cuda", "precision": "16-mixed"}})
    )
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and "finetune.trainer: Lightning refuses these settings here" in line, line


def test_a_lower_precision_fine_tune_leaves_float32_weights_and_their_accuracy() -> None:
    """bf16-true trains in bfloat16 (the teacher copy too); the result is float32 weights and the float32 accuracy
    export re-checks."""
    from prunetuna.training import Distillation, evaluate_accuracy

    datamodule = digits(batch_size=32)
    torch.manual_seed(0)
    teacher, model = TinyResNet(width=8), TinyResNet(width=4)
    setup = trainer_setup(
        parse_config({"name": "b", "finetune": {"trainer": {"accelerator": "cpu", "precision": "bf16-true"}}}).finetune
    )
    assert setup.automatic_optimization
    result = fine_tune(
        model, datamodule, epochs=1, lr=0.01, seed=0, max_batches=4, trainer=setup, distill=Distillation(teacher)
    )
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    assert next(teacher.parameters()).dtype == torch.float32, "the dense model is not converted"
    assert result.accuracy == evaluate_accuracy(model, datamodule.val_dataloader())
