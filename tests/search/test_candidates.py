"""search.screening.candidates: several candidates per sampled trial, the best by pre-fine-tune score fine-tuned."""

from __future__ import annotations

import json
from typing import Any

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.config import parse_config
from prunetuna.errors import UserError
from prunetuna.search import (
    CandidateScreen,
    ScreenPoint,
    TrialSeededSampler,
    build_plan,
    check_inputs,
    choose_candidate,
    enqueue_again,
    hypervolume,
    make_sampler,
)
from prunetuna.sparsity import from_params
from prunetuna.store import CANDIDATES_FILE, TrialRecord


def test_with_a_budget_the_highest_score_that_fits_is_chosen() -> None:
    points = [ScreenPoint(4, 0.41, (0.25,)), ScreenPoint(4, 0.54, (0.25,)), ScreenPoint(4, 0.60, (0.31,))]
    choice = choose_candidate(points, [True, True, False], [], by_score=True)
    assert choice.index == 1 and choice.reasons[1] is None
    assert choice.reasons[0] == (
        "screened: candidate 1 of 3 scored 0.4100 after pruning and BN recalibration, below the chosen 0.5400 "
        "(candidate 2)"
    )
    assert (
        choice.reasons[2]
        == "screened: candidate 3 of 3 stays over the budget even at max_sparsity; candidate 2 fits it"
    )
    # equal scores: the earlier draw
    tie = choose_candidate([ScreenPoint(0, 0.5, (0.2,)), ScreenPoint(0, 0.5, (0.2,))], [True, True], [], True)
    assert tie.index == 0 and "no better than the chosen 0.5000" in (tie.reasons[1] or "")


def test_hypervolume() -> None:
    assert hypervolume([(0.5, 0.5)], (1.0, 1.0)) == pytest.approx(0.25)
    assert hypervolume([(0.5, 0.5), (0.25, 0.75), (0.9, 0.9)], (1.0, 1.0)) == pytest.approx(0.3125)
    assert hypervolume([(0.5, 0.5, 0.5)], (1.0, 1.0, 1.0)) == pytest.approx(0.125)
    assert hypervolume([(1.5, 0.5)], (1.0, 1.0)) == 0.0  # beyond the reference


def test_without_a_budget_the_draw_that_extends_the_front_most_is_chosen() -> None:
    """Not the highest score: the least pruned draw scores best but adds little where the front already is."""
    earlier = [ScreenPoint(0, 0.90, (0.80,)), ScreenPoint(1, 0.60, (0.40,))]
    dense_ish = ScreenPoint(2, 0.92, (0.85,))  # above the front, little area
    in_the_gap = ScreenPoint(2, 0.70, (0.30,))  # beyond the cheapest earlier point
    dominated = ScreenPoint(2, 0.50, (0.60,))  # both earlier points dominate it
    choice = choose_candidate(
        [dense_ish, in_the_gap, dominated], [True] * 3, earlier, by_score=False, cost_names=["flops_ratio"]
    )
    assert choice.index == 1
    assert choice.gains[1] > choice.gains[0] > 0 and choice.gains[2] == 0
    assert "flops_ratio 0.6000, dominated by 1 earlier points) adds 0 hypervolume" in (choice.reasons[2] or "")
    assert "the chosen candidate 2" in (choice.reasons[0] or "")
    # every draw dominated: the fewest dominating earlier points, then the score
    worse = [ScreenPoint(2, 0.55, (0.9,)), ScreenPoint(2, 0.50, (0.7,))]
    assert choose_candidate(worse, [True, True], earlier, by_score=False).index == 1


class _Recorder:
    """A chooser (the CandidateChooser protocol): keeps the draws, picks the one with the largest sum."""

    def __init__(self, count: int, space: dict[str, Any]) -> None:
        self.count, self.search_space = count, space
        self.calls: list[tuple[int, list[dict[str, Any]], dict[str, Any]]] = []

    def __call__(self, study: optuna.Study, trial: Any, draws: list[dict[str, Any]]) -> dict[str, Any]:
        chosen = max(draws, key=lambda d: sum(d.values()))
        self.calls.append((trial.number, draws, chosen))
        return chosen


