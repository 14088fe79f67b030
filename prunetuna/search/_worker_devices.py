"""``--workers N`` on a machine with several GPUs: one device per worker, through ``CUDA_VISIBLE_DEVICES``.

Worker 0 is the process that prepared the study; it keeps the environment it was started with and
its fine-tunes take the first visible device (``finetune.trainer.devices: 1``). Worker ``i`` is
started with ``CUDA_VISIBLE_DEVICES`` naming the ``i``-th visible device (round robin when there are
more workers than devices), so each worker's ``devices: 1`` is a device of its own. With one device
or none, nothing changes. Torch-free: the device count is passed in (``torch.cuda.device_count()``).
"""

from __future__ import annotations

from typing import Mapping

__all__ = ["cuda_device_count", "worker_device_env"]


def cuda_device_count() -> int:
    """Visible CUDA devices (0 without CUDA or without torch's CUDA build)."""
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no usable CUDA is no device to share out
        return 0


def worker_device_env(worker: int, device_count: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment variables that give worker ``worker`` (0-based) its own device; ``{}`` when there is nothing to choose.

    ``environ``'s ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs), when set, is the list chosen from, so a
    job restricted to some GPUs stays on them.
    """
    if device_count < 2 or worker < 0:
        return {}
    given = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    visible = [item.strip() for item in given.split(",") if item.strip()] if given else [str(i) for i in range(device_count)]
    visible = visible[:device_count]
    if len(visible) < 2:
        return {}
    return {"CUDA_VISIBLE_DEVICES": visible[worker % len(visible)]}
