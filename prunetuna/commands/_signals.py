"""SIGTERM (what Slurm, Kubernetes and systemd send) stops a search as Ctrl-C does; a second signal stops it at once.

The first SIGINT or SIGTERM raises KeyboardInterrupt in the main thread: the running trial is failed
and enqueued again, runs are ended and the resume message printed (exit status 128 + the signal:
130 or 143). A second one, while that is under way, ends the process at once: every store is
written in transactions and every trial record by rename, so nothing is left half written, and the
next start fails, retries and repairs what was not finished.

A first signal that lands while the main thread is inside a study-storage call (Optuna telling a trial its
state, a SQL statement under way) is held until that call returns: a KeyboardInterrupt raised there leaves
Optuna's trial loop in a state it does not handle (it crashed with ``UnboundLocalError: updated_state`` in the
chaos soak, and the trial it was telling was never retried). A watcher thread raises it in the main thread as soon
as the call has returned.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
from types import FrameType, TracebackType

__all__ = ["StopSignals"]

STOPPING = (signal.SIGINT, signal.SIGTERM)
STORE_CODE = ("/optuna/storages/", "/optuna/study/_tell.py", "/sqlalchemy/", "/psycopg/", "/sqlite3/")
"""Where a KeyboardInterrupt is held back: code that writes the study (paths of the modules' files)."""
_POLL_S = 0.05


def in_store_call(frame: FrameType | None) -> bool:
    """Whether ``frame`` (or a frame that called it) runs code of :data:`STORE_CODE`."""
    while frame is not None:
        name = frame.f_code.co_filename.replace("\\", "/")
        if any(part in name for part in STORE_CODE):
            return True
        frame = frame.f_back
    return False


class StopSignals:
    """Context manager installing the handlers (main thread only); ``exit_code`` once a signal came."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.received: int | None = None
        self._saved: dict[int, object] = {}
        self._redeliver = False  # the held-back first signal, raised now by the watcher thread

    @property
    def exit_code(self) -> int:
        return 128 + (self.received or signal.SIGINT)

    def _say(self, text: str) -> None:
        os.write(sys.stderr.fileno(), f"\n{self.prefix}{text}\n".encode())  # unbuffered: safe wherever the signal lands

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._redeliver:  # the watcher's (interrupt_main): the storage call has returned
            self._redeliver = False
            if in_store_call(frame):  # ... and another one began before this ran: wait for that one too
                self._hold()
                return
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signum
            self._say(f"{name}: stopping (the running trial is failed and enqueued again); Ctrl-C again stops at once")
            if in_store_call(frame):
                self._hold()
                return
            raise KeyboardInterrupt
        self._say(
            f"stopped at once ({name} again); run the same command to resume: it fails, retries and repairs what "
            "this process left"
        )
        os._exit(self.exit_code)

    def _hold(self) -> None:
        """Raise the KeyboardInterrupt in the main thread once it has left the storage call it is in."""
        main = threading.main_thread().ident

        def watch() -> None:
            while in_store_call(sys._current_frames().get(main)):  # type: ignore[arg-type]
                time.sleep(_POLL_S)
            self._redeliver = True
            _thread.interrupt_main(signal.SIGINT)  # runs _handle in the main thread, which raises

        threading.Thread(target=watch, name="prunetuna-stop", daemon=True).start()

    def __enter__(self) -> StopSignals:
        self._saved = {s: signal.signal(s, self._handle) for s in STOPPING}
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.received is not None:
            return  # the process is on its way out: a second signal still stops it at once
        for number, handler in self._saved.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
