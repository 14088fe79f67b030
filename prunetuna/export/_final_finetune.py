"""``prunetuna finetune``: the chosen trial's full fine-tune (``final_finetune``), with the user's training,
logged as a ``finetune`` child run of the trial's run; what ``export --finetuned`` takes.

Kill-safe in three steps. The run is created RUNNING; the fine-tuned weights and the record are then
written to ``<workdir>/finetunes/<trial>-<key>/`` (each file by rename, ``record.json`` last); then the
weights, the manifest and the metrics go to the run, which ends FINISHED; then ``synced`` is written.
A process killed during the training leaves a RUNNING run and no record: the next fine-tune of the
trial marks that run KILLED and starts over. Killed after the record, it leaves a record that is not
synced: the next one completes the run from it without training again. ``export --finetuned`` takes
FINISHED runs only.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from mlflow.entities import Metric, Param

from prunetuna.config import ExperimentConfig, config_section
from prunetuna.errors import UserError
from prunetuna.export._finetuned import find_finetune_runs, finetune_key
from prunetuna.export._rebuild import rebuild_trial, removed_weights, select_trial
from prunetuna.faults import fault
from prunetuna.files import atomic_write, write_atomically
from prunetuna.store import (
    MANIFEST_FILE,
    WEIGHTS_FILE,
    Role,
    RunStatus,
    StudyTracker,
    Tag,
    TrialRecord,
    Workspace,
    load_study,
    manifest,
)
from prunetuna.training import Distillation, ModuleTask, trainer_setup
from prunetuna.workload import prepare_baseline

__all__ = ["FinalFinetune", "final_finetune"]

RECORD = "record.json"
SYNCED = "synced"


@dataclass
class FinalFinetune:
    """A trial's finished final fine-tune: its run, the final metrics (``accuracy``: the task score), per-epoch
    scores, and what this call did (``trained``; ``found``: finished before; ``completed``: its upload, killed
    before, finished from the work dir)."""

    trial: int
    key: str
    run_id: str
    metrics: dict[str, float]
    epochs: list[float] = field(default_factory=list)
    how: str = "trained"
    folder: str = ""


def _folder(workspace: Workspace, number: int, key: str) -> Path:
    return Path(workspace.workdir) / "finetunes" / f"{number}-{key}"


def _load(folder: Path) -> FinalFinetune | None:
    try:
        return FinalFinetune(**json.loads((folder / RECORD).read_bytes()))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, TypeError):
        return None


def _upload(tracker: StudyTracker, done: FinalFinetune, folder: Path) -> None:
    """The run's weights, manifest and metrics, then FINISHED (the mark ``export --finetuned`` trusts), then
    ``synced``."""
    call, client = tracker.outage.call, tracker.client
    call(client.log_artifact, done.run_id, str(folder / "model" / WEIGHTS_FILE), "model")
    fault("finetune_upload", done.trial)
    call(client.log_artifact, done.run_id, str(folder / "model" / MANIFEST_FILE), "model")
    stamp = int(time.time() * 1000)
    final = [Metric(k, float(v), stamp, 0) for k, v in done.metrics.items()]
    call(client.log_batch, done.run_id, metrics=final)
    call(client.set_terminated, done.run_id, status=RunStatus.FINISHED.value)
    atomic_write(folder / SYNCED, done.run_id.encode())


def _start_run(tracker: StudyTracker, config: ExperimentConfig, number: int, trial_run: str, key: str) -> str:
    """Killed earlier fine-tunes of the trial (RUNNING) are marked KILLED; then the new run, RUNNING."""
    for stale in find_finetune_runs(tracker, trial_run, status=RunStatus.RUNNING.value):
        tracker.outage.call(tracker.client.set_terminated, stale.info.run_id, status=RunStatus.KILLED.value)
    tags = {
        Tag.PARENT: trial_run,
        Tag.ROLE: Role.FINETUNE.value,
        Tag.SOURCE_RUN: trial_run,
        Tag.FINETUNE_KEY: key,
        Tag.TRIAL_NUMBER: str(number),
        Tag.STUDY: config.name,
    }
    run = tracker.outage.call(
        tracker.client.create_run, tracker.experiment_id, run_name=f"trial-{number}-finetune", tags=tags
    )
    settings = {f"final_finetune.{k}": v for k, v in config_section(config, "final_finetune")["final_finetune"].items()}
    params = [Param(k, str(v)[:6000]) for k, v in settings.items()]
    tracker.outage.call(tracker.client.log_batch, run.info.run_id, params=params)
    return run.info.run_id


def final_finetune(
    config: ExperimentConfig,
    workspace: Workspace,
    *,
    trial: int | None = None,
    max_flops: float | None = None,
    max_drop: float | None = None,
    force: bool = False,
    on_epoch: Callable[[int, float], None] | None = None,
) -> FinalFinetune:
    """Fine-tune the chosen trial (``--trial`` or ``--best``'s) for ``final_finetune``; resume or redo after a kill."""
    study = load_study(workspace, config.name)
    removed = removed_weights(config, workspace)  # it starts from the trial's search weights
    chosen = select_trial(study, number=trial, max_flops=max_flops, max_drop=max_drop, removed=removed)
    trial_run = TrialRecord.of(chosen).mlflow_run_id
    if not trial_run:
        raise UserError(f"--trial {chosen.number}: the trial has no MLflow run to fine-tune from")
    key = finetune_key(config, trial_run)
    folder = _folder(workspace, chosen.number, key)
    tracker = StudyTracker(workspace, config.name)
    tracker.connect(create=False)
    kept = _load(folder)
    if kept is not None and not force:
        kept.how = "found"
        if (folder / SYNCED).is_file():
            return kept
        kept.how = "completed"
        _upload(tracker, kept, folder)  # killed while uploading: complete the run from the work dir
        return kept
    if kept is not None:  # --force: the old record goes first, so a kill below cannot pair it with new weights
        (folder / RECORD).unlink()
    run_id = _start_run(tracker, config, chosen.number, trial_run, key)
    try:
        done, weights, info = _train(config, workspace, chosen, run_id, key, tracker, on_epoch)
    except BaseException:
        tracker.outage.call(tracker.client.set_terminated, run_id, status=RunStatus.FAILED.value)
        raise
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SYNCED).unlink(missing_ok=True)
    done.folder = str(folder)
    (folder / "model").mkdir(exist_ok=True)
    write_atomically(folder / "model" / WEIGHTS_FILE, lambda temporary: torch.save(weights, temporary))
    atomic_write(folder / "model" / MANIFEST_FILE, json.dumps(info, indent=2, default=str).encode())
    atomic_write(folder / RECORD, json.dumps(asdict(done)).encode())
    _upload(tracker, done, folder)
    return done


