from __future__ import annotations

import optuna
import pytest
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.errors import UserError
from prunetuna.search import EARLY_STOPPING, EpochRecord, dominance_decision, dominated_count, make_pruner


def test_dominated_count_compares_at_the_same_epoch() -> None:
    records = [
        EpochRecord(0, (0.80, 0.90), (0.5,)),  # better accuracy, same cost: dominates at epochs 1 and 2
        EpochRecord(1, (0.70, 0.95), (0.4,)),  # at epoch 1 worse accuracy; at epoch 2 better and cheaper
        EpochRecord(2, (0.90,), (0.9,)),  # more expensive: never dominates
        EpochRecord(3, (0.75, 0.85), (0.5,)),  # equal at epoch 1: not strictly better anywhere
    ]
    assert dominated_count(0.75, [0.5], records, epoch=1) == 1
    assert dominated_count(0.80, [0.5], records, epoch=2) == 3
    decide = dominance_decision([0.5], records, min_dominating=2, last_epoch=3)
    assert decide(1, 0.75) is None
    assert "dominated after epoch 2" in decide(2, 0.80)
    assert decide(3, 0.10) is None, "the last epoch is never cut short"


def test_pruner_registry() -> None:
    assert isinstance(make_pruner("median", 3), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner("hyperband", 3), optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner("dominated", 3), optuna.pruners.NopPruner)


def test_dominated_rule_prunes_in_a_multi_objective_study(tmp_path) -> None:
    config = write_config(
        tmp_path,
        tiny_config(
            "es",
            finetune={"epochs": 3, "max_batches": 4},
            search={"sampler": "random", "n_trials": 8, "pruner": "dominated", "min_dominating": 1},
        ),
    )
    result = CliRunner().invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="es", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 8
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, states
    for trial in pruned:
        assert trial.user_attrs["pruned_reason"].startswith("dominated after epoch")
        assert len(trial.user_attrs["epoch_accuracy"]) < 3
    for trial in study.trials:
        if trial.state.name == "COMPLETE":
            assert len(trial.user_attrs["epoch_accuracy"]) == 3


def test_optuna_pruner_needs_one_objective(tmp_path) -> None:
    config = write_config(tmp_path, tiny_config("bad", search={"pruner": "median"}))
    result = CliRunner().invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2 and "needs one objective" in result.stderr


def test_optuna_pruner_in_a_single_objective_study(tmp_path) -> None:
    """Scalarized mode is one objective: Optuna's hyperband pruner gets each epoch's score."""
    config = write_config(
        tmp_path,
        tiny_config(
            "hb",
            finetune={"epochs": 3, "max_batches": 3},
            scalarize={"flops": 0.5},
            search={"sampler": "random", "n_trials": 6, "pruner": "hyperband"},
        ),
    )
    result = CliRunner().invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="hb", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    for trial in study.trials:
        assert trial.intermediate_values, "every epoch was reported to Optuna"
        metrics = trial.user_attrs["metrics"]
        first = trial.intermediate_values[1]
        assert abs(first - (trial.user_attrs["epoch_accuracy"][0] - 0.5 * metrics["flops_ratio"])) < 1e-9
    for trial in (t for t in study.trials if t.state.name == "PRUNED"):
        assert "hyperband pruner" in trial.user_attrs["pruned_reason"]


def test_an_unknown_rule_is_an_error_not_no_pruner() -> None:
    with pytest.raises(UserError, match="unknown pruner 'medain'; choose one of none, median, hyperband, dominated"):
        make_pruner("medain", 3)
    assert EARLY_STOPPING.get("none").pruner(3).__class__ is optuna.pruners.NopPruner


def test_dominated_rule_stops_a_user_module_on_its_own_metric(tmp_path) -> None:
    """The rule is fed the task score each epoch: a user's LightningModule is stopped on its metric (val/f1),
    exactly as the built-in classifier is on accuracy; early stopping is never silently inert."""
    model = {"builtin": None, "target": "user_modules:F1Module", "kwargs": {"channels": 6}, "prune": "net"}
    config = write_config(
        tmp_path,
        tiny_config(
            "es-module",
            model=model,
            metric={"name": "val/f1", "mode": "max"},
            objectives=["metric", "flops"],
            finetune={"epochs": 3, "max_batches": 3},
            search={"sampler": "random", "n_trials": 6, "pruner": "dominated", "min_dominating": 1},
        ),
    )
    result = CliRunner().invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="es-module", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, [t.state.name for t in study.trials]
    for trial in pruned:
        assert trial.user_attrs["pruned_reason"].startswith("dominated after epoch")
        assert len(trial.user_attrs["epoch_accuracy"]) < 3
    for trial in study.trials:
        if trial.state.name == "COMPLETE":
            assert len(trial.user_attrs["epoch_accuracy"]) == 3
            assert trial.user_attrs["metrics"]["val/f1"] == trial.values[0]
