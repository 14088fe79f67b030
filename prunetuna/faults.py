"""Named points where a test makes the process kill itself (``PRUNETUNA_FAULT=<point>[:<trial>]``).

The durability tests kill ``prunetuna search`` with SIGKILL at each phase of a trial and check that a
rerun repairs everything. Unset (always, outside those tests) a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["FAULT_POINTS", "fault", "hold", "out_of_memory"]

FAULT_POINTS = (
    "parent",  # the study's creator: the study created and prepared (baselines enqueued), no parent run yet
    "asked",  # inside Optuna's ask: the trial created (or an enqueued one taken), before its first heartbeat
    "sampled",  # the candidate's vector was drawn, before pruning
    "pruned",  # pruned and measured, its MLflow run created
    "fine_tune",  # after the first fine-tune epoch
    "recorded",  # the finished trial's local record written (trials/<n>/), nothing of its end in MLflow yet
    "uploaded",  # a shared study's trial: its metrics, tags and model files in MLflow, Optuna not yet told
    "told",  # Optuna was told the trial finished; its run not ended (local study: its MLflow writes are held)
    "upload",  # the weights uploaded to the trial's run, its manifest not yet
    "plots",  # the first of the parent run's plots logged, the others not yet
    "oom",  # not a kill: MemoryError raised as the trial's fine-tune starts (out of host memory)
    "cuda_oom",  # not a kill: torch.cuda.OutOfMemoryError raised there (what a GPU out of memory raises)
    "finetune_epoch",  # prunetuna finetune: after the first epoch of the trial's final fine-tune
    "finetune_upload",  # prunetuna finetune: its weights kept and uploaded, its run not yet FINISHED
)


def _armed() -> tuple[str, int | None] | None:
    spec = os.environ.get("PRUNETUNA_FAULT")
    if not spec:
        return None
    point, _, trial = spec.partition(":")
    if point not in FAULT_POINTS:
        raise ValueError(f"PRUNETUNA_FAULT: unknown point {point!r}; one of {', '.join(FAULT_POINTS)}")
    return point, int(trial) if trial else None


_told: set[int | None] = set()
_told_changed = threading.Condition()
AFTER_TELL_S = 120.0  # how long ``upload`` waits for Optuna to be told about its trial


def fault(point: str, trial: int | None = None) -> None:
    """SIGKILL this process here when ``PRUNETUNA_FAULT`` names this point (and this trial, if it names one).

    ``upload`` runs in the MLflow writer, alongside the trial loop: it fires once Optuna has been told
    about its trial (the ``told`` point is reached after every tell), so the kill lands where it is named.
    """
    armed = _armed()
    if armed is None:
        return
    if point == "told":
        with _told_changed:
            _told.add(trial)
            _told_changed.notify_all()
    if armed[0] == point and armed[1] in (None, trial):
        if point == "upload":
            with _told_changed:
                _told_changed.wait_for(lambda: trial in _told, timeout=AFTER_TELL_S)
        os.kill(os.getpid(), signal.SIGKILL)


def hold(trial: int | None) -> None:
    """In the MLflow writer: with ``told`` armed for this trial, its writes wait for the kill that follows."""
    armed = _armed()
    if armed is not None and armed[0] == "told" and armed[1] in (None, trial):
        threading.Event().wait()


def out_of_memory(trial: int | None) -> None:
    """Raise the out-of-memory error ``PRUNETUNA_FAULT=oom[:<trial>]`` (or ``cuda_oom``) names, here."""
    armed = _armed()
    if armed is None or armed[0] not in ("oom", "cuda_oom") or armed[1] not in (None, trial):
        return
    if armed[0] == "oom":
        raise MemoryError("injected: out of host memory (PRUNETUNA_FAULT=oom)")
    import torch

    raise torch.cuda.OutOfMemoryError("injected: CUDA out of memory (PRUNETUNA_FAULT=cuda_oom)")
