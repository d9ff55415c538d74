"""`Registry`: the one way convcost keeps named things that code looks up by key.

Op formulas, op kinds, variants, loaders, output formats and op handlers each live in one. A
registry remembers the order of registration (the order users see: variants, formats, kinds)
and refuses a second entry under one key, which would otherwise silently replace the first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, Protocol, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class DuplicateRegistration(KeyError):
    """A key registered twice: a programming error, never the user's."""


class Registry(Mapping[K, V], Generic[K, V]):
    """An insertion-ordered, read-only mapping that is filled by `add` or the `register` decorator."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[K, V] = {}

    def add(self, key: K, value: V) -> V:
        if key in self._entries:
            raise DuplicateRegistration(f"{self.what} {key!r} is registered twice")
        self._entries[key] = value
        return value

    def register(self, *keys: K) -> Callable[[V], V]:
        """Decorator: register the decorated object under each of `keys`."""

        def wrap(value: V) -> V:
            for key in keys:
                self.add(key, value)
            return value

        return wrap

    def __getitem__(self, key: K) -> V:
        return self._entries[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {list(self._entries)!r})"


class _Child(Protocol):
    @property
    def parent(self) -> str | None: ...


def lineage(registry: Mapping[str, _Child], key: str) -> list[str]:
    """`key`, then the entry its `parent` names, and so on: the fallback chain of registries whose
    entries inherit figures (op kinds, op families)."""
    chain = [key]
    while (parent := registry[chain[-1]].parent) is not None:
        chain.append(parent)
    return chain