def _train(
    config: ExperimentConfig,
    workspace: Workspace,
    chosen,  # noqa: ANN001 - FrozenTrial
    run_id: str,
    key: str,
    tracker: StudyTracker,
    on_epoch: Callable[[int, float], None] | None,
) -> tuple[FinalFinetune, dict[str, torch.Tensor], dict]:
    """The trial rebuilt with its search weights and trained; its record, weights and manifest (nothing written)."""
    rebuilt = rebuild_trial(config, workspace, chosen)
    model, workload, settings = rebuilt.model, rebuilt.workload, config.final_finetune
    task = workload.task
    if settings.distill is not None or (isinstance(task, ModuleTask) and task.path):
        prepare_baseline(config, workload, workspace.workdir)  # the teacher; a module's parts outside model.prune
    distill = (
        Distillation(workload.model, settings.distill.alpha, settings.distill.temperature, "final_finetune.distill")
        if settings.distill is not None
        else None
    )

    def epoch_done(epoch: int, score: float) -> None:
        tracker.outage.call(tracker.client.log_metric, run_id, "val_accuracy", score, step=epoch)
        if on_epoch is not None:
            on_epoch(epoch, score)
        fault("finetune_epoch", chosen.number)

    result = task.fine_tune(
        model,
        workload.datamodule,
        epochs=settings.epochs,
        lr=settings.lr,
        seed=settings.seed if settings.seed is not None else config.seed,
        max_batches=settings.max_batches,
        on_epoch=epoch_done,
        trainer=trainer_setup(config.finetune),
        distill=distill,
    )
    model.eval()
    score = task.evaluate(model, workload.datamodule)  # exactly what export re-checks
    costs = {k: v for k, v in rebuilt.metrics.items() if k.endswith("_ratio") or k in ("flops", "params", "latency_ms")}
    metrics = {
        **costs,
        "accuracy": score,
        **task.named(score),
        "accuracy_search": rebuilt.metrics["accuracy"],
        "finetune_seconds": result.seconds,
    }
    done = FinalFinetune(chosen.number, key, run_id, metrics, list(result.history))
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    info = manifest(
        config,
        trial=chosen.number,
        sparsity=rebuilt.sparsity,
        metrics=metrics,
        input_shape=[1, *workload.example.shape[1:]],
    )
    return done, weights, info
