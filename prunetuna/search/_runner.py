"""One trial, as Optuna's objective: draw a candidate, open its MLflow run, recalibrate, fine-tune with the
early-stopping rule, score, and leave its record in the trial and its run (docs/design.md, "Trials")."""

from __future__ import annotations

import traceback
from typing import Callable

import optuna
from optuna.trial import Trial, TrialState

from prunetuna.faults import fault
from prunetuna.objectives import OBJECTIVES
from prunetuna.search._candidate import Candidate, draw_candidate
from prunetuna.search._early_stopping import EARLY_STOPPING, StopContext, TrialPruningCallback
from prunetuna.search._events import StepTimer
from prunetuna.search._plan import TrialPlan, trial_settings
from prunetuna.search._screening import Screening, earlier_points, screen_point
from prunetuna.search._study import FINISHED_STATES
from prunetuna.sparsity import SparsityVector, as_params, from_params
from prunetuna.store import BudgetStatus, RunState, StudyTracker, TrackingAway, TrialModel, TrialRecord, TrialStore, finish_run, study_manifest, write_trial
from prunetuna.training import finetune_options, recalibrate_batchnorm

__all__ = ["SURPLUS", "ProfileDrawer", "SurplusTrial", "TrialRunner"]

SURPLUS = "surplus: the study already had n_trials trials finished or running when this one started (not run)"

ProfileDrawer = Callable[[int, SparsityVector, list[str]], object]
"""``draw(number, vector, layers)``: the trial's sparsity-profile figure (drawn in the tracker's writer thread)."""


class SurplusTrial(Exception):
    """A worker's trial beyond ``n_trials``: marked FAIL without work, not counted as a failure."""


