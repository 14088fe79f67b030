"""Latency measured on the edge device: a small agent (``prunetuna device serve``) and its client.

Nothing here imports torch or Lightning: ``pip install 'prunetuna[device]'`` (onnxruntime, onnx, numpy)
is enough on the board.
"""

from __future__ import annotations

from prunetuna.runtime import lazy_exports

_HOMES = {
    "_client": ("DeviceClient", "DeviceError", "DeviceRefused", "DeviceUnreachable", "RETRY_DELAYS_S", "mask_url"),
    "_measure": ("check_model", "cpu_model", "describe_device", "measure_model"),
    "_protocol": (
        "ALLOWED_DOMAINS",
        "INFO_PATH",
        "MEASURE_PATH",
        "MeasureReply",
        "MeasureRequest",
        "ProtocolError",
        "REQUEST_HEADER",
        "TOKEN_ENV",
    ),
    "_server": ("AgentServer", "DEFAULT_MAX_UPLOAD_MB", "MIN_TOKEN_LENGTH", "is_loopback", "make_server"),
    "_stats": ("Timing", "dispersion", "time_runner"),
    "_urls": ("check_agent_url",),
}
__all__ = sorted(name for names in _HOMES.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
