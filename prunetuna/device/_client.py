"""The search machine's side of the protocol: ask an agent for its description and for measurements (no torch)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from prunetuna.device._protocol import (
    INFO_PATH,
    MEASURE_PATH,
    REQUEST_HEADER,
    TOKEN_ENV,
    MeasureReply,
    MeasureRequest,
    ProtocolError,
)

__all__ = ["RETRY_DELAYS_S", "DeviceClient", "DeviceError", "DeviceRefused", "DeviceUnreachable", "mask_url"]

RETRY_DELAYS_S = (0.5, 1.0, 2.0)  # an agent that does not answer is asked again after each of these
INFO_TIMEOUT_S = 10.0
MEASURE_TIMEOUT_S = 900.0  # a large model on a slow board, waiting behind other workers' measurements


class DeviceError(Exception):
    """The agent could not measure; the message names its URL and what to do."""


class DeviceUnreachable(DeviceError):
    """No answer from the agent (not running, network down, timed out) after the retries."""


class DeviceRefused(DeviceError):
    """The agent answered with an HTTP error (401 token, 413 too large, 400 model or request refused)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class DeviceClient:
    """One agent at ``url``; the token is ``PRUNETUNA_DEVICE_TOKEN`` unless given."""

    def __init__(self, url: str, token: str | None = None, retry_delays: tuple[float, ...] = RETRY_DELAYS_S) -> None:
        self.url = url.rstrip("/")
        self.shown = mask_url(self.url)
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.retry_delays = retry_delays
        self._max_upload: int | None = None

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> dict[str, Any]:
        headers = dict(headers)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            # noqa: S310 - the configured agent's http(s) URL
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return json.loads(answer.read().decode())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read().decode()).get("error", exc.reason)
            except (ValueError, AttributeError, OSError):
                message = exc.reason
            hint = {401: f"; set {TOKEN_ENV} to the agent's token"}.get(exc.code, "")
            raise DeviceRefused(
                f"the device agent at {self.shown} answered {exc.code}: {message}{hint}", exc.code
            ) from None
        except ValueError as exc:  # JSON
            raise DeviceError(f"the device agent at {self.shown} sent a malformed answer ({exc})") from None

    def _with_retries(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: float,
        delays: tuple[float, ...],
    ) -> dict[str, Any]:
        last: Exception | None = None
        for delay in (*delays, None):
            try:
                return self._request(method, path, body, headers, timeout)
            except DeviceRefused as exc:
                if exc.status < 500:
                    raise
                last = exc
            except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out, name not resolved
                last = exc
            if delay is not None:
                time.sleep(delay)
        reason = getattr(last, "reason", last)
        tries = f" after {len(delays) + 1} tries" if delays else ""
        raise DeviceUnreachable(
            f"cannot reach the device agent at {self.shown}{tries} ({reason.__class__.__name__}: {reason})"
        )

    def info(self, *, retry: bool = True) -> dict[str, Any]:
        """The agent's description: ``device``, ``providers``, ``max_upload_bytes``, ``measurements``."""
        info = self._with_retries("GET", INFO_PATH, None, {}, INFO_TIMEOUT_S, self.retry_delays if retry else ())
        self._max_upload = int(info.get("max_upload_bytes", 0)) or None
        return info

    def measure(self, model: bytes, request: MeasureRequest) -> MeasureReply:
        """Upload ``model`` and wait for its measurement (queued behind others on the agent)."""
        if self._max_upload is not None and len(model) > self._max_upload:
            raise DeviceRefused(
                f"the model's {len(model)} bytes are over the limit of the device agent at {self.shown} "
                f"({self._max_upload} bytes); start it with a larger --max-upload-mb",
                413,
            )
        headers = {"Content-Type": "application/octet-stream", REQUEST_HEADER: json.dumps(request.to_json())}
        answer = self._with_retries("POST", MEASURE_PATH, model, headers, MEASURE_TIMEOUT_S, self.retry_delays)
        try:
            return MeasureReply.from_json(answer)
        except ProtocolError as exc:
            raise DeviceError(f"the device agent at {self.shown}: {exc}") from None
