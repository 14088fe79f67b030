"""SIGTERM (what Slurm, Kubernetes and systemd send) stops a search as Ctrl-C does; a second signal stops it at once.

The first SIGINT or SIGTERM raises KeyboardInterrupt in the main thread: the running trial is failed
and enqueued again, runs are ended and the resume message printed (exit status 128 + the signal:
130 or 143). A second one, while that is under way, ends the process at once: every store is
written in transactions and every trial record by rename, so nothing is left half written, and the
next start fails, retries and repairs what was not finished.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType, TracebackType

__all__ = ["StopSignals"]

STOPPING = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Context manager installing the handlers (main thread only); ``exit_code`` once a signal came."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.received: int | None = None
        self._saved: dict[int, object] = {}

    @property
    def exit_code(self) -> int:
        return 128 + (self.received or signal.SIGINT)

    def _say(self, text: str) -> None:
        os.write(sys.stderr.fileno(), f"\n{self.prefix}{text}\n".encode())  # unbuffered: safe wherever the signal lands

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = signum
            self._say(f"{name}: stopping (the running trial is failed and enqueued again); Ctrl-C again stops at once")
            raise KeyboardInterrupt
        self._say(
            f"stopped at once ({name} again); run the same command to resume: it fails, retries and repairs what "
            "this process left"
        )
        os._exit(self.exit_code)

    def __enter__(self) -> StopSignals:
        self._saved = {s: signal.signal(s, self._handle) for s in STOPPING}
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.received is not None:
            return  # the process is on its way out: a second signal still stops it at once
        for number, handler in self._saved.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
