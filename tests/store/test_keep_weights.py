"""``search.keep_weights: front``: the weights of COMPLETE trials that fell off the study's front are removed from
the MLflow artifact store (an ``mlflow server`` proxying its artifacts, and a local store) and from the work dirs;
the front's stay and export; a removed trial is tagged, refused by export and finetune in one line, and never
restored by a repair."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import optuna
import pytest
import torch
from mlflow import MlflowClient
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from services import MODEL_FILES, mlflow_server, study_violations
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.config import load_config
from prunetuna.search import run_search
from prunetuna.store import (
    FinalRecord,
    Tag,
    TrialStore,
    WeightsKeeper,
    WeightsMark,
    Workspace,
    off_front,
    weights_to_drop,
)
from prunetuna.store import StudyTracker as Tracker

runner = CliRunner()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


def _trial(values: list[float], run_id: str, feasible: bool = True) -> optuna.trial.FrozenTrial:
    return create_trial(
        values=values,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        user_attrs={"mlflow_run_id": run_id},
        system_attrs={"constraints": [0.0 if feasible else 1.0]},
    )


def test_the_decision_is_the_complement_of_optunas_front() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for values, feasible in [([0.9, 0.5], True), ([0.8, 0.6], True), ([0.95, 0.9], False), ([0.7, 0.3], True)]:
        study.add_trial(_trial(values, f"run{len(study.trials)}", feasible))
    trials = study.get_trials()
    # 1 is dominated by 0, 2 is infeasible: both off the front for good; 0 and 3 stay.
    assert off_front(trials, study.best_trials) == {1: "run1", 2: "run2"}
    assert off_front(trials, []) == {}, "no feasible trial yet: nothing is decided"
    runs = {"run1": ("FINISHED", None), "run2": ("RUNNING", None)}  # 2's writes have not all landed yet
    assert [(d.number, d.remote) for d in weights_to_drop({1: "run1", 2: "run2"}, runs)] == [(1, True)]
    runs = {"run1": ("FINISHED", "dropped"), "run2": ("FINISHED", "dropping")}  # 2: killed while removing
    assert [(d.number, d.remote) for d in weights_to_drop({1: "run1", 2: "run2"}, runs)] == [(1, False), (2, True)]


def test_keeper_on_a_local_store(tmp_path: Path) -> None:
    # The default local tracking store (SQLite, artifacts in the work dir) and a real study: the dominated trial's
    # model/ goes from MLflow and the work dir, the front's stays.
    workspace = Workspace(tmp_path, f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker, store = Tracker(workspace, "local"), TrialStore(tmp_path)
    tracker.connect(create=True)
    tracker.parent_run_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    study = optuna.create_study(directions=["maximize", "minimize"])
    run_ids = []
    for number, values in enumerate([[0.9, 0.5], [0.8, 0.6]]):
        run_id = tracker.start_trial(number, "sampler", {})
        store.write(FinalRecord(number, "COMPLETE", run_id, {}, {}), {"w": torch.ones(3)}, {"trial": number})
        tracker.log_trial_model(run_id, store.model_dir(number))
        tracker.end_trial(run_id, "COMPLETE")
        study.add_trial(_trial(values, run_id))
        run_ids.append(run_id)
    WeightsKeeper(tracker, store).prune(study)
    tracker.flush()
    assert tracker.failed_writes == 0
    files = [{f.path for f in tracker.client.list_artifacts(r, "model")} for r in run_ids]
    assert files == [MODEL_FILES, set()]
    assert tracker.client.get_run(run_ids[1]).data.tags[Tag.WEIGHTS] == WeightsMark.DROPPED.value
    assert (store.model_dir(0) / "state_dict.pt").is_file() and not (store.model_dir(1) / "state_dict.pt").exists()
    assert store.load(1).has_model is False


def _search(config: Path, workdir: Path, storage: str, tracking: str) -> None:
    """``prunetuna search`` without its plots (run_search with no presentation, as a ``--workers`` child runs)."""
    run_search(load_config(config), Workspace(workdir, storage, tracking))


def test_only_the_fronts_weights_are_kept(tmp_path: Path, server: str) -> None:
    # Worker A searches 4 trials keeping every trial's weights; its `synced` marks are gone (as a kill after the
    # tell leaves them). Worker B, on another machine (work dir) with search.keep_weights: front, runs trial 4 and
    # removes the weights of every trial off the front. A starts again with front: its repair must not upload its
    # local copies of them again, and it removes those copies.
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    cheap = {"calibration_batches": 0}  # no pre-fine-tune score: not needed here
    keep_all = write_config(tmp_path, tiny_config("front", pruning=cheap, search={"n_trials": 4}), "all.yaml")
    front_config = tiny_config("front", pruning=cheap, search={"n_trials": 5, "keep_weights": "front"})
    keep_front = write_config(tmp_path, front_config, "front.yaml")
    a, b = tmp_path / "a", tmp_path / "b"
    _search(keep_all, a, storage, server)
    for mark in a.glob("trials/*/synced"):
        mark.unlink()
    _search(keep_front, b, storage, server)
    _search(keep_front, a, storage, server)

    study = optuna.load_study(study_name="front", storage=storage)
    front = {t.number for t in study.best_trials}
    complete = {t.number: t.user_attrs["mlflow_run_id"] for t in study.trials if t.state == TrialState.COMPLETE}
    dropped = set(complete) - front
    assert front and dropped, f"seed 0 should leave trials on and off the front: {front}"
    client = MlflowClient(tracking_uri=server)
    for number, run_id in complete.items():
        files = {f.path for f in client.list_artifacts(run_id, "model")}
        local = [(w / "trials" / str(number) / "model" / "state_dict.pt").is_file() for w in (a, b)]
        mark = client.get_run(run_id).data.tags.get(Tag.WEIGHTS)
        if number in front:
            assert files == MODEL_FILES and any(local) and mark is None, number
        else:
            assert files == set() and not any(local) and mark == WeightsMark.DROPPED.value, number
    assert study_violations(storage, server, "front", 5) == []

    fresh = tmp_path / "fresh"  # any machine: the shared stores alone
    common = ["--workdir", str(fresh), "--storage", storage, "--tracking-uri", server]
    for kept in sorted(front):
        out = str(tmp_path / f"{kept}.pt")
        exported = runner.invoke(
            app, ["export", str(keep_front), "--trial", str(kept), "--format", "pt", "--out", out, *common]
        )
        assert exported.exit_code == 0, exported.output
    off = min(dropped)
    for verb in (["export", "--format", "pt", "--out", str(tmp_path / "o.pt")], ["finetune"]):
        refused = runner.invoke(app, [verb[0], str(keep_front), "--trial", str(off), *verb[1:], *common])
        assert refused.exit_code == 2, refused.output
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and f"--trial {off}:" in lines[0] and "search.keep_weights: front" in lines[0], lines
