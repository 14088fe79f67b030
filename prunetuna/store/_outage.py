"""A tracking store that goes away for a while: its writes are retried until it is back, and an outage is reported
once."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, TypeVar

__all__ = ["Outage", "TrackingAway", "lost_insert_race", "transient"]
# What a tracking store's database says when two writers insert the same key at once (SQLite, PostgreSQL).
_UNIQUE_VIOLATIONS = ("UNIQUE constraint failed", "duplicate key value violates unique constraint")

T = TypeVar("T")
_log = logging.getLogger("prunetuna")
PATIENCE_ENV = "PRUNETUNA_TRACKING_PATIENCE"  # seconds an unreachable tracking server is waited for (default 300)
SERVER_PATIENCE_S = 300.0
DATABASE_PATIENCE_S = 30.0  # a local database is only ever briefly locked


class TrackingAway(Exception):
    """The tracking store stayed unreachable for the whole patience; what is missing is written by the next start."""


def transient(exc: BaseException) -> bool:
    """An error that a later attempt may not meet: a connection refused or reset, a timeout, a 5xx, a locked
    database."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(exc, (OSError, requests.RequestException)):
        return True
    if isinstance(exc, MlflowException):
        return exc.error_code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED")
    return type(exc).__name__ == "OperationalError"  # sqlalchemy: database is locked


def lost_insert_race(exc: BaseException) -> bool:
    """Another writer inserted the same key first (an MLflow server does not upsert tags atomically): writing
    again updates the row that now exists."""
    return any(marker in str(exc) for marker in _UNIQUE_VIOLATIONS)


class Outage:
    """Retries transient failures of one store, shared by the trial's thread and the background writer.

    The first failure is reported with how long the search waits; once a store has been unreachable
    for ``patience`` seconds it is reported as away (once) and calls fail at once until one succeeds.
    """

    def __init__(self, shown_uri: str, *, server: bool, describe: Callable[[BaseException], str]) -> None:
        default = SERVER_PATIENCE_S if server else DATABASE_PATIENCE_S
        self.patience = float(os.environ.get(PATIENCE_ENV, default))
        self.shown_uri = shown_uri
        self.describe = describe
        self._lock = threading.Lock()
        self._since: float | None = None
        self.away = False
        self.outages = 0

    def call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        delay = 0.5
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not transient(exc):
                    raise
                if self._failed(exc):
                    raise TrackingAway(self.away_message()) from exc
                time.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            self._succeeded()
            return result

    def away_message(self) -> str:
        return (
            f"the MLflow tracking store {self.shown_uri} has been unreachable for {self.patience:.0f} s; every "
            "finished "
            f"trial is kept in the work dir (trials/<number>/) and the next 'prunetuna search' writes what is missing"
        )

    def _failed(self, exc: BaseException) -> bool:
        """Note a failure; True when the caller should give up now."""
        with self._lock:
            now = time.monotonic()
            if self._since is None:
                self._since = now
                self.outages += 1
                _log.warning(
                    "prunetuna: the MLflow tracking store %s does not answer (%s); retrying for up to %.0f s",
                    self.shown_uri,
                    self.describe(exc),
                    self.patience,
                )
            if self.away:
                return True
            if now - self._since >= self.patience:
                self.away = True
                _log.error("prunetuna: %s", self.away_message())  # the one report of it
                return True
            return False

    def _succeeded(self) -> None:
        if self._since is None:
            return
        with self._lock:
            if self._since is not None:
                _log.warning(
                    "prunetuna: the MLflow tracking store %s answers again after %.0f s; held writes are being written",
                    self.shown_uri,
                    time.monotonic() - self._since,
                )
            self._since = None
            self.away = False