class TrialRunner:
    """Optuna's objective for the study: ``runner(trial)`` returns the values to tell Optuna.

    ``target`` is the study's ``n_trials``; ``current`` the trial running now (Ctrl-C enqueues it again).
    """

    def __init__(self, plan: TrialPlan, tracker: StudyTracker, store: TrialStore, target: int,
                 profile: ProfileDrawer | None = None, on_start: Callable[[int], None] | None = None) -> None:
        self.plan = plan
        self.tracker = tracker
        self.store = store
        self.target = target
        self.profile = profile
        self.on_start = on_start
        self.settings = trial_settings(plan.config)
        self.manifest = study_manifest(plan.config)
        self.current: Trial | None = None
        self.timers: dict[int, StepTimer] = {}  # by trial number, until its end is told (TrialEvent.steps)

    def __call__(self, trial: Trial) -> list[float]:
        """Run the trial; whatever fails in it (pruning, measuring, fine-tuning) leaves its reason in the
        trial's record and in its MLflow run, with the traceback as an artifact."""
        self._check_not_surplus(trial)
        self.current = trial
        if self.on_start is not None:
            self.on_start(trial.number)
        origin = TrialRecord.of(trial).origin  # enqueued baselines carry theirs
        run = RunState()
        timer = self.timers[trial.number] = StepTimer()
        try:
            return self._run(trial, origin, run, timer)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            if isinstance(exc, TrackingAway):
                write_trial(trial, tracking_away=True)  # not the candidate's fault: run_search stops and enqueues it again
                raise
            reason = f"{exc.__class__.__name__}: {exc}"[:1000]
            write_trial(trial, fail_reason=reason)
            if run.run_id is None:  # it failed before its run was created: create one to hold the reason
                run.run_id = self._start_run(trial, origin, {**as_params(from_params(trial.params)), **self.settings}, quiet=True)
            if run.run_id is not None:
                self.tracker.set_tag(run.run_id, "prunetuna.fail_reason", reason)
                self.tracker.log_text(run.run_id, traceback.format_exc(), "traceback.txt")
            raise
        finally:
            if run.run_id is not None:
                finish_run(self.store, self.tracker, trial.number, run)

    def _check_not_surplus(self, trial: Trial) -> None:
        """Workers that start trials together could overshoot ``n_trials``; trial numbers are handed out
        atomically, so a trial with ``n_trials`` live or finished trials before it is surplus and stops here."""
        if trial.number < self.target:
            return  # fewer than n_trials trials can be ahead of it
        ahead = trial.study.get_trials(deepcopy=False, states=(*FINISHED_STATES, TrialState.RUNNING))
        if sum(t.number < trial.number for t in ahead) >= self.target:
            write_trial(trial, fail_reason=SURPLUS)
            trial.study.stop()
            raise SurplusTrial(SURPLUS)

    def _start_run(self, trial: Trial, origin: str, params: dict[str, object], *, quiet: bool = False) -> str | None:
        """The trial's MLflow child run, its id kept in the trial (so an interrupted run can be closed later)."""
        try:
            run_id = self.tracker.start_trial(trial.number, origin, params)
        except Exception:
            if not quiet:
                raise
            return None  # the trial's own error is the one to report
        write_trial(trial, mlflow_run_id=run_id)
        return run_id

    def _run(self, trial: Trial, origin: str, run: RunState, timer: StepTimer) -> list[float]:
        plan = self.plan
        candidate = draw_candidate(plan, trial, timer)
        costs = candidate.costs
        write_trial(trial, sparsity=candidate.vector)  # the one source of every rebuild
        feasible = True
        for item in plan.budgets:
            trial.set_constraint(item.key, item.excess(costs))
            feasible = feasible and item.excess(costs) <= 0
        run.params = {**as_params(candidate.vector), **self.settings}
        run.run_id = self._start_run(trial, origin, run.params)
        fault("pruned", trial.number)
        if candidate.budget is not BudgetStatus.NONE:
            run.tags["prunetuna.budget"] = candidate.budget.value
        run.metrics = dict(costs)
        if candidate.budget is BudgetStatus.OVER:
            reason = "; ".join(f"{b.key} {b.describe(costs)} > {b.limit:g}" for b in plan.budgets if b.excess(costs) > 0)
            write_trial(trial, budget=candidate.budget, metrics=run.metrics)
            self._stop(run, f"over budget even at max_sparsity: {reason}")
        if plan.batches:
            with timer.step("recalibrate"):
                recalibrate_batchnorm(candidate.model, [x for x, _ in plan.batches])
            with timer.step("evaluate"):
                costs["accuracy_pruned"] = plan.workload.task.evaluate(candidate.model, plan.workload.datamodule)
            self._screen(trial, origin, run, costs)
        stopper = self._early_stopping(trial, costs)
        with timer.step("fine_tune"):
            result = plan.workload.task.fine_tune(  # the built-in classifier or the user's LightningModule
                candidate.model,
                plan.workload.datamodule,
                epochs=plan.config.finetune.epochs,
                lr=plan.config.finetune.lr,
                max_batches=plan.config.finetune.max_batches,
                seed=plan.config.seed + trial.number,
                on_epoch=lambda epoch, accuracy: self._epoch(trial.number, run, epoch, accuracy),
                callbacks=[stopper] if stopper else (),
                **finetune_options(plan.config, teacher=plan.workload.model),  # finetune.trainer, .callbacks, .distill
            )
        metrics = run.metrics = {"accuracy": result.accuracy, **plan.workload.task.named(result.accuracy), **costs}
        if stopper is not None:
            write_trial(trial, epoch_accuracy=result.history)
            if stopper.reason:
                write_trial(trial, metrics=metrics, pruned_reason=stopper.reason)
                self._stop(run, stopper.reason)
        score = plan.scoring.score_of(metrics)
        if score is not None:
            metrics["score"] = score
        excess = plan.scoring.accuracy_excess(result.accuracy, plan.dense["accuracy"])
        if excess is not None:
            trial.set_constraint("accuracy_drop", excess)
            feasible = feasible and excess <= 0
        write_trial(trial, metrics=metrics)
        run.model = self._model(trial.number, candidate, metrics, origin)
        if plan.budgets or excess is not None:
            write_trial(trial, feasible=feasible)
            run.tags["prunetuna.feasible"] = str(feasible).lower()
        if candidate.budget is not BudgetStatus.NONE:
            write_trial(trial, budget=candidate.budget)
        run.state = "COMPLETE"
        return plan.scoring.values(metrics)

    @staticmethod
    def _stop(run: RunState, reason: str) -> None:
        run.state = "PRUNED"
        run.tags["prunetuna.pruned_reason"] = reason
        raise optuna.TrialPruned(reason)

    def _screen(self, trial: Trial, origin: str, run: RunState, costs: dict[str, float]) -> None:
        """Store the candidate's pre-fine-tune point; with ``search.screening`` on, stop a sampled candidate
        that enough earlier points dominate, before any fine-tune (search/_screening.py)."""
        plan = self.plan
        point = screen_point(trial.number, plan.scoring, costs)
        write_trial(trial, screening=point.stored())
        settings = plan.config.search.screening
        if not settings.enabled or origin != "sampler":
            return
        earlier = earlier_points(trial.study.get_trials(deepcopy=False), trial.number)
        reason = Screening(settings.min_dominating).decide(point, earlier)
        if reason:
            run.metrics = dict(costs)
            write_trial(trial, metrics=run.metrics, pruned_reason=reason)
            self._stop(run, reason)

    def _early_stopping(self, trial: Trial, costs: dict[str, float]) -> TrialPruningCallback | None:
        """The per-epoch stop rule the config names (``search.pruner``), for this candidate (None: train every epoch)."""
        plan = self.plan
        if plan.config.finetune.epochs < 2:
            return None
        dense_accuracy = plan.dense["accuracy"]
        context = StopContext(trial, costs, tuple(OBJECTIVES[c].metric for c in plan.scoring.costs),
                              lambda accuracy: plan.scoring.intermediate(accuracy, costs, dense_accuracy),
                              plan.config.search.min_dominating, plan.config.finetune.epochs)
        decide = EARLY_STOPPING.get(plan.config.search.pruner).decision(context)
        return TrialPruningCallback(decide) if decide is not None else None

    def _model(self, number: int, candidate: Candidate, metrics: dict[str, float], origin: str) -> TrialModel:
        """Everything needed to rebuild the candidate: its vector, fine-tuned weights and a manifest."""
        plan = self.plan
        weights = plan.space.finalize(candidate.model).state_dict()
        info = {**self.manifest, "trial": number, "origin": origin, "sparsity": candidate.vector, "metrics": metrics,
                "input_shape": [1, *plan.workload.example.shape[1:]]}
        profile, layers, vector = self.profile, list(plan.space.names), candidate.vector
        return TrialModel(weights, info, (lambda: profile(number, vector, layers)) if profile is not None else None)

    def _epoch(self, number: int, run: RunState, epoch: int, accuracy: float) -> None:
        run.epochs.append(accuracy)
        assert run.run_id is not None
        self.tracker.log_epoch(run.run_id, epoch, accuracy, self.plan.workload.task.named(accuracy))
        fault("fine_tune", number)
