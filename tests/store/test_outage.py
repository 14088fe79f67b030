from __future__ import annotations

import json
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from prunetuna.results import VIEW_TAG, publish_view
from prunetuna.store import lost_insert_race, transient


def test_a_lost_insert_race_is_told_from_other_refusals() -> None:
    # What the chaos soak's MLflow server (SQLite) answered a worker that set the view tag beside another one.
    sqlite = RestException(
        {
            "error_code": "BAD_REQUEST",
            "message": "(sqlite3.IntegrityError) UNIQUE constraint failed: experiment_tags.key, "
            "experiment_tags.experiment_id",
        }
    )
    postgres = MlflowException('duplicate key value violates unique constraint "experiment_tag_pk"')
    refused = RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "Tag value too long"})
    assert lost_insert_race(sqlite) and lost_insert_race(postgres)
    assert not lost_insert_race(refused)
    assert not transient(sqlite), "not an outage: writing again at once is the answer, not waiting"


def test_the_view_written_twice_is_one_tag(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("view", artifact_location=str(tmp_path / "artifacts"))
    publish_view(client, experiment, "pareto")
    publish_view(client, experiment, "scalarized")
    view = json.loads(client.get_experiment(experiment).tags[VIEW_TAG])
    assert view["orderByKey"] == "metrics.`score`"
