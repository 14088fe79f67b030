"""``prunetuna device``: the measuring agent for the edge device (imports no torch)."""

from __future__ import annotations

import os
import signal
from typing import List, Optional

import typer

from prunetuna.device._protocol import TOKEN_ENV
from prunetuna.device._server import DEFAULT_MAX_UPLOAD_MB

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Measure candidates' latency on the edge device (install there: pip install 'prunetuna\\[device]').",
)


def _say(line: str) -> None:
    typer.echo(line, err=True)


@app.command()
def serve(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="address to bind (default loopback only; beyond it a token is required)"
    ),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="port (0: any free one, printed at start)"),
    provider: Optional[List[str]] = typer.Option(
        None, "--provider", help="execution providers offered (default: every one installed)"
    ),
    max_upload_mb: float = typer.Option(
        DEFAULT_MAX_UPLOAD_MB, "--max-upload-mb", min=0.001, help="largest ONNX upload accepted (413 beyond)"
    ),
    quiet: bool = typer.Option(False, "--quiet", help="no line per request"),
    exit_after: Optional[int] = typer.Option(
        None, "--exit-after", hidden=True, min=1, help="tests: stop after N measurements"
    ),
) -> None:
    """Serve measurements: ONNX models in, onnxruntime latency (median, spread, interval) and the device's
    description out."""
    from prunetuna.device._measure import describe_device
    from prunetuna.device._server import make_server, serve_until_stopped

    token = os.environ.get(TOKEN_ENV) or None
    try:
        server = make_server(
            host,
            port,
            token,
            max_upload_mb=max_upload_mb,
            providers=provider or None,
            exit_after=exit_after,
            say=(lambda line: None) if quiet else _say,
        )
    except (ValueError, OSError) as exc:
        _say(f"prunetuna: error: {exc}")
        raise typer.Exit(2) from None
    device = describe_device()
    _say(
        f"prunetuna device agent on {server.url} ({'token required' if server.token else 'no token: loopback only'}); "
        f"{device['cpu']}, {device['cores']} cores, onnxruntime {device['onnxruntime']}, providers "
        f"{', '.join(server.info()['providers'])}"
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it like Ctrl-C
    try:
        serve_until_stopped(server)
    except KeyboardInterrupt:
        _say("stopped")
        return
    _say(f"stopped after {server.measurements} measurements (--exit-after)")


@app.command()
def info(
    url: str = typer.Argument("http://127.0.0.1:8765", help="the agent's URL"),
) -> None:
    """Ask an agent what it runs on (token from PRUNETUNA_DEVICE_TOKEN)."""
    import json

    from prunetuna.device._client import DeviceClient, DeviceError

    try:
        answer = DeviceClient(url).info(retry=False)
    except DeviceError as exc:
        _say(f"prunetuna: error: {exc}")
        raise typer.Exit(2) from None
    typer.echo(json.dumps(answer, indent=2))
