"""One registry mechanism for every pluggable part: samplers, early-stopping rules, importance criteria,
latency backends, costs, objectives, scoring modes, pruning methods, exporters, built-in models and data.

A :class:`Registry` maps names to parts; ``register`` adds one (as a call or a decorator), ``get``
returns one or raises :class:`UnknownName` with the one message every unknown name gets:
``unknown <kind> '<name>'; choose one of a, b, c``. Torch-free: the config checks names with
:func:`check_name` against :mod:`prunetuna.names` without importing the parts themselves.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar, overload

from prunetuna.errors import UserError

__all__ = ["Registry", "UnknownName", "check_name", "unknown_message"]

T = TypeVar("T")
_MISSING: Any = object()


class UnknownName(UserError, ValueError):
    """A name that no part is registered under: bad input (exit 2), and a ``ValueError`` for validators."""


def unknown_message(kind: str, name: object, names: Iterable[str]) -> str:
    return f"unknown {kind} {name!r}; choose one of {', '.join(names)}"


def check_name(kind: str, name: str, names: Iterable[str]) -> str:
    """``name`` when it is among ``names``; else :class:`UnknownName`."""
    names = tuple(names)
    if name not in names:
        raise UnknownName(unknown_message(kind, name, names))
    return name


class Registry(Generic[T]):
    """Parts of one kind by name, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, item: T) -> T: ...

    def register(self, name: str, item: T | None = None) -> T | Callable[[T], T]:
        """Add ``item`` under ``name``; without ``item``, a decorator that adds what it decorates."""
        if item is None:
            return lambda decorated: self.register(name, decorated)
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def replace(self, name: str, item: T) -> None:
        """Put ``item`` under ``name`` whether or not one is there (a benchmark wrapping a part with a timer)."""
        self._items[name] = item

    __setitem__ = replace

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def get(self, name: str, default: Any = _MISSING) -> T:
        """The part registered as ``name``; :class:`UnknownName` naming the known ones otherwise (``default``,
        when given, instead: the mapping protocol, for code that treats the registry as a dict)."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            if default is not _MISSING:
                return default
            raise UnknownName(unknown_message(self.kind, name, self._items)) from None

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def values(self) -> list[T]:
        return list(self._items.values())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"
