"""The CLI's verbs, one module each, and what they share (options, one-line errors, stop signals)."""

from __future__ import annotations

from prunetuna.commands._common import user_errors

__all__ = ["user_errors"]
