"""Where a trial's final fine-tune (``prunetuna finetune``) is found: its key and its finished MLflow run, the
weight source of ``export --finetuned``.

A fine-tune's run ends FINISHED only once its weights, manifest and metrics are written, so a finished
run is a whole result; a killed one stays RUNNING (or is marked KILLED by the next fine-tune) and is
never taken.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from prunetuna.config import ExperimentConfig, config_section
from prunetuna.errors import UserError
from prunetuna.store import Role, RunStatus, StudyTracker, Tag

__all__ = ["FinishedFinetune", "find_finetune_runs", "finetune_key", "finished_finetune"]

PER_EPOCH = ("val_accuracy",)  # logged once per epoch: not part of the final metrics


def finetune_key(config: ExperimentConfig, trial_run_id: str | None) -> str:
    """Hash of what decides a fine-tune's outcome besides the trial: ``final_finetune``, the Trainer settings and
    callbacks, and the trial's run (a study created again under the same name is another trial)."""
    finetune = config_section(config, "finetune")["finetune"]
    payload = {
        **config_section(config, "final_finetune"),
        "seed": config.final_finetune.seed if config.final_finetune.seed is not None else config.seed,
        "trainer": finetune["trainer"],
        "callbacks": finetune["callbacks"],
        "trial_run": trial_run_id,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def find_finetune_runs(tracker: StudyTracker, trial_run_id: str, key: str | None = None, status: str | None = None):  # noqa: ANN201
    """The ``finetune`` runs under a trial's run (with ``key``, with ``status``), the latest first."""
    if tracker.experiment_id is None:
        return []
    conditions = [f"tags.`{Tag.ROLE}` = '{Role.FINETUNE.value}'", f"tags.`{Tag.SOURCE_RUN}` = '{trial_run_id}'"]
    if key is not None:
        conditions.append(f"tags.`{Tag.FINETUNE_KEY}` = '{key}'")
    if status is not None:
        conditions.append(f"attributes.status = '{status}'")
    return tracker.outage.call(
        tracker.client.search_runs,
        [tracker.experiment_id],
        filter_string=" and ".join(conditions),
        order_by=["attributes.start_time DESC"],
    )


@dataclass(frozen=True)
class FinishedFinetune:
    run_id: str
    metrics: dict[str, float]


def finished_finetune(config: ExperimentConfig, tracker: StudyTracker, number: int, trial_run_id: str | None):  # noqa: ANN201
    """The latest FINISHED fine-tune of trial ``number`` with this config's settings; bad input when there is none."""
    key = finetune_key(config, trial_run_id)
    runs = find_finetune_runs(tracker, trial_run_id, key, RunStatus.FINISHED.value) if trial_run_id else []
    if not runs:
        others = find_finetune_runs(tracker, trial_run_id) if trial_run_id else []
        hint = (
            f" (its {len(others)} other fine-tune run(s) were killed, are running or used other final_finetune "
            "settings)"
            if others
            else ""
        )
        raise UserError(
            f"--finetuned: trial {number} has no finished fine-tune with this config's final_finetune settings{hint}; "
            f"run 'prunetuna finetune CONFIG --trial {number}' first"
        )
    run = runs[0]
    metrics = {k: float(v) for k, v in run.data.metrics.items() if k not in PER_EPOCH}
    return FinishedFinetune(run.info.run_id, metrics)
