"""The ``remote`` latency backend: the candidate exported to ONNX and measured by the device agent.

``latency: {backend: remote, url: "http://board.local:8765"}``; the token is ``PRUNETUNA_DEVICE_TOKEN``.
An agent that does not answer is asked again a few times (``prunetuna.device._client.RETRY_DELAYS_S``);
after that the measurement raises :class:`~prunetuna.device.DeviceError` and the trial fails with it.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from prunetuna.device import DeviceClient, DeviceError, DeviceRefused, MeasureRequest
from prunetuna.errors import UserError

LatencySettings = Any  # prunetuna.objectives._latency.LatencySettings (not imported: _latency registers this backend)

__all__ = ["DEFAULT_PROVIDER", "REMOTE", "RemoteBackend", "latency_device"]

DEFAULT_PROVIDER = "CPUExecutionProvider"


class RemoteBackend:
    """Measures on the agent at ``settings.url``: one client (and its upload limit) per URL."""

    def __init__(self) -> None:
        self.clients: dict[str, DeviceClient] = {}

    def client(self, url: str) -> DeviceClient:
        if url not in self.clients:
            self.clients[url] = DeviceClient(url)
        return self.clients[url]

    def request(self, shape: list[int], settings: LatencySettings) -> MeasureRequest:
        return MeasureRequest(
            shape,
            settings.threads,
            settings.warmup,
            settings.repeats,
            settings.max_ci,
            settings.attempts,
            settings.provider or DEFAULT_PROVIDER,
        )

    def measure(
        self, onnx_model: bytes, shape: list[int], settings: LatencySettings
    ) -> tuple[float, float, float, int]:
        """The agent's median ms, spread, median interval and attempts for the ONNX model on a batch of ``shape``."""
        assert settings.url is not None
        reply = self.client(settings.url).measure(onnx_model, self.request(shape, settings))
        return reply.median_ms, reply.spread, reply.ci, reply.attempts


REMOTE = RemoteBackend()


def _local(settings: LatencySettings) -> dict[str, Any]:
    from prunetuna.device import cpu_model

    info: dict[str, Any] = {
        "where": "this machine",
        "host": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "backend": settings.backend,
    }
    if settings.backend == "onnxruntime":
        import onnxruntime

        info.update(onnxruntime=onnxruntime.__version__, provider="CPUExecutionProvider")
    else:
        import torch

        info["torch"] = torch.__version__
    return info


def latency_device(settings: LatencySettings) -> dict[str, Any]:
    """What latency is measured on: this machine, or the device agent (asked once, no retries).

    An agent that cannot be reached, refuses the token or lacks the provider is bad input (``UserError``).
    """
    if settings.backend != "remote":
        return _local(settings)
    assert settings.url is not None
    client = REMOTE.client(settings.url)
    hint = (
        "; start it on the device with 'prunetuna device serve --host 0.0.0.0' (PRUNETUNA_DEVICE_TOKEN set there and "
        "here) "
        "or fix latency.url"
    )
    try:
        info = client.info(retry=False)
    except DeviceRefused as exc:
        raise UserError(f"latency.url: {exc}") from None
    except DeviceError as exc:
        raise UserError(f"latency.url: {exc}{hint}") from None
    provider = settings.provider or DEFAULT_PROVIDER
    if provider not in info.get("providers", []):
        raise UserError(
            f"latency.provider: {provider!r} is not offered by the device agent at {client.shown}; "
            f"it offers {', '.join(info.get('providers', []))}"
        )
    return {"where": "device agent", "url": client.shown, **dict(info.get("device", {})), "provider": provider}
