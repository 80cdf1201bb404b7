"""Append-only registries for pluggable parts (models, strategies, cost models, criteria).

Modelled on timm's model registry: a decorator registers, ``list`` takes fnmatch wildcards and sorts
naturally, ``get`` of an unknown name raises :class:`~hwsearch.errors.UnknownNameError` suggesting the
closest registered names. Unlike timm, registering a name twice raises instead of overwriting.
"""

from __future__ import annotations

import builtins
import difflib
import fnmatch
import re
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from hwsearch.errors import UnknownNameError

__all__ = ["Registry", "natural_key"]

T = TypeVar("T")


def natural_key(name: str) -> list[object]:
    """Sort key that orders ``spikformer-8-384`` before ``spikformer-8-1024``."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name)]


class Registry(Generic[T]):
    """A named, append-only mapping from registry keys to objects.

    Args:
        kind: what is registered, used in messages ("model", "strategy", ...).
        list_command: the CLI command that lists the entries, named in the unknown-name error.

    >>> reg: Registry[int] = Registry("number", list_command="hwsearch numbers")
    >>> _ = reg.register("one")(1)
    >>> reg.get("one")
    1
    >>> reg.get("onee")
    Traceback (most recent call last):
    ...
    hwsearch.errors.UnknownNameError: unknown number 'onee'; did you mean 'one'? (list them with: hwsearch numbers)
    """

    def __init__(self, kind: str, *, list_command: str) -> None:
        self.kind = kind
        self.list_command = list_command
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a duplicate name raises ``ValueError``."""

        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` (non-decorator form)."""
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        """The entry registered as ``name``; unknown names raise with close-match suggestions."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (list them with: {self.list_command})"

    def list(self, pattern: str | None = None, exclude: str | None = None) -> list[str]:
        """Registered names matching the fnmatch ``pattern`` (all if None), naturally sorted."""
        names = list(self._entries)
        if pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if exclude:
            names = [n for n in names if not fnmatch.fnmatchcase(n, exclude)]
        return sorted(names, key=natural_key)

    # ``builtins.list``: inside the class body ``list`` names the method above.
    def list_or_raise(self, pattern: str | None = None) -> builtins.list[str]:
        """:meth:`list`, but a pattern matching nothing raises with close matches (for list commands)."""
        names = self.list(pattern)
        if not names and pattern:
            close = difflib.get_close_matches(pattern, list(self._entries), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(f"no {self.kind} matches {pattern!r}{hint} (list them all with: {self.list_command})")
        return names

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> builtins.list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.list()]
