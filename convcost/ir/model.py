"""The format-independent model every loader produces and every analysis consumes.

Loaders (YAML spec, ONNX, TorchScript) resolve shapes themselves and hand over plain
convolutions with their input and output shapes, plus the matrix-multiply ops needed for
model totals. Nothing here knows about a file format.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

ConvOp = Literal["Conv", "ConvTranspose"]
Shape = tuple[int, ...]
#: A scalar input's value (`-i sr=16000`): an int, float or bool.
Scalar = bool | int | float

#: Lazily loads a conv's weight tensor (C_out, C_in/groups, *kernel) — or, for ConvTranspose,
#: (C_in, C_out/groups, *kernel) — only when a weight-based feature asks for it.
WeightLoader = Callable[[], "np.ndarray"]


@dataclass(frozen=True)
class Conv:
    """One convolution (or transposed convolution) with its resolved shapes.

    `padding` lists begin pads for every spatial axis, then end pads (ONNX `pads` order).
    `dtype` is set only where the model fixes it: "int8" for a quantized conv, "float16" or
    "bfloat16" for one the model stores in that type (an explicit `--dtype` overrides those two);
    otherwise the analysis's dtype applies.
    """

    name: str
    op: ConvOp
    in_channels: int
    out_channels: int
    kernel: Shape
    stride: Shape
    padding: Shape
    dilation: Shape
    groups: int
    input_shape: Shape
    output_shape: Shape
    bias: bool = True
    output_padding: Shape = ()
    dtype: str | None = None
    weight: WeightLoader | None = field(default=None, compare=False, repr=False)
    #: Where the conv is in its file, for tools that rewrite it (`convcost apply`): an ONNX conv's
    #: output tensor name. None where the format has no such handle.
    origin: str | None = field(default=None, compare=False, repr=False)

    @property
    def rank(self) -> int:
        """Number of spatial axes (1, 2 or 3)."""
        return len(self.kernel)

    @property
    def is_depthwise(self) -> bool:
        return self.in_channels > 1 and self.groups == self.in_channels

    @property
    def is_pointwise(self) -> bool:
        return all(k == 1 for k in self.kernel)

    # The counts are the op's own: the one formula of each, here so that loaders (which never
    # import convcost.cost) and the cost model read the same numbers.

    @property
    def weight_count(self) -> int:
        """Weight elements: C_out x C_in/g x prod(k) (the same count for ConvTranspose)."""
        return self.in_channels * self.out_channels // self.groups * math.prod(self.kernel)

    @property
    def params(self) -> int:
        """Weights + bias."""
        return self.weight_count + (self.out_channels if self.bias else 0)

    @property
    def macs(self) -> int:
        """N x C_out x prod(out_spatial) x C_in/g x prod(k); a ConvTranspose scatters every input
        element into C_out/g x prod(k) outputs: N x C_in x prod(in_spatial) x C_out/g x prod(k)."""
        if self.op == "ConvTranspose":
            return math.prod(self.input_shape) * (self.out_channels // self.groups) * math.prod(self.kernel)
        return math.prod(self.output_shape) * (self.in_channels // self.groups) * math.prod(self.kernel)

    def with_changes(self, **changes: object) -> Conv:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class MatMul:
    """A matrix multiply that counts towards model MACs: Gemm, MatMul, Linear or Einsum.

    MACs are `batch * m * k * n`; `params` are the elements of constant operands (weights
    and bias), zero for a product of two activations. `dtype` as for `Conv`.
    """

    name: str
    op: str
    batch: int
    m: int
    k: int
    n: int
    params: int = 0
    dtype: str | None = None

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n


@dataclass(frozen=True)
class Node:
    """One op of the model as its format states it: an ONNX node, a captured aten op, a spec layer.

    Every op is here, convs and matmuls included, so that a whole-model latency estimate can price
    what runs between them (activations, pooling, adds, concats, resizes...) and a runtime's fusions
    can be matched on the graph. `inputs` and `outputs` are tensor names (edges of the graph);
    shapes are None where the loader could not resolve them. `counted` points a conv or matmul node
    at the `Conv` (`("conv", i)`: `Model.convs[i]`) or `MatMul` (`("matmul", i)`) the cost model prices.
    """

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    input_shapes: tuple[Shape | None, ...] = ()
    output_shapes: tuple[Shape | None, ...] = ()
    dtype: str | None = None
    #: Indices of `inputs` that are constants (weights, scales, shape tensors), not activations.
    constant: frozenset[int] = frozenset()
    #: The attributes a latency formula reads (kernel_shape, strides, mode, hidden_size...).
    attrs: dict[str, object] = field(default_factory=dict, compare=False)
    counted: tuple[Literal["conv", "matmul"], int] | None = None
    #: The node's name in its file where it differs from `name` (which is unique and may carry a scope).
    source: str = ""

    def known_outputs(self) -> list[Shape]:
        return [s for s in self.output_shapes if s is not None]


@dataclass(frozen=True)
class Uncounted:
    """A conv or matmul the model has but convcost could not count (its shapes are unknown, it sits
    in a control-flow body it cannot resolve...). `check` fails on any of these (rule `uncounted`):
    a budget read against a partial count would pass a model that breaks it."""

    name: str
    op: str
    why: str


#: Op types whose work `check` requires counted: convolutions and matrix products, in any form.
COUNTED_FAMILY = ("Conv", "Gemm", "MatMul", "Einsum", "Linear", "conv", "linear", "matmul", "mm", "einsum")


def counted_family(op: str) -> bool:
    """Whether an op type is one `check` must see counted (Conv, QLinearConv, FusedMatMul, aten::addmm...)."""
    return any(f in op for f in COUNTED_FAMILY)


@dataclass
class Model:
    """A loaded model: its inputs, its convolutions in execution order, and the rest."""

    name: str
    format: Literal["onnx", "torchscript", "pt2", "spec", "pytorch"]
    source: str
    inputs: dict[str, Shape]
    convs: list[Conv]
    matmuls: list[MatMul] = field(default_factory=list)
    #: Scalar inputs given a value (`-i sr=16000`), which the counts were made at.
    values: dict[str, Scalar] = field(default_factory=dict)
    #: Parameters of ops that are neither convs nor matmuls (normalization, embeddings...).
    other_params: int = 0
    #: The model's own parameter count where the format states it (PyTorch: `sum(p.numel() for p in
    #: model.parameters())`); totals.params is then exactly this, whatever the convs and matmuls price
    #: (shared weights count once, computed weights not at all). None: convs + matmuls + other_params.
    declared_params: int | None = None
    #: Op types seen but not costed, with their counts (stated in every output).
    uncosted: dict[str, int] = field(default_factory=dict)
    #: Convs and matmuls found but not counted, each named with the reason.
    uncounted: list[Uncounted] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Every op of the model in execution order (convs and matmuls too); empty where the loader
    #: records none, and then whole-model latency prices the convs and matmuls alone.
    nodes: list[Node] = field(default_factory=list)


#: Any op the cost model prices.
Op = Conv | MatMul

#: The largest count convcost reports: JSON readers (jq, pandas, Go, a database column) overflow past it.
INT64_MAX = 2**63 - 1


def numel(shape: Shape) -> int:
    return math.prod(shape)
