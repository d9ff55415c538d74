"""Input shapes as users write them: `1x3x224x224`, or `NAME=1x3x224x224` for one of several inputs.

The command line (`-i`) and a TorchScript archive's saved `input_shape` use this one syntax; each
caller says where a bad value came from.
"""

from __future__ import annotations

from collections.abc import Sequence

from convcost.ir.model import Shape


class InputSyntaxError(ValueError):
    """A shape that does not parse; the message says which and why, without naming its source."""


def parse_shape(text: str) -> tuple[str | None, Shape]:
    """'1x3x224x224' or 'input=1x3x224x224' (also ',' separated)."""
    name, _, dims = text.rpartition("=")
    parts = dims.replace(",", "x").lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise InputSyntaxError(f"{text!r}: expected a shape like 1x3x224x224 or NAME=1x3x224x224") from None
    if not shape or any(d < 1 for d in shape):
        raise InputSyntaxError(f"{text!r}: every dim must be a positive integer")
    return (name or None), shape


def parse_inputs(values: Sequence[str]) -> dict[str, Shape]:
    """Shapes keyed by input name ("" for the single unnamed one)."""
    inputs: dict[str, Shape] = {}
    for value in values:
        name, shape = parse_shape(value)
        key = name or ""
        if key in inputs:
            raise InputSyntaxError(f"given twice for {'input ' + key if key else 'the input'}")
        inputs[key] = shape
    if "" in inputs and len(inputs) > 1:
        raise InputSyntaxError("with several shapes, name each input: NAME=SHAPE")
    return inputs
