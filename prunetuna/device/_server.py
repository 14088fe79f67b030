"""The device agent: a small HTTP server (standard library) that measures one uploaded model at a time."""

from __future__ import annotations

import hmac
import ipaddress
import json
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prunetuna.device._measure import describe_device, measure_model
from prunetuna.device._protocol import INFO_PATH, MEASURE_PATH, REQUEST_HEADER, TOKEN_ENV, MeasureRequest, ProtocolError

__all__ = ["AgentServer", "DEFAULT_MAX_UPLOAD_MB", "MIN_TOKEN_LENGTH", "is_loopback", "make_server"]

DEFAULT_MAX_UPLOAD_MB = 100
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AgentServer(ThreadingHTTPServer):
    """Answers in parallel threads; measurements take ``lock`` one at a time, so they never overlap."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        token: str | None,
        max_upload: int,
        providers: list[str] | None,
        exit_after: int | None = None,
        say: Callable[[str], None] = lambda line: None,
    ) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)
        self.token = token.encode() if token else None
        self.max_upload = max_upload
        self.providers = providers
        self.exit_after = exit_after  # tests: the agent stops after this many measurements (a board switched off)
        self.say = say
        self.lock = threading.Lock()
        self.measurements = 0
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def info(self) -> dict[str, Any]:
        device = describe_device()
        return {
            "device": device,
            "providers": self.providers or device["providers"].split(","),
            "max_upload_bytes": self.max_upload,
            "measurements": self.measurements,
            "busy": self.lock.locked(),
        }


class _Handler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        self.server.say(f"{self.address_string()} {format % args}")

    def _send(self, status: int, body: dict[str, Any], close: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _error(self, status: HTTPStatus, message: str, close: bool = False) -> None:
        self._send(status, {"error": message}, close)

    def _authorized(self) -> bool:
        if self.server.token is None:
            return True
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        ok = hmac.compare_digest(value.strip().encode(), self.server.token) and scheme.lower() == "bearer"
        if not ok:
            length = self.headers.get("Content-Length", "")
            if self.command == "POST" and length.isdigit() and int(length) <= self.server.max_upload:
                self.rfile.read(int(length))  # read, so that the client sees the answer rather than a reset
            self._error(
                HTTPStatus.UNAUTHORIZED,
                f"missing or wrong token: send 'Authorization: Bearer <{TOKEN_ENV}>'",
                close=True,
            )
        return ok

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self._authorized():
            return
        if self.path != INFO_PATH:
            self._error(HTTPStatus.NOT_FOUND, f"unknown path {self.path!r}; use GET {INFO_PATH} or POST {MEASURE_PATH}")
            return
        self._send(HTTPStatus.OK, self.server.info())

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        if self.path != MEASURE_PATH:
            self._error(HTTPStatus.NOT_FOUND, f"unknown path {self.path!r}; use POST {MEASURE_PATH}", close=True)
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._error(HTTPStatus.LENGTH_REQUIRED, "send the model with a Content-Length", close=True)
            return
        if int(length) > self.server.max_upload:
            # the body is not read: the connection is closed after the answer
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"upload of {int(length)} bytes is over this agent's limit of {self.server.max_upload} bytes "
                "(prunetuna device serve --max-upload-mb)",
                close=True,
            )
            return
        data = self.rfile.read(int(length))
        try:
            request = MeasureRequest.from_json(json.loads(self.headers.get(REQUEST_HEADER) or "null"))
            if self.server.providers and request.provider not in self.server.providers:
                raise ProtocolError(
                    f"execution provider {request.provider!r} is not offered by this agent; "
                    f"offered: {', '.join(self.server.providers)}"
                )
            with self.server.lock:  # one measurement at a time; the others wait here, in arrival order of the lock
                reply = measure_model(data, request)
                self.server.measurements += 1
                count = self.server.measurements
        except json.JSONDecodeError as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"header {REQUEST_HEADER} is not JSON ({exc})")
            return
        except ProtocolError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        except Exception as exc:  # anything else: answered, and the agent keeps serving
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{exc.__class__.__name__}: {exc}"[:500])
            return
        self._send(HTTPStatus.OK, reply.to_json())
        self.server.say(
            f"measured: {reply.median_ms:.4f} ms (spread {reply.spread:.3f}, interval {reply.ci:.3f}, "
            f"{reply.attempts} attempt(s), {len(data)} bytes)"
        )
        if self.server.exit_after is not None and count >= self.server.exit_after:
            self.server.stopping.set()


def make_server(
    host: str,
    port: int,
    token: str | None,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    providers: list[str] | None = None,
    exit_after: int | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> AgentServer:
    """The agent bound to ``host:port``; ``ValueError`` for a bind beyond loopback without a token of 16+ characters."""
    if token is not None and not token.strip():
        token = None
    if not is_loopback(host):
        if token is None:
            raise ValueError(
                f"--host {host}: an agent reachable beyond this machine needs a token; export {TOKEN_ENV}=<a long "
                "random string> here and on the search machine (or bind 127.0.0.1)"
            )
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"{TOKEN_ENV}: a token of at least {MIN_TOKEN_LENGTH} characters is needed beyond loopback, "
                f"got {len(token)}; e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'"
            )
    if providers:
        import onnxruntime as ort

        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise ValueError(
                f"--provider {','.join(missing)}: not installed here; available: "
                f"{', '.join(ort.get_available_providers())}"
            )
    return AgentServer((host, port), token, int(max_upload_mb * 1024 * 1024), providers, exit_after, say)


def serve_until_stopped(server: AgentServer) -> None:
    """Serve until Ctrl-C, SIGTERM (raised as KeyboardInterrupt by the caller) or ``exit_after`` measurements."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        while not server.stopping.wait(0.2):
            pass
        time.sleep(0.05)  # the last answer is on its way
    finally:
        server.shutdown()
        server.server_close()
