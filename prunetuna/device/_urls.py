"""An agent's URL, checked before anything runs (no torch, no network)."""

from __future__ import annotations

import urllib.parse

from prunetuna.device._protocol import TOKEN_ENV

__all__ = ["check_agent_url"]


def check_agent_url(url: str) -> str:
    """``url`` if it is ``http(s)://host[:port]`` without credentials; ``ValueError`` saying what to write otherwise."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL ({exc}); write e.g. http://board.local:8765") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r}: write the agent's address as http://host:port, e.g. http://board.local:8765")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"the URL holds credentials: remove them and export {TOKEN_ENV} instead (the URL is logged with the study)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: give the agent's address only (http://host:port), without a path or query")
    return url
