"""The trial runner on its own: a real small space, a real SQLite study and MLflow store, no CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from conftest import tiny_config
from prunetuna.config import parse_config
from prunetuna.search import Baselines, TrialPlan, TrialRunner, build_plan, check_inputs, enqueue_baselines
from prunetuna.store import (
    BudgetStatus,
    StudyTracker,
    TrialRecord,
    TrialStore,
    TrialWriter,
    Workspace,
    open_storage,
    resolve_workspace,
)


def _plan(tmp_path: Path, **overrides) -> tuple[TrialPlan, Workspace]:
    config = parse_config(tiny_config("unit", **overrides))
    workspace = resolve_workspace(config.name, tmp_path / "w", None, None)
    return build_plan(check_inputs(config), workspace.workdir), workspace


def _runner(plan: TrialPlan, workspace: Workspace, target: int) -> tuple[TrialRunner, optuna.Study, StudyTracker]:
    tracker = StudyTracker(workspace, plan.config.name)
    tracker.connect(create=True)
    tracker.start_parent(None, {})
    storage = open_storage(workspace, create=True)
    study = optuna.create_study(
        storage=storage,
        study_name=plan.config.name,
        directions=plan.scoring.directions,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    return TrialRunner(plan, TrialWriter(tracker, TrialStore(workspace.workdir)), target), study, tracker


def test_runner_records_every_trial_in_optuna_and_mlflow(tmp_path: Path) -> None:
    plan, workspace = _plan(tmp_path)
    runner, study, tracker = _runner(plan, workspace, target=2)
    study.optimize(runner, n_trials=2)
    tracker.flush()
    client = MlflowClient(tracking_uri=workspace.tracking_uri)
    for trial in study.trials:
        record = TrialRecord.of(trial)
        assert trial.state.name == "COMPLETE"
        assert set(record.sparsity) == set(plan.space.names)
        assert trial.values == [record.metrics["accuracy"], record.metrics["flops_ratio"]]
        assert 0 < record.metrics["flops_ratio"] <= 1.0 and "accuracy_pruned" in record.metrics
        assert (
            record.budget is BudgetStatus.NONE and record.feasible is None
        )  # no constraint: nothing to be feasible for
        run = client.get_run(record.mlflow_run_id)
        assert run.info.status == "FINISHED" and run.data.tags["optuna.state"] == "COMPLETE"
        assert float(run.data.metrics["accuracy"]) == pytest.approx(record.metrics["accuracy"])
        # the step timer saw the trial's steps, in plausible amounts
        steps = runner.timers[trial.number].seconds
        assert {"prune", "measure", "recalibrate", "evaluate", "fine_tune"} <= set(steps) and all(
            v > 0 for v in steps.values()
        )


def test_runner_projects_onto_a_budget_and_prunes_what_cannot_meet_it(tmp_path: Path) -> None:
    plan, workspace = _plan(tmp_path, constraints={"flops": 0.6})
    runner, study, _ = _runner(plan, workspace, target=4)
    study.enqueue_trial({f"sparsity.{name}": 0.0 for name in plan.space.names})  # dense: over the budget as sampled
    study.optimize(runner, n_trials=1)
    record = TrialRecord.of(study.trials[0])
    assert record.budget in (BudgetStatus.PROJECTED, BudgetStatus.OVER)
    assert record.projection_t is not None
    if record.budget is BudgetStatus.PROJECTED:
        assert (
            study.trials[0].state.name == "COMPLETE"
            and record.metrics["flops_ratio"] <= 0.6 + 1e-9
            and record.feasible is True
        )
    else:
        assert study.trials[0].state.name == "PRUNED"

    unreachable = type(plan.budgets[0])("flops", "flops", 1e-6, False)  # unreachable even at max_sparsity
    runner.plan = dataclasses.replace(plan, budgets=(unreachable,))  # the plan is frozen: a new one
    study.optimize(runner, n_trials=1)
    last = study.trials[-1]
    assert last.state.name == "PRUNED" and TrialRecord.of(last).budget is BudgetStatus.OVER


def test_a_failing_fine_tune_leaves_its_reason_in_the_trial_and_the_run(tmp_path: Path) -> None:
    plan, workspace = _plan(tmp_path)
    runner, study, tracker = _runner(plan, workspace, target=1)
    plan.workload.datamodule.train_dataloader = lambda: (_ for _ in ()).throw(RuntimeError("broken loader"))
    study.optimize(runner, n_trials=1, catch=(Exception,))
    tracker.flush()
    record = TrialRecord.of(study.trials[0])
    assert study.trials[0].state.name == "FAIL" and record.fail_reason == "RuntimeError: broken loader"
    run = MlflowClient(tracking_uri=workspace.tracking_uri).get_run(record.mlflow_run_id)
    assert run.data.tags["prunetuna.fail_reason"] == "RuntimeError: broken loader" and run.info.status == "FAILED"


def test_warm_start_enqueues_both_baselines_once_within_the_level(tmp_path: Path) -> None:
    plan, workspace = _plan(tmp_path, pruning={"max_sparsity": 0.75, "step": 0.05}, constraints={"flops": 0.5})
    runner, study, tracker = _runner(plan, workspace, target=2)
    enqueue_baselines(study, plan)
    enqueue_baselines(study, plan)  # a second start enqueues nothing more
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [TrialRecord.of(t).origin for t in waiting] == ["uniform", "global"]
    for trial in waiting:
        params = {
            k.removeprefix("sparsity."): v for k, v in trial.system_attrs["fixed_params"].items()
        }  # enqueued, not yet run
        assert params == plan.space.snap(params), "params stay on the space's grid"
        applied = TrialRecord.of(trial).sparsity  # the exact vector the trial will apply
        assert plan.structure_costs(applied, ("flops",))["flops_ratio"] <= 0.5 + 1e-12
        assert TrialRecord.of(trial).warm_start_level == 0.5
    # run, they apply their exact vector and stay within the level
    study.optimize(runner, n_trials=2)
    tracker.flush()
    for trial, enqueued in zip(study.trials, waiting):
        assert trial.state.name == "COMPLETE" and TrialRecord.of(trial).sparsity == TrialRecord.of(enqueued).sparsity
        assert TrialRecord.of(trial).budget is BudgetStatus.WITHIN


@pytest.mark.parametrize("level", [0.5, 0.2])
def test_baselines_land_within_one_channel_of_the_level(tmp_path: Path, level: float) -> None:
    """The least pruning that fits: one channel less pruned (in every dimension it could be) is over the level.
    On the step grid (0.25 here) the uniform ratio would prune up to a whole step more than the level needs."""
    plan, _ = _plan(tmp_path, pruning={"max_sparsity": 0.75, "step": 0.25}, constraints={"flops": level})
    baselines = Baselines(plan, "flops")
    widest = max(d.channels for d in plan.space.dimensions)
    uniform = baselines.fit("uniform", level)
    assert uniform is not None and len(set(uniform.values())) == 1
    ratio = next(iter(uniform.values()))
    assert baselines.ratio_of(uniform) <= level
    # each dimension keeps at most one more channel at ratio - 1 / widest, the widest exactly one more
    assert baselines.ratio_of(plan.space.uniform(max(ratio - 1 / widest, 0.0))) > level
    glob = baselines.fit("global", level)
    assert glob is not None and baselines.ratio_of(glob) <= level
    # one more channel kept in some dimension is over the level
    plus_one = []
    for d in plan.space.dimensions:
        kept = int(d.channels * (1 - glob[d.name]))
        if kept < d.channels:
            plus_one.append(baselines.ratio_of({**glob, d.name: max(1 - (kept + 1.5) / d.channels, 0.0)}))
    assert any(cost > level for cost in plus_one), (glob, plus_one)


def test_the_fine_tune_budget_in_images_becomes_batches_of_the_data(tmp_path: Path) -> None:
    # tiny_config's digits come in batches of 32: 70 images are 3 batches (rounded up), whatever max_batches was
    plan, _ = _plan(tmp_path, finetune={"max_batches": None, "max_images": 70})
    assert plan.finetune_batches == 3
    plan, _ = _plan(tmp_path, finetune={"max_batches": 2})
    assert plan.finetune_batches == 2
