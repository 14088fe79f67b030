"""A stop signal that lands while the study's storage is being written is held until the write returns, then raised
(a KeyboardInterrupt inside Optuna's tell crashed a chaos-soak worker and lost a trial's retry)."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import optuna
import pytest

from prunetuna.commands._signals import StopSignals


def test_a_signal_during_a_storage_write_waits_for_the_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    blocker = sqlite3.connect(tmp_path / "study.db", isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")  # the study's next write waits for this lock (inside SQLAlchemy)

    def interrupt_then_release() -> None:
        time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)  # handled once the blocked write returns to Python, inside SQLAlchemy
        time.sleep(0.5)
        blocker.execute("COMMIT")

    threading.Thread(target=interrupt_then_release, daemon=True).start()
    signals = StopSignals()
    with pytest.raises(KeyboardInterrupt), signals:
        study.set_user_attr("written", True)  # blocks about 1.5 s, then completes
        time.sleep(5)  # the held KeyboardInterrupt arrives here, after the write
        raise AssertionError("the stop signal was lost")
    assert signals.received == signal.SIGTERM
    assert optuna.load_study(study_name="s", storage=url).user_attrs == {"written": True}
    for number, handler in signals._saved.items():
        signal.signal(number, handler)  # type: ignore[arg-type]
