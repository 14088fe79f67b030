"""Successive halving's second rung (``search.promote``): the rule on stored points, and real searches."""

from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.config import parse_config
from prunetuna.errors import UserError
from prunetuna.search import Promotion, RungPoint, rung_points


def test_rule_under_a_budget_counts_feasible_higher_scores() -> None:
    rule = Promotion(top=2)
    point = RungPoint(5, 0.60, (0.09,))
    earlier = [RungPoint(0, 0.70, (0.10,)), RungPoint(1, 0.50, (0.05,)), RungPoint(2, 0.90, (0.5,), feasible=False)]
    assert rule.decide(point, earlier, baseline=False, budgeted=True)[0]  # one feasible rival only
    promoted, reason = rule.decide(point, [*earlier, RungPoint(3, 0.65, (0.08,))], baseline=False, budgeted=True)
    assert not promoted and "(trials 0, 3)" in reason
    assert rule.decide(point, [RungPoint(0, 0.7, (0.1,))] * 5, baseline=True, budgeted=True)[0]  # baselines always
    assert not rule.decide(RungPoint(6, 0.99, (0.2,), feasible=False), [], baseline=False, budgeted=True)[0]


def test_rule_without_a_budget_counts_dominating_points() -> None:
    rule = Promotion(top=1)
    point = RungPoint(5, 0.60, (0.30,))
    # Higher score at a higher cost does not dominate: promoted.
    assert rule.decide(point, [RungPoint(0, 0.90, (0.50,))], baseline=False, budgeted=False)[0]
    assert not rule.decide(point, [RungPoint(0, 0.70, (0.30,))], baseline=False, budgeted=False)[0]


def test_config_keys() -> None:
    config = parse_config(tiny_config(search={"promote": {"top": 2, "epochs": 3, "max_batches": 4}}), "<test>")
    assert (config.search.promote.top, config.search.promote.epochs, config.search.promote.max_batches) == (2, 3, 4)
    assert parse_config(tiny_config(), "<test>").search.promote.top == 0  # off unless asked for
    for bad in ({"top": -1}, {"epochs": 0}, {"tops": 1}):
        with pytest.raises(UserError, match="promote"):
            parse_config(tiny_config(search={"promote": bad}), "<test>")


def _search(tmp_path, name: str, n_trials: int, **search) -> optuna.Study:
    config = write_config(
        tmp_path,
        tiny_config(
            name,
            constraints={"flops": 0.6},
            search={"sampler": "random", "n_trials": n_trials, **search},
        ),
    )
    result = CliRunner().invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")


def test_promoted_candidates_are_fine_tuned_longer_and_scored_after_it(tmp_path) -> None:
    study = _search(tmp_path, "promote", 7, promote={"top": 1, "epochs": 1, "max_batches": 3})
    trials = study.get_trials(deepcopy=False)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'w' / 'mlflow.db'}")
    promoted = []
    for trial in trials:
        stored = trial.user_attrs["promotion"]
        point = RungPoint(trial.number, stored["score"], tuple(stored["costs"]), stored["feasible"])
        baseline = trial.user_attrs.get("origin", "sampler") != "sampler"
        expected, reason = Promotion(1).decide(point, rung_points(trials, trial.number), baseline, budgeted=True)
        assert (stored["promoted"], stored["reason"]) == (expected, reason), trial.number
        metrics = trial.user_attrs["metrics"]
        run_id = trial.user_attrs["mlflow_run_id"]
        epochs = [m.value for m in sorted(client.get_metric_history(run_id, "val_accuracy"), key=lambda m: m.step)]
        if expected:
            promoted.append(trial)
            assert metrics["accuracy_short"] == pytest.approx(stored["score"])
            assert len(epochs) == 2 and epochs[-1] == pytest.approx(metrics["accuracy"])  # short epoch + promoted one
            assert trial.values[0] == pytest.approx(metrics["accuracy"])  # the told score is the longer one
        else:
            assert "accuracy_short" not in metrics and len(epochs) == 1
    assert {t.user_attrs.get("origin") for t in promoted} >= {"uniform", "global"}  # the enqueued baselines
    assert len(promoted) < len(trials)  # with top 1, some sampled candidates are not promoted
    run = client.get_run(promoted[0].user_attrs["mlflow_run_id"])
    assert run.data.params["search.promote.top"] == "1"
    config = tmp_path / "experiment.yaml"
    report = CliRunner().invoke(app, ["report", str(config), "--workdir", str(tmp_path / "w")])
    assert report.exit_code == 0, report.output
    numbers = ", ".join(str(t.number) for t in promoted)
    assert f"promoted trials {numbers}: scored after search.promote's longer fine-tune" in report.output
    assert run.data.metrics["accuracy_short"] == pytest.approx(promoted[0].user_attrs["metrics"]["accuracy_short"])


def test_resumed_study_keeps_its_promotions(tmp_path) -> None:
    first = _search(tmp_path, "promote-resume", 4, promote={"top": 1, "max_batches": 2})
    before = {t.number: t.user_attrs["promotion"] for t in first.trials}
    resumed = _search(tmp_path, "promote-resume", 6, promote={"top": 1, "max_batches": 2})
    assert {t.number: t.user_attrs["promotion"] for t in resumed.trials if t.number in before} == before
