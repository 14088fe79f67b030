"""Where a study lives: the work dir, the Optuna storage URL and the MLflow tracking URI, with passwords masked."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy import Engine, event

from prunetuna.errors import UserError

__all__ = ["Workspace", "mask_url", "open_storage", "resolve_workspace"]


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``postgresql://u:***@host/db``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


@dataclass(frozen=True)
class Workspace:
    """The three places a verb works on; every verb resolves them the same way."""

    workdir: Path
    storage_url: str
    tracking_uri: str

    @property
    def default_tracking(self) -> bool:
        return self.tracking_uri == _default_tracking(self.workdir)

    @property
    def artifact_location(self) -> str | None:
        """Artifacts beside the work dir unless a tracking server decides."""
        if self.tracking_uri.startswith(("http://", "https://", "databricks")):
            return None
        return (self.workdir / "mlartifacts").resolve().as_uri()


def _default_tracking(workdir: Path) -> str:
    return f"sqlite:///{(workdir / 'mlflow.db').resolve()}"


def resolve_workspace(name: str, workdir: str | Path | None, storage: str | None, tracking_uri: str | None) -> Workspace:
    """Apply the contract's defaults: ``runs/<name>``, SQLite in the work dir, ``MLFLOW_TRACKING_URI``."""
    folder = Path(workdir) if workdir is not None else Path("runs") / name
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--workdir: {folder} is a file; give a folder")
    storage_url = storage or f"sqlite:///{(folder / 'optuna.db').resolve()}"
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or _default_tracking(folder)
    return Workspace(folder, storage_url, uri)


def open_storage(workspace: Workspace, *, create: bool, heartbeat: int | None = None) -> RDBStorage:
    """Connect to the Optuna storage, failing fast with the URL (password masked) when it is unusable.

    With ``heartbeat`` (seconds), running trials beat; a trial silent for three beats (its process
    was killed) is failed by the next worker and enqueued again with the same parameters.
    """
    url = workspace.storage_url
    shown = mask_url(url)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not create and not path.exists():
            raise UserError(f"--storage: {shown} does not exist; run 'prunetuna search' first or pass the study's --storage")
        path.parent.mkdir(parents=True, exist_ok=True)
    engine_kwargs = {"connect_args": {"connect_timeout": 5}} if url.startswith("postgresql") else {}
    try:
        beat = {} if heartbeat is None else {
            "heartbeat_interval": heartbeat,
            "grace_period": 3 * heartbeat,
            "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=2),
        }
        storage = _create_storage(url, engine_kwargs, beat)
        if url.startswith("sqlite:"):
            tune_sqlite_engine(storage.engine)
        return storage
    except ImportError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, ModuleNotFoundError) else exc
        driver = getattr(cause, "name", None) or "for this database"
        raise UserError(f"--storage: {shown} needs the Python driver {driver!r}; install it or use another URL") from None
    except Exception as exc:  # noqa: BLE001 - every connection failure is reported the same way
        reason = " ".join(str(exc).split())[:200].replace(url, shown)
        raise UserError(f"--storage: cannot open {shown} ({exc.__class__.__name__}: {reason}); check the URL and that the database is up") from None


def _create_storage(url: str, engine_kwargs: dict, beat: dict) -> RDBStorage:
    """RDBStorage, retried when workers starting together race to create the schema of a new database."""
    for attempt in range(5):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs, **beat)
        except Exception as exc:  # noqa: BLE001 - only the schema race is retried
            if "already exists" not in str(exc) or attempt == 4:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def tune_sqlite_engine(engine: Engine) -> None:
    """Write-ahead log with NORMAL sync on every connection: a commit is one append, not three fsyncs.

    Safe against a killed process (only a power cut can lose the last commits); halves the time
    Optuna's per-parameter commits take in a trial.
    """

    @event.listens_for(engine, "connect")
    def _pragmas(connection, _record) -> None:  # noqa: ANN001 - DB-API connection
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    engine.dispose()  # connections opened while creating the tables predate the pragmas


def load_study(workspace: Workspace, name: str) -> optuna.Study:
    """The existing study ``name``; a one-line error when it is not there."""
    storage = open_storage(workspace, create=False)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise UserError(f"study {name!r} is not in {mask_url(workspace.storage_url)}; run 'prunetuna search' first") from None
