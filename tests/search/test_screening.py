from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.config import parse_config
from prunetuna.errors import UserError
from prunetuna.objectives import Scoring
from prunetuna.search import Screening, ScreenPoint, earlier_points, pre_finetune_score


def test_rule_counts_dominating_earlier_points() -> None:
    rule = Screening(min_dominating=2)
    point = ScreenPoint(5, 0.80, (0.50,))
    better = [ScreenPoint(0, 0.85, (0.40,)), ScreenPoint(1, 0.80, (0.45,))]
    assert rule.decide(point, better[:1]) is None
    reason = rule.decide(point, better)
    assert reason is not None and "dominated by 2 earlier candidates (trials 0, 1" in reason
    # Equal points, and points better in one coordinate and worse in another, do not dominate.
    assert (
        rule.decide(point, [ScreenPoint(0, 0.80, (0.50,)), ScreenPoint(1, 0.90, (0.60,)), ScreenPoint(2, 0.70, (0.3,))])
        is None
    )


def test_score_is_the_pre_finetune_score_of_the_mode() -> None:
    metrics = {"accuracy_pruned": 0.7, "flops_ratio": 0.4}
    assert pre_finetune_score(Scoring("pareto", ("accuracy", "flops")), metrics) == 0.7
    assert pre_finetune_score(Scoring("tolerance", ("flops",), accuracy_drop=0.01), metrics) == 0.7
    scalarized = Scoring("scalarized", ("accuracy", "flops"), weights=(("flops", 0.5),))
    assert pre_finetune_score(scalarized, metrics) == pytest.approx(0.7 - 0.5 * 0.4)


def test_config_keys() -> None:
    config = parse_config(tiny_config(search={"screening": {"enabled": True, "min_dominating": 2}}), "<test>")
    assert config.search.screening.enabled and config.search.screening.min_dominating == 2
    assert not parse_config(tiny_config(), "<test>").search.screening.enabled  # off unless asked for
    for bad in ({"enabled": True, "min_dominating": 0}, {"enabled": "yes"}, {"enable": True}):
        with pytest.raises(UserError, match="screening"):
            parse_config(tiny_config(search={"screening": bad}), "<test>")
    with pytest.raises(UserError, match="calibration_batches"):
        parse_config(tiny_config(pruning={"calibration_batches": 0}, search={"screening": {"enabled": True}}), "<test>")


def _search(tmp_path, name: str, n_trials: int, **overrides) -> optuna.Study:
    search = {"sampler": "random", "n_trials": n_trials, "screening": {"enabled": True, "min_dominating": 1}}
    config = write_config(tmp_path, tiny_config(name, search=search, **overrides))
    result = CliRunner().invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")


def _check_decisions(study: optuna.Study, min_dominating: int = 1) -> list[optuna.trial.FrozenTrial]:
    """Every trial's decision is the rule's on the stored points of the trials before it."""
    trials = study.get_trials(deepcopy=False)
    screened = []
    for trial in trials:
        stored = trial.user_attrs["screening"]
        point = ScreenPoint(trial.number, stored["score"], tuple(stored["costs"]))
        expected = Screening(min_dominating).decide(point, earlier_points(trials, trial.number))
        reason = trial.user_attrs.get("pruned_reason")
        if trial.user_attrs.get("origin", "sampler") != "sampler":
            expected = None  # baselines are always fine-tuned
        assert (reason == expected) if expected else trial.state.name == "COMPLETE", (trial.number, reason, expected)
        if expected:
            screened.append(trial)
            assert trial.state.name == "PRUNED"
            assert (
                "epoch_accuracy" not in trial.user_attrs and "accuracy" not in trial.user_attrs["metrics"]
            )  # no fine-tune
            assert "accuracy_pruned" in trial.user_attrs["metrics"]
    return screened


def test_screening_stops_dominated_candidates_in_a_multi_objective_study(tmp_path) -> None:
    study = _search(tmp_path, "screen-mo", 8)
    screened = _check_decisions(study)
    assert screened, [t.user_attrs["screening"] for t in study.trials]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'w' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("screen-mo").experiment_id], max_results=100)
    tags = {r.data.tags.get("prunetuna.pruned_reason") for r in runs} - {None}
    assert tags == {t.user_attrs["pruned_reason"] for t in screened}


def test_screening_in_single_objective_modes(tmp_path) -> None:
    study = _search(tmp_path, "screen-sc", 8, scalarize={"flops": 0.5})
    assert _check_decisions(study)
    study = _search(tmp_path, "screen-tol", 6, objectives=["flops"], tolerance={"accuracy_drop": 0.5})
    _check_decisions(study)


def test_resumed_study_keeps_its_decisions(tmp_path) -> None:
    first = _search(tmp_path, "screen-resume", 5)
    before = {t.number: (t.state.name, t.user_attrs.get("pruned_reason")) for t in first.trials}
    resumed = _search(tmp_path, "screen-resume", 9)
    assert {
        t.number: (t.state.name, t.user_attrs.get("pruned_reason")) for t in resumed.trials if t.number in before
    } == before
    assert len(resumed.trials) == 9
    _check_decisions(resumed)
