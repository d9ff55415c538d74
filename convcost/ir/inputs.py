"""What users give with `-i`: a shape (`1x3x224x224`), a value (`16000`, `0.5`, `true`), and
`NAME=` either for one input of several.

`16000` reads as both the 1-D shape (16000,) and the value 16000, so parsing keeps what was typed
with every reading of it (`Given`), and each loader picks by the model's signature: a rank-0 ONNX
input or a TorchScript `int` argument takes the value, a tensor takes the shape. The command line
and a TorchScript archive's saved `input_shape` use this one syntax; each caller says where a bad
value came from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from convcost.ir.model import Scalar, Shape

#: The scalar types an input can take a value of.
ScalarKind = Literal["int", "float", "bool"]

_BOOLS = {"true": True, "false": False}


class InputSyntaxError(ValueError):
    """A shape that does not parse; the message says which and why, without naming its source."""


@dataclass(frozen=True)
class Given:
    """One `-i` as typed, with each way it reads: `shape` if it is a shape, `value` if it is a value."""

    text: str
    shape: Shape | None = None
    value: Scalar | None = None

    @classmethod
    def of(cls, given: Given | Shape | Scalar) -> Given:
        """A `Given` from what a caller passes in code: a shape tuple, a value, or a `Given`."""
        if isinstance(given, Given):
            return given
        if isinstance(given, tuple):
            return cls("x".join(map(str, given)), shape=tuple(int(d) for d in given))
        text = str(given).lower() if isinstance(given, bool) else str(given)
        return cls(text, value=given)

    def as_kind(self, kind: ScalarKind) -> Scalar | None:
        """The value as `kind`, or None where it is no such value (0.5 is no int, 2 no bool)."""
        v = self.value
        if v is None:
            return None
        if kind == "bool":
            return v if isinstance(v, bool) else (bool(v) if isinstance(v, int) and v in (0, 1) else None)
        if isinstance(v, bool):
            return None
        if kind == "int":
            return int(v) if isinstance(v, int) or (math.isfinite(v) and v == int(v)) else None
        return float(v)


#: What a loader's `inputs` may hold: parsed `-i` values, or plain shapes and values from code.
Inputs = Mapping[str, "Given | Shape | Scalar"]


def givens(inputs: Inputs | None) -> dict[str, Given]:
    """Inputs as `Given`s, whatever form the caller passed."""
    return {k: Given.of(v) for k, v in (inputs or {}).items()}


def _value(text: str) -> Scalar | None:
    low = text.strip().lower()
    if low in _BOOLS:
        return _BOOLS[low]
    if re.fullmatch(r"[+-]?\d+", low):
        return int(low)
    try:
        number = float(low)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_given(text: str) -> tuple[str | None, Given]:
    """'1x3x224x224', 'input=1x3x224x224' (also ',' separated), or 'NAME=VALUE' (int, float, true/false)."""
    name, _, typed = text.rpartition("=")
    parts = typed.replace(",", "x").lower().split("x")
    dims = [int(p) for p in parts if re.fullmatch(r"\s*\d+\s*", p)] if all(
        re.fullmatch(r"\s*\d+\s*", p) for p in parts) else None
    shape = tuple(dims) if dims and all(d >= 1 for d in dims) else None
    value = _value(typed)
    if shape is None and value is None:
        if dims:
            raise InputSyntaxError(f"{text!r}: every dim must be a positive integer")
        raise InputSyntaxError(f"{text!r}: expected a shape like 1x3x224x224 or NAME=1x3x224x224, "
                               "or a value NAME=VALUE (int, float, true/false)")
    if not name and shape is None:
        raise InputSyntaxError(f"{text!r}: expected a shape like 1x3x224x224; a value needs its input's "
                               "name: NAME=VALUE")
    return (name or None), Given(typed, shape=shape, value=value)


def parse_shape(text: str) -> tuple[str | None, Shape]:
    """'1x3x224x224' or 'input=1x3x224x224': a shape only."""
    name, given = parse_given(text)
    if given.shape is None:
        raise InputSyntaxError(f"{text!r}: expected a shape like 1x3x224x224 or NAME=1x3x224x224")
    return name, given.shape


def parse_inputs(values: Sequence[str]) -> dict[str, Given]:
    """Each `-i` keyed by input name ("" for the one unnamed shape, which the loader gives to the
    model's one tensor input that no other `-i` names)."""
    inputs: dict[str, Given] = {}
    for text in values:
        name, given = parse_given(text)
        key = name or ""
        if key in inputs:
            raise InputSyntaxError(f"given twice for {'input ' + key if key else 'the input'}"
                                   + ("" if key else "; with several inputs, name each: NAME=SHAPE"))
        inputs[key] = given
    return inputs


def show_value(value: Scalar) -> str:
    """A value as `-i` takes it back: 16000, 0.5, true."""
    return str(value).lower() if isinstance(value, bool) else str(value)
