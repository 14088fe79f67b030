"""What the search machine and the device agent say to each other: JSON over HTTP, the model as raw bytes.

``GET  /v1/info``     the device's description, its execution providers and the upload limit.
``POST /v1/measure``  body: the ONNX model (``application/octet-stream``); header ``X-Prunetuna-Request``:
                      a :class:`MeasureRequest` as JSON. Answer: a :class:`MeasureReply` as JSON.

Every request carries ``Authorization: Bearer <PRUNETUNA_DEVICE_TOKEN>`` when the agent has a token.
Errors are JSON ``{"error": "..."}`` with 400 (malformed request or model, refused operator domain),
401 (missing or wrong token), 404, 411 (no Content-Length), 413 (upload over the limit) or 500.
No pickle anywhere: the model is ONNX protobuf, everything else JSON.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "ALLOWED_DOMAINS",
    "INFO_PATH",
    "MEASURE_PATH",
    "REQUEST_HEADER",
    "TOKEN_ENV",
    "MeasureReply",
    "MeasureRequest",
    "ProtocolError",
]

INFO_PATH = "/v1/info"
MEASURE_PATH = "/v1/measure"
REQUEST_HEADER = "X-Prunetuna-Request"
TOKEN_ENV = "PRUNETUNA_DEVICE_TOKEN"
# The standard ONNX operator domains. "com.microsoft" (onnxruntime's contrib operators) is refused too:
# it is not part of the ONNX standard, its operators differ between onnxruntime builds and providers,
# and a model exported by prunetuna (torch.onnx, TorchScript exporter) never uses it.
ALLOWED_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
MAX_INPUT_ELEMENTS = 100_000_000  # 400 MB of float32: a guard against a request that would exhaust the board


class ProtocolError(ValueError):
    """A request the agent cannot take (HTTP 400)."""


def _int(data: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(f"{key} must be an integer in [{low}, {high}], got {value!r}")
    return value


@dataclass(frozen=True)
class MeasureRequest:
    """How to measure: the full input shape (batch first), threads, warm-up, repeats and the interval target."""

    input_shape: list[int]
    threads: int = 1
    warmup: int = 10
    repeats: int = 50
    max_ci: float = 0.05
    attempts: int = 3
    provider: str = "CPUExecutionProvider"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> MeasureRequest:
        if not isinstance(data, dict):
            raise ProtocolError("the request must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ProtocolError(f"unknown request keys {sorted(unknown)}")
        shape = data.get("input_shape")
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
        ):
            raise ProtocolError(f"input_shape must be a list of positive integers, got {shape!r}")
        if math.prod(shape) > MAX_INPUT_ELEMENTS:
            raise ProtocolError(f"input_shape {shape} has more than {MAX_INPUT_ELEMENTS} elements")
        max_ci = data.get("max_ci", 0.05)
        if isinstance(max_ci, bool) or not isinstance(max_ci, (int, float)) or not max_ci > 0:
            raise ProtocolError(f"max_ci must be a positive number, got {max_ci!r}")
        provider = data.get("provider", "CPUExecutionProvider")
        if not isinstance(provider, str) or not provider:
            raise ProtocolError(f"provider must be an execution provider's name, got {provider!r}")
        return cls(
            shape,
            _int(data, "threads", 1, 1, 1024),
            _int(data, "warmup", 10, 0, 100_000),
            _int(data, "repeats", 50, 5, 100_000),
            float(max_ci),
            _int(data, "attempts", 3, 1, 100),
            provider,
        )


@dataclass(frozen=True)
class MeasureReply:
    """The agent's answer: as :class:`prunetuna.device.Timing`, plus its wall time and the device's description."""

    median_ms: float
    spread: float
    ci: float
    attempts: int
    seconds: float
    device: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> MeasureReply:
        try:
            return cls(
                float(data["median_ms"]),
                float(data["spread"]),
                float(data["ci"]),
                int(data["attempts"]),
                float(data["seconds"]),
                dict(data.get("device", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed reply from the agent ({exc.__class__.__name__}: {exc})") from None
