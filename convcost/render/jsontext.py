"""JSON text exactly as `json.dumps(value, indent=2)` writes it, several times faster, in pieces.

With `indent`, the standard library encodes in pure Python through nested generators: most of
the time `analyze -f json` took on a 10,000-conv model. `encode` writes the same bytes with one
string join per container, and `items` / `wrap` let a caller assemble a dict from parts it
encoded earlier (the JSON renderer reuses the text of every conv geometry it has seen) and
stream a document piece by piece. Key and value rules follow `json.encoder`: str, None, bool,
int, float (NaN and infinities as `NaN` / `Infinity`), list, tuple, dict; subclasses as their
base; anything else raises TypeError, as `json.dumps` does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

_INF = float("inf")
_INT = int.__repr__
_FLOAT = float.__repr__
#: NEWLINE[level]: a newline and the indentation of `level` (2 spaces per level).
NEWLINE = ["\n" + "  " * level for level in range(64)]


def _newline(level: int) -> str:
    return NEWLINE[level] if level < len(NEWLINE) else "\n" + "  " * level


def _float(x: float) -> str:
    if x != x:
        return "NaN"
    if x == _INF:
        return "Infinity"
    if x == -_INF:
        return "-Infinity"
    return _FLOAT(x)


def key(k: object) -> str:
    """A dict key as json writes it (str, or a float, bool, None or int turned into one)."""
    if isinstance(k, str):
        return encode_basestring_ascii(k)
    if isinstance(k, float):
        return encode_basestring_ascii(_float(k))
    if k is True:
        return '"true"'
    if k is False:
        return '"false"'
    if k is None:
        return '"null"'
    if isinstance(k, int):
        return encode_basestring_ascii(_INT(k))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")


def items(d: Mapping[Any, Any], level: int) -> str:
    """The items of dict `d` as they appear inside it when the dict sits at `level`: each on its
    own line, comma-separated, without the braces. Parts made this way join with ","."""
    nl = _newline(level + 1)
    inner = level + 1
    return ",".join([nl + key(k) + ": " + encode(v, inner) for k, v in d.items()])


def wrap(parts: str, level: int) -> str:
    """Braces around `items` text: the dict at `level` (`{}` when there are no items)."""
    return "{" + parts + _newline(level) + "}" if parts else "{}"


def encode(value: Any, level: int = 0) -> str:
    """`value` as `json.dumps(value, indent=2)` writes it, for a value nested `level` deep (its
    continuation lines carry 2 * level more spaces)."""
    t = type(value)
    if t is str:
        return encode_basestring_ascii(value)
    if t is int:
        return _INT(value)
    if t is float:
        return _float(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if t is dict:
        return wrap(items(value, level), level) if value else "{}"
    if t is list or t is tuple:
        if not value:
            return "[]"
        nl = _newline(level + 1)
        inner = level + 1
        return "[" + ",".join([nl + encode(v, inner) for v in value]) + _newline(level) + "]"
    return _subclass(value, level)


def _subclass(value: Any, level: int) -> str:
    """Subclasses of the JSON types, in the order `json.encoder` tests them."""
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if isinstance(value, int):
        return _INT(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, list | tuple):
        return encode(list(value), level)
    if isinstance(value, dict):
        return encode(dict(value), level)
    json.dumps(value)  # raises the TypeError json would
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
