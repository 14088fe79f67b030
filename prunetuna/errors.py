"""The one exception type that means "the user's input is wrong" (exit status 2)."""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """Bad input: a config, an argument, a target, a checkpoint or an unreachable store.

    The message is one line that names the file, key or URL and says what to do; the CLI
    prints it without a traceback and exits with status 2.
    """
