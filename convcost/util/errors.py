"""Typed errors: the CLI turns each into one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxstring, _repr.maxother = 2, 6, 6, 40, 40


def short(value: Any) -> str:
    """A bounded repr for error messages: a value from an alias bomb or a fuzzed file must not print for ever."""
    return _repr.repr(value)


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (or its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ConvcostError(Exception):
    """Bad input or usage (exit 2). `source` names the file (or option) the problem is in."""

    exit_code = 2

    def __init__(self, message: str, source: str | Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = str(source) if source is not None else None

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message


class InputError(ConvcostError):
    """A model, spec, profile or budget file that cannot be used as given."""


class UsageError(ConvcostError):
    """A command-line option that is wrong on its own or in combination."""
