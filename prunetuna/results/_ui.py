"""``prunetuna ui``: the MLflow UI opened on the study's trials, optuna-dashboard on its storage, both stopped together.

The MLflow UI runs as a child process in its own process group (``mlflow ui`` starts uvicorn under it);
SIGTERM, SIGHUP or Ctrl-C to ``prunetuna ui`` stop that whole group, so no server outlives it.
optuna-dashboard is served from a thread of this process, so the storage URL (which may hold a
password) stays out of every process list.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
import webbrowser
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from prunetuna.errors import UserError
from prunetuna.store import StudyRecord

__all__ = ["DASHBOARD_MISSING", "StudyLinks", "objective_names", "prepare_links", "serve"]

DASHBOARD_MISSING = (
    "--optuna: optuna-dashboard is not installed; install it with: pip install 'prunetuna[ui]' "
    "(or pip install optuna-dashboard)"
)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
STOP_GRACE_S = 10.0


class _Stop(Exception):
    """A stop signal arrived."""


@dataclass(frozen=True)
class StudyLinks:
    """Where the study is in MLflow: its experiment, and whether the tracking store is a server."""

    experiment_id: str
    server: str | None  # the tracking server's URL when the store is one (then nothing is served here)


def objective_names(study) -> list[str]:  # noqa: ANN001 - optuna.Study
    """The metric behind each Optuna value, by mode: what optuna-dashboard labels its axes with."""
    from prunetuna.objectives import Scoring

    record = StudyRecord.of(study.user_attrs)
    return Scoring(record.mode, record.objectives).value_names


def prepare_links(workspace, study_name: str) -> StudyLinks:  # noqa: ANN001 - prunetuna.search.Workspace
    """Find the study's experiment and write what its UI opens on: the saved view of the trials and, when
    the Optuna study is there too, the descriptions and Pareto table (refreshed: a killed search left them stale)."""
    from prunetuna.results._mlflow_summary import publish_summary, publish_view
    from prunetuna.store import StudyTracker, load_study, sqlite_path

    uri = workspace.tracking_uri
    path = sqlite_path(uri)
    if path is not None and not path.exists():
        raise UserError(f"--tracking-uri: {uri} does not exist; run 'prunetuna search' first")
    tracker = StudyTracker(workspace, study_name)
    tracker.connect(create=False)
    if tracker.experiment_id is None:
        raise UserError(
            f"study {study_name!r} has no MLflow experiment in the tracking store; run 'prunetuna search' first"
        )
    try:
        study = load_study(workspace, study_name)
    except UserError:
        publish_view(tracker.client, tracker.experiment_id)  # no Optuna study here: the view of the runs still helps
    else:
        from prunetuna.results._report import build_report

        report = build_report(study)
        publish_summary(
            tracker.client,
            tracker.experiment_id,
            tracker.find_parent(StudyRecord.of(study.user_attrs).mlflow_parent_run_id),
            report,
        )
    server = uri if uri.startswith(("http://", "https://")) else None
    return StudyLinks(tracker.experiment_id, server)


def check_dashboard_installed() -> None:
    try:
        import optuna_dashboard  # noqa: F401
    except ImportError:
        raise UserError(DASHBOARD_MISSING) from None


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the wait like Ctrl-C does, so the servers are stopped on the way out."""

    fired: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if not fired:  # once: a second signal must not cut the servers' shutdown short
            fired.append(signum)
            raise _Stop(signal.Signals(signum).name)

    saved = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _group_alive(pgid: int) -> bool:
    """Is a live (not zombie) process left in the group? Read from /proc where there is one: a container's
    init may leave exited grandchildren unreaped, and signalling a group of zombies still succeeds."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _stop_group(child: subprocess.Popen) -> None:
    """SIGTERM to the child's whole process group, then SIGKILL to what is left after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            child.poll()  # reaps it once it has exited
            if not _group_alive(child.pid):
                return
            time.sleep(0.1)


# noqa: ANN001 - Optuna's storage, study
def _start_dashboard(storage, study, host: str, port: int) -> Callable[[], None]:
    """optuna-dashboard on the study's storage, from a thread, its objectives named; returns what stops it."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    import optuna
    from optuna_dashboard import wsgi

    names = objective_names(study)
    if study.metric_names != names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable in use since Optuna 3.2
            study.set_metric_names(names)

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

    try:
        server: WSGIServer = make_server(host, port, wsgi(storage), handler_class=Quiet)
    except OSError as exc:
        raise UserError(f"--optuna-port: cannot serve on {host}:{port} ({exc.strerror}); choose another port") from None
    thread = threading.Thread(target=server.serve_forever, name="optuna-dashboard", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop


def _open_when_up(health: str, url: str) -> None:
    """Open ``url`` in the browser once ``health`` answers (the UI takes seconds to start)."""

    def run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(health, timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        webbrowser.open(url)

    threading.Thread(target=run, name="open-browser", daemon=True).start()


def serve(
    workspace,  # noqa: ANN001 - prunetuna.search.Workspace
    study_name: str,
    *,
    host: str,
    port: int,
    optuna_port: int | None,
    open_browser: bool,
    say: Callable[[str], None],
) -> int:
    """Serve the MLflow UI (unless the store is a server) and, with ``optuna_port``, optuna-dashboard,
    until one of them stops, Ctrl-C, SIGTERM or SIGHUP; returns the exit status."""
    import optuna

    from prunetuna.results._mlflow_summary import landing_url
    from prunetuna.store import load_study, mask_url, open_storage

    if optuna_port is not None:
        check_dashboard_installed()
        load_study(workspace, study_name)  # a one-line error when it is not there
        storage = open_storage(workspace, create=False)
        study = optuna.load_study(study_name=study_name, storage=storage)
    links = prepare_links(workspace, study_name)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    stops: list[Callable[[], None]] = []
    child: subprocess.Popen | None = None
    with _stop_on_signals():
        try:
            if optuna_port is not None:
                stops.append(_start_dashboard(storage, study, host, optuna_port))
                dashboard = (
                    f"http://{shown_host}:{optuna_port}/dashboard/studies/{storage.get_study_id_from_name(study_name)}"
                )
                say(f"optuna-dashboard for study {study_name!r}: {dashboard}")
                if open_browser:
                    _open_when_up(f"http://{shown_host}:{optuna_port}/api/studies", dashboard)
            if links.server is not None:
                say(
                    f"study {study_name!r} is tracked by a server: open "
                    f"{landing_url(mask_url(links.server), links.experiment_id)}"
                )
                if open_browser:
                    webbrowser.open(landing_url(links.server, links.experiment_id))
                if optuna_port is None:
                    return 0
                threading.Event().wait()  # the dashboard alone, until a signal
            url = landing_url(f"http://{shown_host}:{port}", links.experiment_id)
            say(f"MLflow UI for study {study_name!r}, on its trials: {url}  (Ctrl-C stops it)")
            command = [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port)]
            # The store URI may hold a password: through the environment, not the command line others can read.
            env = {
                # GenAI jobs (scorers, ...): 8 fewer processes; yours wins
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                **os.environ,
                "MLFLOW_BACKEND_STORE_URI": workspace.tracking_uri,
            }
            child = subprocess.Popen(command, env=env, start_new_session=True)
            if open_browser:
                _open_when_up(f"http://{shown_host}:{port}/health", url)
            return child.wait()
        except (KeyboardInterrupt, _Stop):
            return 0
        finally:
            if child is not None:
                _stop_group(child)
            for stop in stops:
                stop()
