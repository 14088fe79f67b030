"""Where a study lives: the work dir, the Optuna storage URL and the MLflow tracking URI, with passwords masked."""

from __future__ import annotations

import contextlib
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager

import optuna
from filelock import FileLock
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy import Engine, event
from sqlalchemy.exc import IntegrityError

from prunetuna.errors import UserError

__all__ = [
    "Workspace",
    "describe_error",
    "mask_text",
    "mask_url",
    "open_storage",
    "resolve_workspace",
    "sqlite_creation_lock",
    "sqlite_path",
]


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.S)


def _split_credentials(url: str) -> tuple[str, str, str, str] | None:
    """(scheme://, user, password, @host...) when ``url`` carries a password, else None.

    Database URLs: SQLAlchemy lets a password hold ``/``, ``#`` or ``?``, so the credentials are taken
    up to the *last* ``@``: nothing of a password can then show as the host (an ``@`` further on, in
    a query string, makes the shown host wrong, never the password visible). HTTP URLs follow RFC
    3986: the credentials end within the authority (before the first ``/``, ``?`` or ``#``).
    """
    match = _SCHEME.match(url)
    if match is None:
        return None
    scheme, rest = match.groups()
    if scheme.lower().startswith(("http:", "https:")):
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        userinfo, at, _ = authority.rpartition("@")
    else:
        userinfo, at, _ = rest.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon or "/" in user:  # no credentials, or an '@' inside a file path
        return None
    return scheme, user, password, rest[len(userinfo) :]


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``postgresql://u:***@host/db``)."""
    parts = _split_credentials(url)
    if parts is None:
        return url
    scheme, user, _, host = parts
    return f"{scheme}{user}:***{host}"


def mask_text(text: str, *urls: str) -> str:
    """``text`` (an error message, a log line) with each URL masked and its password nowhere in it."""
    for url in urls:
        text = text.replace(url, mask_url(url))
        parts = _split_credentials(url)
        if parts is not None and len(parts[2]) >= 3:  # shorter ones would mask ordinary words
            text = text.replace(parts[2], "***")
    return text


def describe_error(exc: BaseException, *urls: str, limit: int = 200) -> str:
    """``Class: message`` on one line, masked before it is shortened (a cut URL would no longer match)."""
    reason = mask_text(" ".join(str(exc).split()), *urls)
    return f"{exc.__class__.__name__}: {reason[:limit]}"


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
    def shared(self) -> bool:
        """Whether workers on other machines may share this study: any storage but SQLite, or any tracking store
        but a local one (SQLite, a folder). A shared study's trial is acknowledged (told to Optuna) only once its
        weights, manifest and metrics are in the tracking store (docs/guides/scaling-out.md, "Killed?")."""
        local_tracking = self.tracking_uri.startswith(("sqlite:", "file:")) or "://" not in self.tracking_uri
        return sqlite_path(self.storage_url) is None or not local_tracking

    @property
    def artifact_location(self) -> str | None:
        """Artifacts beside the work dir unless a tracking server decides."""
        if self.tracking_uri.startswith(("http://", "https://", "databricks")):
            return None
        return (self.workdir / "mlartifacts").resolve().as_uri()


def _default_tracking(workdir: Path) -> str:
    return f"sqlite:///{(workdir / 'mlflow.db').resolve()}"


def resolve_workspace(
    name: str, workdir: str | Path | None, storage: str | None, tracking_uri: str | None
) -> Workspace:
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
    was killed) is failed by the next worker and enqueued again with the same parameters, however often its
    workers are killed (no retry limit: a limit would lose the parameters of a trial killed once more).
    """
    url = workspace.storage_url
    shown = mask_url(url)
    path = sqlite_path(url)
    if path is not None:
        if not create and not path.exists():
            raise UserError(
                f"--storage: {shown} does not exist; run 'prunetuna search' first or pass the study's --storage"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"--workdir: cannot create {path.parent} ({exc.strerror}); choose a folder you can write to"
            ) from None
    engine_kwargs: dict = {}
    if url.startswith("postgresql"):
        engine_kwargs = {"connect_args": {"connect_timeout": 5}}
    elif url.startswith("sqlite:"):  # another process creating the tables holds the lock for a moment
        engine_kwargs = {"connect_args": {"timeout": 30}}
    try:
        beat = (
            {}
            if heartbeat is None
            else {
                "heartbeat_interval": heartbeat,
                "grace_period": 3 * heartbeat,
                "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=None),
            }
        )
        with sqlite_creation_lock(url):
            storage = _create_storage(url, engine_kwargs, beat)
        if url.startswith("sqlite:"):
            tune_sqlite_engine(storage.engine)
        return storage
    except ImportError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, ModuleNotFoundError) else exc
        driver = getattr(cause, "name", None) or "for this database"
        raise UserError(
            f"--storage: {shown} needs the Python driver {driver!r}; install it or use another URL"
        ) from None
    except Exception as exc:  # noqa: BLE001 - every connection failure is reported the same way
        raise UserError(
            f"--storage: cannot open {shown} ({describe_error(exc, url)}); check the URL and that the database is up"
        ) from None


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (Optuna storage or MLflow store); None for any other URL."""
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


def sqlite_creation_lock(url: str) -> ContextManager[object]:
    """Held while a SQLite database is opened, and so created and migrated when new: processes that
    migrate one file at the same moment can leave it broken (MLflow's half-copied ``_alembic_tmp_*``
    tables), so they take turns. The lock file lies beside the database; other URLs need none."""
    path = sqlite_path(url)
    if path is None:
        return contextlib.nullcontext()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # as MLflow does for its store
    except OSError:
        return contextlib.nullcontext()  # opening fails anyway, with the caller's message
    if not os.access(path.parent, os.W_OK):
        return contextlib.nullcontext()  # read-only: nobody creates a database there
    return FileLock(f"{path}.lock", timeout=120)


def _lost_schema_race(exc: Exception) -> bool:
    """Whether ``exc`` is another process creating Optuna's tables at the same moment: a table that
    already exists, or the schema version row it inserted first (SQLite and PostgreSQL word it differently)."""
    return isinstance(exc, IntegrityError) or "already exists" in str(exc)


def _create_storage(url: str, engine_kwargs: dict, beat: dict) -> RDBStorage:
    """RDBStorage, retried when workers starting together race to create the schema of a new database."""
    for attempt in range(5):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs, **beat)
        except Exception as exc:  # noqa: BLE001 - only the schema race is retried
            if not _lost_schema_race(exc) or attempt == 4:
                raise
            time.sleep(0.2 + random.random() / 2)
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
        raise UserError(
            f"study {name!r} is not in {mask_url(workspace.storage_url)}; run 'prunetuna search' first"
        ) from None
