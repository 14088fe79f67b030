"""Opening the MLflow tracking store: the client, the WAL switch of a SQLite file, and a quick check that a
tracking server answers (MLflow's own HTTP retries take minutes; a connection check should take seconds)."""

from __future__ import annotations

import contextlib
import time
import urllib.error
import urllib.request
from pathlib import Path

from mlflow import MlflowClient

from prunetuna.errors import UserError
from prunetuna.runtime import quiet_mlflow_loggers
from prunetuna.store._storage import Workspace, describe_error, mask_url, sqlite_creation_lock, sqlite_path

__all__ = ["STORE_CREATION_WAIT_S", "open_client", "probe_server"]

PROBE_TIMEOUT_S = 10.0


def probe_server(uri: str) -> None:
    """For an ``http(s)://`` tracking URI, one request to the server's ``/health`` with a short timeout:
    raises the connection error at once instead of after MLflow's retries. Other URIs: nothing to probe."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S):  # noqa: S310 - http(s) only
            pass
    except urllib.error.HTTPError:
        return  # it answers (a proxy or an auth layer may refuse /health): the client call says more


def _sqlite_wal(path: Path) -> None:
    """Switch MLflow's SQLite file to a write-ahead log (persistent in the file): cheaper commits.

    Called under the store's creation lock. The switch needs the file to itself and SQLite refuses it
    at once, without waiting, while another process or thread reads it: then it is tried again a few
    times and otherwise left for the next start (it only makes commits cheaper).
    """
    import sqlite3

    if not path.exists():
        return
    for attempt in range(5):
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
                if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            time.sleep(0.1 * (attempt + 1))


STORE_CREATION_WAIT_S = 60.0  # how long a process waits for another that is creating a new tracking database


def open_client(workspace: Workspace) -> MlflowClient:
    """The client of the study's tracking store; bad input (one line, URI masked) when it cannot be opened.

    MLflow creates and migrates a database store when it is first opened, so processes starting together
    on a new one (workers sharing a work dir) race: on SQLite they take turns (a lock file), on another
    database the loser's migration fails ("already exists") and it opens the store again. Anything else
    (a server, a SQLite file that cannot be made) fails at once.
    """
    quiet_mlflow_loggers()  # after MLflow's import, which sets its loggers to INFO
    uri = workspace.tracking_uri
    path = sqlite_path(uri)
    may_race = path is None and not uri.startswith(("http://", "https://", "file:", "databricks"))
    deadline = time.monotonic() + STORE_CREATION_WAIT_S
    delay = 0.2
    while True:
        try:
            with sqlite_creation_lock(uri):
                client = MlflowClient(tracking_uri=uri)
                if path is not None:
                    _sqlite_wal(path)
                return client
        except Exception as exc:  # noqa: BLE001 - only a database store is created on open; others fail below
            if not may_race or time.monotonic() + delay > deadline:
                reason = describe_error(exc, uri, workspace.storage_url)
                raise UserError(f"--tracking-uri: cannot open {mask_url(uri)} ({reason}); check the URI") from None
            time.sleep(delay)
            delay = min(2.0, delay * 2)
