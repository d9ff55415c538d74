"""The cost model: one formula per op kind, in one place.

Conventions (PRODUCT.md): MACs count multiply-accumulates of the weights only, bias adds are
not MACs, FLOPs = 2 x MACs, params = weights + bias, bytes = elements x dtype size.
Formulas are registered per op kind, like torch.utils.flop_counter's `register_flop_formula`;
variants are lists of ordinary convs, so they are priced by these same formulas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from convcost.model import Conv, MatMul, numel

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


Op = TypeVar("Op")
Formula = Callable[[Any, int], Cost]
_FORMULAS: dict[type, Formula] = {}


def register_cost(kind: type) -> Callable[[Formula], Formula]:
    """Register the cost formula of one op kind (decorator)."""

    def wrap(fn: Formula) -> Formula:
        _FORMULAS[kind] = fn
        return fn

    return wrap


def cost_of(op: Conv | MatMul, dtype: str = "float32") -> Cost:
    """Price one op. A conv whose model fixes its dtype (quantized) uses that dtype."""
    own = getattr(op, "dtype", None)
    return _FORMULAS[type(op)](op, bytes_per_element(own or dtype))


def total_cost(ops: Iterable[Conv | MatMul], dtype: str = "float32") -> Cost:
    return sum((cost_of(op, dtype) for op in ops), Cost())


def conv_weight_count(conv: Conv) -> int:
    """Weight elements: C_out x C_in/g x prod(k) (the same count for ConvTranspose)."""
    return conv.in_channels * conv.out_channels // conv.groups * math.prod(conv.kernel)


@register_cost(Conv)
def _conv_cost(conv: Conv, bpe: int) -> Cost:
    batch = conv.input_shape[0]
    per_output = (conv.in_channels // conv.groups) * math.prod(conv.kernel)
    if conv.op == "ConvTranspose":
        # Every input element scatters into C_out/g x prod(k) outputs.
        macs = batch * conv.in_channels * numel(conv.input_shape[2:]) * (
            conv.out_channels // conv.groups
        ) * math.prod(conv.kernel)
    else:
        macs = batch * conv.out_channels * numel(conv.output_shape[2:]) * per_output
    params = conv_weight_count(conv) + (conv.out_channels if conv.bias else 0)
    return Cost(
        params=params,
        macs=macs,
        weight_bytes=params * bpe,
        input_bytes=numel(conv.input_shape) * bpe,
        output_bytes=numel(conv.output_shape) * bpe,
    )


@register_cost(MatMul)
def _matmul_cost(mm: MatMul, bpe: int) -> Cost:
    return Cost(
        params=mm.params,
        macs=mm.batch * mm.m * mm.k * mm.n,
        weight_bytes=mm.params * bpe,
        input_bytes=mm.batch * mm.m * mm.k * bpe,
        output_bytes=mm.batch * mm.m * mm.n * bpe,
    )
