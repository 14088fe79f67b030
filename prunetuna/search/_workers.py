"""``--workers N`` on one machine: this process prepares the study (dense baseline, parent run) and runs
trials as worker 0; once the study is ready, N - 1 more ``prunetuna search`` processes join it. CPU
threads are split between them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Callable, Mapping

from prunetuna.search._events import SearchOutcome
from prunetuna.store import Workspace

__all__ = ["WorkerLauncher", "cuda_device_count", "worker_device_env"]


class WorkerLauncher:
    """Starts workers 1..N-1 (``start``: the ``ready`` event), waits for them, passes Ctrl-C on."""

    def __init__(
        self, config_path: str, workspace: Workspace, workers: int, threads: int | None, say: Callable[[str], None]
    ) -> None:
        self.config_path = config_path
        self.workspace = workspace
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self.say = say
        self.children: list[subprocess.Popen] = []

    def start(self, outcome: SearchOutcome) -> Callable[[], list[int]]:
        """Start workers 1..N-1 on the prepared study; returns what waits for them."""
        common = [
            self.config_path,
            "--workdir",
            str(self.workspace.workdir),
            "--n-trials",
            str(outcome.target),
            "--threads",
            str(self.threads),
        ]
        # The URLs may hold passwords: through the environment, not the command line others can read.
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(self.threads),
            "PRUNETUNA_STORAGE": self.workspace.storage_url,
            "MLFLOW_TRACKING_URI": self.workspace.tracking_uri,
        }
        self.say(
            f"starting {self.workers - 1} more worker process(es) on the study, {self.threads} thread(s) each (this "
            "process is worker 0)"
        )
        for i in range(1, self.workers):  # one by one: if a start fails, the ones started are still waited for
            self.children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "prunetuna", "search", *common, "--worker-id", str(i)],
                    env={**env, **worker_device_env(i, cuda_device_count(), env)},
                )
            )  # a GPU each
        return self.join

    def join(self) -> list[int]:
        if any(child.poll() is None for child in self.children):
            self.say("waiting for the other workers to finish their trials")
        return self.wait()

    def wait(self) -> list[int]:
        return [child.wait() for child in self.children]

    def interrupt(self) -> None:
        """After Ctrl-C: the terminal's SIGINT reached the children too, so give them time to mark their trials;
        pass it on only to those still running after that (it was sent to this process alone)."""
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGINT)
        self.wait()


# One GPU per worker.
# ``--workers N`` on a machine with several GPUs: one device per worker, through ``CUDA_VISIBLE_DEVICES``.
#
# Worker 0 is the process that prepared the study; it keeps the environment it was started with and
# its fine-tunes take the first visible device (``finetune.trainer.devices: 1``). Worker ``i`` is
# started with ``CUDA_VISIBLE_DEVICES`` naming the ``i``-th visible device (round robin when there are
# more workers than devices), so each worker's ``devices: 1`` is a device of its own. With one device
# or none, nothing changes. Torch-free: the device count is passed in (``torch.cuda.device_count()``).


def cuda_device_count() -> int:
    """Visible CUDA devices (0 without CUDA or without torch's CUDA build)."""
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no usable CUDA is no device to share out
        return 0


def worker_device_env(worker: int, device_count: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment variables that give worker ``worker`` (0-based) its own device; ``{}`` when there is nothing
    to choose.

    ``environ``'s ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs), when set, is the list chosen from, so a
    job restricted to some GPUs stays on them.
    """
    if device_count < 2 or worker < 0:
        return {}
    given = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    visible = (
        [item.strip() for item in given.split(",") if item.strip()] if given else [str(i) for i in range(device_count)]
    )
    visible = visible[:device_count]
    if len(visible) < 2:
        return {}
    return {"CUDA_VISIBLE_DEVICES": visible[worker % len(visible)]}
