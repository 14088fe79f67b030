from __future__ import annotations

import threading
from pathlib import Path

from services import run_together

from prunetuna.errors import UserError
from prunetuna.store import StudyTracker, resolve_workspace


def test_worker_that_loses_the_race_to_create_the_experiment_uses_the_winners(tmp_path: Path) -> None:
    workspace = resolve_workspace("race", tmp_path, None, None)
    first = StudyTracker(workspace, "race")
    first.connect(create=True)
    late = StudyTracker(workspace, "race")
    # what a worker does when its lookup ran before the other worker's create: create again
    assert late._create_experiment() == first.experiment_id


def test_concurrent_connects_share_one_experiment(tmp_path: Path) -> None:
    workspace = resolve_workspace("race", tmp_path, None, None)
    workspace.workdir.mkdir(parents=True, exist_ok=True)
    trackers = [StudyTracker(workspace, "race") for _ in range(4)]
    barrier = threading.Barrier(len(trackers))
    errors: list[BaseException] = []

    def connect(tracker: StudyTracker) -> None:
        barrier.wait()
        try:
            tracker.connect(create=True)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=connect, args=(t,)) for t in trackers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({t.experiment_id for t in trackers}) == 1
    assert (
        trackers[0].client.search_experiments(filter_string="name = 'race'")[0].experiment_id
        == trackers[0].experiment_id
    )


def _connect_fresh(workdir: Path) -> str:
    try:
        tracker = StudyTracker(resolve_workspace("race", workdir, None, None), "race")
        tracker.connect(create=True)
    except UserError as exc:
        return str(exc)
    return str(tracker.experiment_id)


def test_processes_opening_a_fresh_tracking_store_together_share_it(tmp_path: Path) -> None:
    # MLflow creates and migrates a new SQLite store on open; processes migrating it at once broke it
    # for good ("table _alembic_tmp_experiments already exists"), or one of them exited with a traceback.
    for attempt in range(3):
        ids = run_together(_connect_fresh, [tmp_path / f"w{attempt}"] * 3)
        assert len(set(ids)) == 1 and ids[0].isdigit(), ids
