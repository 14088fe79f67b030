"""``package.module:callable`` targets of the config (model, data, callbacks), resolved and called with
one-line errors. Torch-free and import-light, so that any part can resolve a target without a cycle."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from prunetuna.errors import UserError

__all__ = ["call_target", "import_target", "one_line"]


def import_target(spec: str, key: str) -> Callable[..., Any]:
    """Resolve ``"package.module:callable"``; ``key`` names the config key for the error message."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"{key}: {spec!r} is not of the form 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's target
        raise UserError(
            f"{key}: cannot import module {module_name!r} ({exc.__class__.__name__}: {exc}); check the name and "
            "PYTHONPATH"
        ) from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UserError(f"{key}: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UserError(f"{key}: {spec!r} is not callable")
    return target


def call_target(factory: Callable[..., Any], kwargs: dict[str, Any], key: str) -> Any:
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise UserError(f"{key}.kwargs: {exc}; fix the keyword arguments") from None
    except UserError:
        raise
    # noqa: BLE001 - a factory refusing its settings (a bad value, a missing folder) is bad input
    except Exception as exc:
        raise UserError(
            f"{key}: building it failed ({one_line(exc)}); check {key}.kwargs and what they point to"
        ) from None


def one_line(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:300]}"
