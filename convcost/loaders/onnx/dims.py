"""Tensor dims as the ONNX loader tracks them: static ints where known, symbolic names where not."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from convcost.ir.model import Shape
from convcost.loaders.onnx.graph import quote

if TYPE_CHECKING:
    from onnx import NodeProto

#: A tensor's dims: int where static, the symbolic name (or None) where not.
Dims = tuple[int | str | None, ...]
#: name -> dims, for every tensor whose rank is known.
Shapes = dict[str, Dims]
#: Our shape rule for one op: (node, shapes, elem types) -> [(dims, elem type)] per output, or None.
Rule = Callable[["NodeProto", Shapes, dict[str, int]], list[tuple[Dims, int]] | None]

def static(dims: Dims | None) -> Shape | None:
    """The dims as ints when every one is known and positive, else None."""
    if dims is None:
        return None
    for d in dims:
        if d.__class__ is not int or d <= 0:
            return None
    return dims  # type: ignore[return-value]


def show(dims: Dims) -> str:
    return "[" + ", ".join("?" if d is None else str(d) if isinstance(d, int) else quote(d, 20)[1:-1]
                           for d in dims) + "]"


