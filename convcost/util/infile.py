"""Reading the small text files users hand convcost (specs, budgets, baselines, device profiles).

One place for the rules every such file is held to, since each may come from a pull request:
a size cap checked before reading, UTF-8, one-line errors naming the file, and a YAML loader that
refuses alias bombs and pathological nesting before anything is built (never Python tags: it is
a SafeLoader).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from convcost.util.errors import InputError

MAX_YAML_DEPTH = 64
MAX_YAML_ALIASES = 10_000


def read_text(path: str | Path, what: str, max_bytes: int) -> str:
    """The file's text, or an `InputError` naming the file and saying what a `what` should be."""
    p = Path(path)
    try:
        if p.stat().st_size > max_bytes:
            raise InputError(f"larger than {max_bytes // 2**20} MiB; not a {what}", p)
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"no such {what} file", p) from None
    except IsADirectoryError:
        raise InputError(f"is a directory, not a {what}", p) from None
    except UnicodeDecodeError:
        raise InputError(f"not a text (UTF-8) file, so not a {what}", p) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", p) from None


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses alias bombs and pathological nesting while composing, before building."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _Refused(f"more than {MAX_YAML_ALIASES} YAML aliases (an alias bomb?)")
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(f"YAML nested deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Refused(Exception):
    """A bound hit while composing (turned into an InputError with the file's name)."""


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return f"YAML syntax error: {problem}"
    return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def load_yaml(text: str, path: str | Path) -> Any:
    """Parse untrusted YAML with the bounds above; errors name `path`."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader already refuses control characters here
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise InputError(_yaml_error(exc), path) from None
    except _Refused as exc:
        raise InputError(str(exc), path) from None
    finally:
        if loader is not None:
            loader.dispose()
