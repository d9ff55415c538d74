"""What an op costs (`Cost`), the dtype sizes, and the registry of per-op-kind formulas.

Conventions: MACs count multiply-accumulates of the weights only, bias adds are
not MACs, FLOPs = 2 x MACs, params = weights + bias, bytes = elements x dtype size.
Formulas are registered per op kind, like torch.utils.flop_counter's `register_flop_formula`;
variants are lists of ordinary convs, so they are priced by these same formulas.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from convcost.ir.model import Op
from convcost.util.registry import Registry

#: Bytes per element for every `--dtype` convcost accepts.
DTYPE_BYTES: dict[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}

MACS_CONVENTION = (
    "MACs = multiply-accumulates of the weights only (bias adds excluded); FLOPs = 2 x MACs; "
    "params = weights + bias; fvcore/torchvision '_ops' call these MACs 'flops', onnx-tool adds "
    "one MAC per output element for the bias"
)


@dataclass(frozen=True)
class Cost:
    """What one op (or a sum of ops) costs."""

    params: int = 0
    macs: int = 0
    weight_bytes: int = 0
    input_bytes: int = 0
    output_bytes: int = 0

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def traffic_bytes(self) -> int:
        """Bytes moved to and from memory once each: weights, input and output."""
        return self.weight_bytes + self.input_bytes + self.output_bytes

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.params + other.params,
            self.macs + other.macs,
            self.weight_bytes + other.weight_bytes,
            self.input_bytes + other.input_bytes,
            self.output_bytes + other.output_bytes,
        )

    def memory(self) -> dict[str, int]:
        return {
            "weight_bytes": self.weight_bytes,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
        }


def bytes_per_element(dtype: str) -> int:
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_BYTES)}") from None


#: A formula: (op, bytes per element) -> Cost.
Formula = Callable[[Any, int], Cost]
_FORMULAS: Registry[type, Formula] = Registry("cost formula")


def register_cost(kind: type) -> Callable[[Formula], Formula]:
    """Register the cost formula of one op kind (decorator)."""
    return _FORMULAS.register(kind)


def cost_of(op: Op, dtype: str = "float32") -> Cost:
    """Price one op. An op whose model fixes its dtype (quantized, or stored as float16) uses that dtype."""
    return _FORMULAS[type(op)](op, bytes_per_element(op.dtype or dtype))


def total_cost(ops: Iterable[Op], dtype: str = "float32") -> Cost:
    return sum((cost_of(op, dtype) for op in ops), Cost())