SHORT_START = {  # the registry's samplers with a start-up of 2 random trials (GP's 10 take a minute under load)
    "tpe": lambda seed: optuna.samplers.TPESampler(
        seed=seed, multivariate=True, constant_liar=True, n_startup_trials=2
    ),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed, n_startup_trials=2),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=2),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "cmaes": lambda seed: optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=2),
}


@pytest.fixture
def one_thread():
    """GP fits with torch: one thread, as under xdist (a GP draw takes seconds with two threads on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(SHORT_START))
def test_sampler_draws_differ_and_the_trial_takes_the_chosen_one(name: str, one_thread) -> None:  # noqa: ANN001
    space = {f"sparsity.{k}": FloatDistribution(0.0, 0.8, step=0.05) for k in "abc"}
    chooser = _Recorder(3, space)
    multi = name != "cmaes"
    study = optuna.create_study(
        directions=["maximize", "minimize"] if multi else ["maximize"],
        sampler=TrialSeededSampler(SHORT_START[name], 0, chooser),
    )
    study.enqueue_trial({"sparsity.a": 0.1, "sparsity.b": 0.2, "sparsity.c": 0.3})  # a baseline: never screened
    sampled = 3 if name == "gp" else 4  # the start-up trials, then the sampler's own (NSGA-II: its second generation)
    for _ in range(1 + sampled):
        trial = study.ask()
        p = {k: trial.suggest_float(k, 0.0, 0.8, step=0.05) for k in space}
        study.tell(trial, [1 - p["sparsity.a"] * p["sparsity.b"], sum(p.values())] if multi else [1 - p["sparsity.a"]])
    assert [number for number, _, _ in chooser.calls] == list(range(1, 1 + sampled))
    assert study.trials[0].params == {"sparsity.a": 0.1, "sparsity.b": 0.2, "sparsity.c": 0.3}
    for number, draws, chosen in chooser.calls:
        assert len(draws) == 3 and all(set(d) == set(space) for d in draws)
        assert study.trials[number].params == chosen
    distinct = [len({tuple(d.values()) for d in draws}) for _, draws, _ in chooser.calls]
    # after the start-up trials, the sampler's own relative samples: GP maximizes its acquisition function, and
    # its draws may coincide
    assert min(distinct[2:]) >= (1 if name == "gp" else 3), distinct


def test_one_candidate_is_todays_sampler() -> None:
    space = {f"sparsity.{k}": FloatDistribution(0.0, 0.8, step=0.05) for k in "ab"}

    def run(chooser: _Recorder | None) -> list[dict[str, float]]:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler("tpe", 3, 8, chooser))
        for _ in range(12):
            trial = study.ask()
            p = {k: trial.suggest_float(k, 0.0, 0.8, step=0.05) for k in space}
            study.tell(trial, [1 - p["sparsity.a"], p["sparsity.b"]])
        return [t.params for t in study.trials]

    one = _Recorder(1, space)
    assert run(one) == run(None) and not one.calls


def test_config_key() -> None:
    assert parse_config(tiny_config(), "<test>").search.screening.candidates == 1
    config = parse_config(tiny_config(search={"screening": {"candidates": 4}}), "<test>")
    assert config.search.screening.candidates == 4 and not config.search.screening.enabled
    with pytest.raises(UserError, match="candidates"):
        parse_config(tiny_config(search={"screening": {"candidates": 0}}), "<test>")
    with pytest.raises(UserError, match="calibration_batches"):
        parse_config(tiny_config(pruning={"calibration_batches": 0}, search={"screening": {"candidates": 2}}), "<test>")


def test_search_screens_three_candidates_per_sampled_trial(tmp_path) -> None:
    """A real search under a budget: the baselines are fine-tuned as enqueued; each sampled trial records three
    draws, fine-tunes the best by pre-fine-tune score and says why the other two were dropped."""
    name = "eagle"
    search = {"sampler": "random", "n_trials": 3, "baselines": ["uniform"], "screening": {"candidates": 3}}
    config = write_config(
        tmp_path,
        tiny_config(name, search=search, pruning={"max_sparsity": 0.8, "step": 0.05}, constraints={"flops": 0.6}),
    )
    result = CliRunner().invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'w' / 'mlflow.db'}")
    records = {t.number: TrialRecord.of(t) for t in study.trials}
    assert sorted(r.origin for r in records.values()) == ["sampler", "sampler", "uniform"]
    for trial in study.trials:
        record = records[trial.number]
        assert trial.state.name == "COMPLETE"
        if record.origin != "sampler":
            assert record.candidates == ()  # baselines are never screened
            continue
        drawn = record.candidates
        assert [c["candidate"] for c in drawn] == [1, 2, 3]
        chosen = [c for c in drawn if c["chosen"]]
        dropped = [c for c in drawn if not c["chosen"]]
        assert len(chosen) == 1 and len(dropped) == 2
        best = chosen[0]
        assert best["sampled"] == from_params(trial.params)  # the trial's params are the chosen draw
        assert best["vector"] == record.sparsity  # ... and what it applied and fine-tuned
        assert best["score"] == max(c["score"] for c in drawn)
        assert best["metrics"]["accuracy_pruned"] == record.metrics["accuracy_pruned"]
        assert best["metrics"]["flops_ratio"] == pytest.approx(record.metrics["flops_ratio"])
        assert record.screening["score"] == best["score"]
        for c in dropped:
            assert c["reason"].startswith(f"screened: candidate {c['candidate']} of 3 scored {c['score']:.4f}")
            assert f"the chosen {best['score']:.4f} (candidate {best['candidate']})" in c["reason"]
        assert all(c["metrics"]["flops_ratio"] <= 0.6 + 1e-9 for c in drawn)  # each scored within the budget
        logged = client.download_artifacts(record.mlflow_run_id, CANDIDATES_FILE, str(tmp_path))
        with open(logged) as handle:
            assert json.load(handle) == list(drawn)
    report = CliRunner().invoke(app, ["report", str(config), "--workdir", str(tmp_path / "w"), "--json"])
    assert report.exit_code == 0, report.output
    trials = json.loads(report.output)["trials"]
    assert [len(t["candidates"]) for t in trials] == [
        0 if records[t["number"]].origin != "sampler" else 3 for t in trials
    ]


def test_a_trial_run_again_keeps_its_choice_and_is_not_screened_again() -> None:
    space = {f"sparsity.{k}": FloatDistribution(0.0, 0.8, step=0.05) for k in "ab"}
    chooser = _Recorder(3, space)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler("random", 0, 8, chooser))
    first = study.ask()
    params = {k: first.suggest_float(k, 0.0, 0.8, step=0.05) for k in space}
    drawn = [{"candidate": 1, "chosen": True, "reason": None}, {"candidate": 2, "chosen": False, "reason": "screened"}]
    first.set_user_attr("candidates", drawn)
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    enqueue_again(study, study.trials[0])
    again = study.ask()
    assert {k: again.suggest_float(k, 0.0, 0.8, step=0.05) for k in space} == params
    assert len(chooser.calls) == 1  # the first trial only
    assert TrialRecord.of(again).candidates == tuple(drawn) and TrialRecord.of(again).retry_of == 0


def test_a_vector_drawn_twice_is_scored_once_and_the_chosen_candidate_is_kept(tmp_path) -> None:
    config = parse_config(tiny_config("twice"))
    plan = build_plan(check_inputs(config), tmp_path)
    screen = CandidateScreen(plan, 3)
    assert set(screen.search_space) == {f"sparsity.{name}" for name in plan.space.names}
    study = optuna.create_study(directions=plan.scoring.directions)
    trial = study.ask()
    frozen = study.trials[trial.number]
    low = {name: 0.0 for name in screen.search_space}
    high = {name: 0.5 for name in screen.search_space}
    chosen = screen(study, frozen, [high, high, low])
    sampled = from_params(chosen)
    kept = screen.chosen(trial.number, sampled)
    assert kept is not None and kept.candidate.vector == sampled and kept.candidate.accuracy_pruned is not None
    records = kept.records
    assert records[1]["reason"] == "screened: candidate 2 of 3 is candidate 1's vector again"
    assert records[1]["score"] == records[0]["score"]
    assert chosen == (low if records[2]["chosen"] else high) and sum(r["chosen"] for r in records) == 1
    assert screen.chosen(trial.number, sampled) is None  # taken once
    screen(study, frozen, [high, high, low])
    assert screen.chosen(trial.number, {**sampled, "other": 0.1}) is None  # another vector: not this screening's
