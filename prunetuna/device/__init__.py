"""Latency measured on the edge device: a small agent (``prunetuna device serve``) and its client.

Nothing here imports torch or Lightning: ``pip install 'prunetuna[device]'`` (onnxruntime, onnx, numpy)
is enough on the board. The search side (ONNX export of a candidate) is ``prunetuna.objectives._remote``.
"""

from __future__ import annotations

from prunetuna.device._client import DeviceClient, DeviceError, DeviceRefused, DeviceUnreachable
from prunetuna.device._protocol import ALLOWED_DOMAINS, MeasureReply, MeasureRequest
from prunetuna.device._stats import Timing, dispersion, time_runner

__all__ = [
    "ALLOWED_DOMAINS",
    "DeviceClient",
    "DeviceError",
    "DeviceRefused",
    "DeviceUnreachable",
    "MeasureReply",
    "MeasureRequest",
    "Timing",
    "dispersion",
    "time_runner",
]
