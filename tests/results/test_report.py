"""Building the report from a study made by hand in a real SQLite storage (no search, no torch)."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console

from prunetuna.results import build_report, gain_lines, render_report
from prunetuna.store import BudgetStatus, StudyRecord, TrialRecord, enqueue_attrs, write_study

DIST = {"sparsity.conv1": FloatDistribution(0.0, 0.8, step=0.05)}


def _trial(
    acc: float,
    flops: float,
    *,
    origin: str = "sampler",
    feasible: bool | None = None,
    state: TrialState = TrialState.COMPLETE,
    pruned: float | None = None,
):
    attrs = enqueue_attrs(
        origin=origin,
        metrics={"accuracy": acc, "flops_ratio": flops, **({"accuracy_pruned": pruned} if pruned is not None else {})},
        sparsity={"conv1": round(1 - flops, 6)},
        budget=BudgetStatus.WITHIN if feasible else BudgetStatus.NONE,
    )
    system = {}
    if feasible is not None:
        attrs["feasible"] = feasible
        system["constraints"] = (flops - 0.5,)
    return create_trial(
        state=state,
        values=[acc, flops] if state == TrialState.COMPLETE else None,
        params={"sparsity.conv1": round(1 - flops, 6)},
        distributions=DIST,
        user_attrs=attrs,
        system_attrs=system,
    )


def _study(tmp_path: Path, trials, **study_fields) -> optuna.Study:
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="hand", directions=["maximize", "minimize"]
    )
    write_study(
        study,
        StudyRecord(
            objectives=("accuracy", "flops"),
            dense={"accuracy": 0.9},
            dimensions=("conv1",),
            dimension_layers={"conv1": 1},
            **study_fields,
        ),
        {},
    )
    for trial in trials:
        study.add_trial(trial)
    return study


def test_front_is_optunas_best_trials_and_honours_constraints(tmp_path: Path) -> None:
    study = _study(
        tmp_path,
        [
            _trial(0.95, 0.9, feasible=False),  # dominates everything but misses the budget
            _trial(0.85, 0.4, feasible=True),
            _trial(0.80, 0.45, feasible=True),  # dominated by the one above
            _trial(0.70, 0.2, feasible=True),
            _trial(0.60, 0.3, state=TrialState.PRUNED),
        ],
        constraints={"flops": 0.5},
    )
    report = build_report(study).as_json()  # the report --json schema
    assert [t["number"] for t in report["trials"] if t["pareto"]] == [1, 3]
    assert [t["feasible"] for t in report["trials"]] == [False, True, True, True, None]
    assert report["trials"][1]["budget"] == "within" and report["trials"][1]["sparsity"] == {"conv1": 0.6}
    assert report["dimensions"] == [{"name": "conv1", "layers": 1}] and report["constraints"] == {"flops": 0.5}
    assert report["best"] is None  # pareto mode


def test_gain_over_a_baseline_compares_at_equal_or_lower_cost(tmp_path: Path) -> None:
    study = _study(
        tmp_path,
        [
            _trial(0.70, 0.5, origin="uniform"),
            _trial(0.78, 0.5),  # same cost: counts
            _trial(0.90, 0.55),  # more accurate but costs more: does not count
        ],
    )
    typed = build_report(study)
    report = typed.as_json()
    [gain] = report["baselines"]
    assert gain["origin"] == "uniform" and gain["best_searched_trial"] == 1
    assert abs(gain["gain_points"] - 8.0) < 1e-9 and gain["best_searched_cost_ratio"] == 0.5
    [line] = gain_lines(typed)
    assert (
        line == "best searched vs uniform at equal or lower flops: +8.00 points (trial 1 at flops 0.5000 vs trial 0 at "
        "flops 0.5000)"
    )


def test_gain_line_refuses_to_compare_unequal_costs(tmp_path: Path) -> None:
    study = _study(
        tmp_path,
        [
            _trial(0.70, 0.4, origin="global"),
            _trial(0.90, 0.45),  # more accurate, but more flops: not compared
        ],
    )
    typed = build_report(study)
    report = typed.as_json()
    [gain] = report["baselines"]
    assert (
        gain["gain_points"] is None and gain["best_searched_trial"] is None and gain["best_searched_cost_ratio"] is None
    )
    [line] = gain_lines(typed)
    assert line.startswith(
        "global (trial 0, flops 0.4000): no searched candidate at equal or lower flops yet; no gain stated"
    )
    assert "points" not in line


def test_record_round_trip_through_the_storage(tmp_path: Path) -> None:
    study = _study(tmp_path, [_trial(0.8, 0.5, feasible=True)])
    record = TrialRecord.of(study.trials[0])
    assert record.metrics == {"accuracy": 0.8, "flops_ratio": 0.5} and record.budget is BudgetStatus.WITHIN
    assert record.is_feasible and record.origin == "sampler" and record.sparsity == {"conv1": 0.5}
    assert StudyRecord.of(study.user_attrs).costs == ["flops"]


def test_table_shows_the_score_right_after_pruning_beside_the_fine_tuned_one(tmp_path: Path) -> None:
    report = build_report(_study(tmp_path, [_trial(0.85, 0.5, pruned=0.4125), _trial(0.8, 0.3)]))
    console = Console(width=250, record=True)
    render_report(report, console)
    lines = console.export_text().splitlines()
    header = next(line for line in lines if "accuracy pruned" in line)
    assert header.index("accuracy pruned") < header.index("vs dense")
    assert any("0.4125" in line and "0.8500" in line for line in lines)  # pruned, then fine-tuned
    assert any("0.8000" in line and " - " in line for line in lines)  # a trial without the pruned score
    assert (
        next(t for t in report.as_json()["trials"] if t["number"] == 0)["metrics"]["accuracy_pruned"] == 0.4125
    )  # --json


def test_failed_trials_show_why_grouped_by_reason(tmp_path: Path) -> None:
    reason = (
        "RuntimeError: split_with_sizes expects split_sizes to sum exactly to 6 (input tensor's size at dimension 1)"
    )
    failed = [_trial(0.0, 1.0, state=TrialState.FAIL) for _ in range(3)]
    for trial, why in zip(failed, [reason, reason, None]):
        if why is not None:
            trial.set_user_attr("fail_reason", why + "\nsecond line")
    report = build_report(_study(tmp_path, [_trial(0.85, 0.5), *failed]))
    console = Console(width=300, record=True)
    render_report(report, console)
    text = console.export_text()
    assert f"failed trials 1, 2: {reason}" in text and "second line" not in text
    assert "failed trial 3: no reason recorded" in text
    assert [t["fail_reason"] for t in report.as_json()["trials"]][:2] == [None, reason + "\nsecond line"]  # --json
