"""Small ONNX graphs that `calibrate --runtime onnxruntime` times: one conv or matmul of the sweep,
one op of each family at a few sizes, and the pairs a -> b whose fusion it checks.

Each graph is built with onnx.helper at opset 17, random float32 weights, and comes with the IR
nodes convcost prices it by (`Probe.nodes`), so the fit sees exactly what the estimate will see.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from convcost.cost.nodes import node_family
from convcost.ir.model import Conv, MatMul, Node, Shape
from convcost.ir.shapes import make_conv
from convcost.latency.footprint import CONV
from convcost.latency.fusions import GELU_KERNEL, SILU_KERNEL

OPSET = 17
FLOAT = TensorProto.FLOAT


@dataclass
class Probe:
    """One graph to time: its model, what it stands for, and the IR nodes that price it."""

    name: str
    model: onnx.ModelProto
    #: The op the graph holds (a Conv or MatMul of the sweep), or None for a family / fusion probe.
    op: Conv | MatMul | None = None
    #: The IR nodes of the graph, in order, as a loader would produce them.
    nodes: list[Node] = field(default_factory=list)
    family: str | None = None

    @property
    def target(self) -> Node:
        """The node the probe measures: the one of the family (others only prepare its input or
        take its output)."""
        return next((n for n in self.nodes if self.family and node_family(n) == self.family), self.nodes[-1])


class _Builder:
    """Collects nodes, initializers and IR nodes of one graph."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.ir: list[Node] = []
        self.shapes: dict[str, Shape] = {}
        self.rng = np.random.default_rng(0)
        self.count = 0
        self.constants: set[str] = set()
        self.remember: str | None = None  # a tensor a later op of a fusion probe reads
        #: Where set, each 4-D input comes out of a 1x1 conv, as an op inside a model finds it.
        self.produced = False

    def input(self, shape: Shape, name: str = "x") -> str:
        self.inputs.append(helper.make_tensor_value_info(name, FLOAT, list(shape)))
        self.shapes[name] = shape
        if self.produced and len(shape) == 4:
            return self.op("Conv", [name, self.weight((shape[1], shape[1], 1, 1))], shape)
        return name

    def const(self, array: np.ndarray, name: str | None = None) -> str:
        name = name or f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(array, name))
        self.constants.add(name)
        self.shapes[name] = tuple(array.shape)
        return name

    def weight(self, shape: Shape) -> str:
        return self.const((self.rng.standard_normal(shape) * 0.1).astype(np.float32))

    def op(self, op: str, inputs: Sequence[str], out_shape: Shape, counted: tuple[Any, int] | None = None,
           **attrs: Any) -> str:
        self.count += 1
        outs = [f"t{self.count}_0"]
        shapes = [out_shape]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=f"n{self.count}_{op}", **attrs))
        const = frozenset(i for i, t in enumerate(inputs) if t in self.constants)
        self.ir.append(Node(
            name=f"n{self.count}_{op}", op=op, inputs=tuple(inputs), outputs=tuple(outs),
            input_shapes=tuple(self.shapes.get(t) for t in inputs), output_shapes=tuple(shapes),
            dtype="float32", constant=const, attrs=dict(attrs), counted=counted))
        for o, s in zip(outs, shapes, strict=False):
            self.shapes[o] = s
        return outs[0]

    def runs_as(self, count: int, kernel: str, x: str) -> None:
        """The last `count` IR nodes become one `kernel` node that reads `x` and writes their output,
        as the runtime fuses them into one kernel (SiLU's QuickGelu, GELU's Gelu)."""
        self.ir[-count:] = [replace(self.ir[-1], op=kernel, inputs=(x,), input_shapes=(self.shapes[x],),
                                    constant=frozenset())]

    def model(self, outputs: Sequence[str]) -> onnx.ModelProto:
        outs = [helper.make_tensor_value_info(o, FLOAT, list(self.shapes[o])) for o in outputs]
        graph = helper.make_graph(self.nodes, self.name, self.inputs, outs, self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


def _conv_node(b: _Builder, conv: Conv, x: str, index: int = 0) -> str:
    r = conv.rank
    if conv.op == "ConvTranspose":
        w = b.weight((conv.in_channels, conv.out_channels // conv.groups, *conv.kernel))
        extra: dict[str, Any] = {"output_padding": list(conv.output_padding)} if any(conv.output_padding) else {}
    else:
        w = b.weight((conv.out_channels, conv.in_channels // conv.groups, *conv.kernel))
        extra = {}
    inputs = [x, w] + ([b.weight((conv.out_channels,))] if conv.bias else [])
    return b.op(conv.op, inputs, conv.output_shape, ("conv", index), kernel_shape=list(conv.kernel),
                strides=list(conv.stride), pads=list(conv.padding) or [0] * (2 * r),
                dilations=list(conv.dilation), group=conv.groups, **extra)


def conv_probe(conv: Conv) -> Probe:
    b = _Builder("conv")
    y = _conv_node(b, conv, b.input(conv.input_shape))
    return Probe(conv.name, b.model([y]), conv, b.ir)


def matmul_probe(mm: MatMul) -> Probe:
    """A layer with a constant weight runs as Gemm (x (rows, k) by W (n, k) transposed, plus bias, as
    torch exports nn.Linear); a product of two activations as a batched MatMul."""
    b = _Builder("matmul")
    if mm.params:
        x = b.input((mm.batch * mm.m, mm.k))
        ins = [x, b.weight((mm.n, mm.k))] + ([b.weight((mm.n,))] if mm.params > mm.k * mm.n else [])
        y = b.op("Gemm", ins, (mm.batch * mm.m, mm.n), ("matmul", 0), transB=1)
    else:
        x, w = b.input((mm.batch, mm.m, mm.k)), b.input((mm.batch, mm.k, mm.n), "w")
        y = b.op("MatMul", [x, w], (mm.batch, mm.m, mm.n), ("matmul", 0))
    return Probe(mm.name, b.model([y]), mm, b.ir)


#: The matmuls of the sweep: classifier heads, transformer projections and attention products, and
#: the channel MLPs of a ConvNeXt stage (thousands of pixels by a narrow weight).
def sweep_matmuls(scale: int = 1) -> list[MatMul]:
    shapes = [(1, 1, 2048, 1000, True), (1, 1, 1280, 1000, True), (1, 1, 512, 10, True), (1, 197, 384, 384, True),
              (1, 197, 384, 1536, True), (1, 50, 512, 512, True), (1, 64, 256, 1024, True), (6, 197, 64, 197, False),
              (6, 197, 197, 64, False), (8, 32, 32, 32, False), (4, 128, 64, 128, False), (1, 4096, 64, 64, True),
              (1, 1, 4096, 4096, True), (1, 1, 1024, 1000, True), (1, 1, 576, 1024, True), (1, 1, 9216, 4096, True),
              (1, 1, 960, 1280, True), (1, 3136, 96, 384, True), (1, 3136, 384, 96, True), (1, 784, 192, 768, True),
              (4, 256, 32, 256, False), (4, 256, 256, 32, False)]
    out = [MatMul(f"matmul {b}x{m}x{k}x{n}", "Gemm" if w else "MatMul", b, m, k, n, params=k * n + n if w else 0)
           for b, m, k, n, w in shapes]
    return out[::scale]


def _nchw(c: int, hw: int) -> Shape:
    return (1, c, hw, hw)


def _family_probe(family: str, name: str, build: Any) -> Probe:
    b = _Builder(family)
    outs = build(b)
    return Probe(name, b.model(outs if isinstance(outs, list) else [outs]), None, b.ir, family)


#: Activation maps the family probes run on: tiny to large (elements 512 .. 1.6 M).
SIZES: tuple[tuple[int, int], ...] = ((8, 8), (16, 28), (32, 56), (64, 56), (128, 56), (64, 112), (256, 28))


def _unary(op: str, **attrs: Any) -> Any:
    def build(b: _Builder, c: int, hw: int) -> str:
        return b.op(op, [b.input(_nchw(c, hw))], _nchw(c, hw), **attrs)

    return build


def _binary(op: str, broadcast: bool = False) -> Any:
    def build(b: _Builder, c: int, hw: int) -> str:
        other = b.input((1, c, 1, 1) if broadcast else _nchw(c, hw), "y")
        return b.op(op, [b.input(_nchw(c, hw)), other], _nchw(c, hw))

    return build


def _clip(b: _Builder, c: int, hw: int) -> str:
    lo, hi = b.const(np.array(0, np.float32)), b.const(np.array(6, np.float32))
    return b.op("Clip", [b.input(_nchw(c, hw)), lo, hi], _nchw(c, hw))


def _concat(b: _Builder, c: int, hw: int) -> str:
    return b.op("Concat", [b.input(_nchw(c, hw)), b.input(_nchw(c, hw), "y")], _nchw(2 * c, hw), axis=1)


def _shuffle(b: _Builder, c: int, hw: int) -> str:
    x = b.input((1, 2, c // 2, hw, hw))
    return b.op("Transpose", [x], (1, c // 2, 2, hw, hw), perm=[0, 2, 1, 3, 4])


def _slice(b: _Builder, c: int, hw: int) -> str:
    starts, ends, axes = (b.const(np.array([v], np.int64)) for v in (0, c // 2, 1))
    return b.op("Slice", [b.input(_nchw(c, hw)), starts, ends, axes], _nchw(c // 2, hw))


def _maxpool(b: _Builder, c: int, hw: int) -> str:
    out = (hw - 1) // 2 + 1
    return b.op("MaxPool", [b.input(_nchw(c, hw))], _nchw(c, out), kernel_shape=[3, 3], strides=[2, 2],
                pads=[1, 1, 1, 1])


def _avgpool(b: _Builder, c: int, hw: int) -> str:
    return b.op("AveragePool", [b.input(_nchw(c, hw))], _nchw(c, hw // 2), kernel_shape=[2, 2], strides=[2, 2])


def _pool1d(op: str, k: int) -> Any:
    def build(b: _Builder, c: int, hw: int) -> str:
        length = hw * hw // 2
        return b.op(op, [b.input((1, c, length))], (1, c, length // k), kernel_shape=[k], strides=[k])

    return build


def _gap(b: _Builder, c: int, hw: int) -> str:
    return b.op("GlobalAveragePool", [b.input(_nchw(c, hw))], (1, c, 1, 1))


def _reduce(b: _Builder, c: int, hw: int) -> str:
    return b.op("ReduceMean", [b.input(_nchw(c, hw))], (1, c, 1, 1), axes=[2, 3], keepdims=1)


def _softmax(b: _Builder, c: int, hw: int) -> str:
    heads, length = max(1, c // 32), hw * 4
    shape = (1, heads, length, length)
    return b.op("Softmax", [b.input(shape)], shape, axis=-1)


def _layernorm(b: _Builder, c: int, hw: int) -> str:
    shape = (1, hw * hw // 4 or 1, c * 2)
    scale, bias = b.weight((c * 2,)), b.weight((c * 2,))
    return b.op("LayerNormalization", [b.input(shape), scale, bias], shape, axis=-1)


#: The op type onnxruntime's profile names an op's blocked-layout (NCHWc) kernel by, where it differs.
BLOCKED_KERNELS = {"Resize": "Upsample"}


def _resize(mode: str) -> Any:
    """A 2x Resize of a conv's output, as a decoder upsamples: on x86 the conv leaves its output in the
    blocked layout and the resize runs on it (NCHWc Upsample; linear 3-4x faster than on a plain
    tensor here, nearest a little slower), unless the channels do not fill whole blocks."""
    def build(b: _Builder, c: int, hw: int) -> str:
        side = hw // 2 or 1
        x = b.op("Conv", [b.input(_nchw(c, side)), b.weight((c, c, 1, 1))], _nchw(c, side))
        scales = b.const(np.array([1, 1, 2, 2], np.float32))
        # As torch exports F.interpolate: nearest as asymmetric / floor (onnxruntime has a fast path
        # for it; the ONNX defaults, half_pixel / round_prefer_floor, run 3-7x slower), linear as half_pixel.
        extra: dict[str, Any] = {"coordinate_transformation_mode": "half_pixel"} if mode == "linear" else \
            {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
        return b.op("Resize", [x, "", scales], _nchw(c, 2 * side), mode=mode, **extra)

    return build


def _recurrent(op: str) -> Any:
    gates = {"LSTM": 4, "GRU": 3}[op]

    def build(b: _Builder, c: int, hw: int) -> str:
        seq, inp, hidden = max(4, hw // 2), c * 2, c * 2
        w, r = b.weight((1, gates * hidden, inp)), b.weight((1, gates * hidden, hidden))
        x = b.input((seq, 1, inp))
        return b.op(op, [x, w, r], (seq, 1, 1, hidden), hidden_size=hidden)

    return build


def _silu(b: _Builder, c: int, hw: int) -> str:
    """x * Sigmoid(x) as exporters write SiLU; onnxruntime runs it as one QuickGelu kernel, and that
    one node (reading x, writing the product) is the probe's IR, as the runtime runs it."""
    shape = _nchw(c, hw)
    x = b.input(shape)
    y = b.op("Mul", [x, b.op("Sigmoid", [x], shape)], shape)
    b.runs_as(2, SILU_KERNEL, x)
    return y


def _gelu(b: _Builder, c: int, hw: int) -> str:
    """GELU as torch exports it, 0.5 * x * (1 + Erf(x / sqrt(2))); onnxruntime runs it as one Gelu
    kernel, and that one node (reading x, writing the result) is the probe's IR. At one thread here
    it takes 1.4x the time the Erf, Sigmoid, Tanh and HardSwish probes predict for its bytes."""
    shape = _nchw(c, hw)
    x = b.input(shape)
    scaled = b.op("Div", [x, b.const(np.array(math.sqrt(2.0), np.float32))], shape)
    erf = b.op("Erf", [scaled], shape)
    y = b.op("Mul", [b.op("Mul", [x, b.op("Add", [erf, b.const(np.array(1.0, np.float32))], shape)], shape),
                     b.const(np.array(0.5, np.float32))], shape)
    b.runs_as(5, GELU_KERNEL, x)
    return y


def _reshape(b: _Builder, c: int, hw: int) -> str:
    """A Reshape between two ops, as in a model (of a graph input or into a graph output it would copy)."""
    shape = b.const(np.array([1, -1], np.int64))
    x = b.op("Relu", [b.input(_nchw(c, hw))], _nchw(c, hw))
    y = b.op("Reshape", [x, shape], (1, c * hw * hw))
    return b.op("Relu", [y], (1, c * hw * hw))


def _reorder(b: _Builder, c: int, hw: int) -> str:
    """A 1x1 conv read by a ReduceMean: on x86 onnxruntime runs the conv blocked (NCHWc) and copies its
    output back to NCHW for the ReduceMean in a ReorderOutput, the copy it inserts wherever a blocked
    tensor meets an op that reads NCHW. The copy is the probe's IR node; it writes into the session's
    arena, as in a model (a copy into a graph output writes a buffer allocated for that run, and is
    slower). Reorders have a probe of their own, apart from data_movement's: a reorder moves its bytes
    at another rate than a Concat (1.5x faster at one thread here), and its probe reads a map just
    written, as in a model, so its figures take no footprint share (convcost.latency.footprint).
    Priced with Concat's figures and share, a grouped MobileNetV2's 25 reorders come out at 1.8x
    their time at two threads here."""
    shape = _nchw(c, hw)
    y = b.op("Conv", [b.input(shape), b.weight((c, c, 1, 1))], shape)
    b.ir.append(Node(name="ReorderOutput", op="ReorderOutput", inputs=(y,), outputs=("reordered",),
                     input_shapes=(shape,), output_shapes=(shape,), dtype="float32"))
    return b.op("ReduceMean", [y], (1, c, 1, 1), axes=[2, 3], keepdims=1)


#: The kernel onnxruntime runs for a family whose probe graph it fuses into one op.
FUSED_KERNELS = {"swish": SILU_KERNEL, "gelu": GELU_KERNEL}

#: Per family, the graphs that measure it: (label, builder(b, channels, side)).
FAMILY_PROBES: dict[str, list[tuple[str, Any]]] = {
    "elementwise": [("Relu", _unary("Relu")), ("Add", _binary("Add")), ("Mul bcast", _binary("Mul", True)),
                    ("Clip", _clip)],
    "transcendental": [("Sigmoid", _unary("Sigmoid")), ("HardSwish", _unary("HardSwish")),
                       ("Tanh", _unary("Tanh")), ("Erf", _unary("Erf"))],
    "swish": [("x*Sigmoid(x)", _silu)],
    "gelu": [("GELU (erf form)", _gelu)],
    "data_movement": [("Concat", _concat), ("Transpose shuffle", _shuffle), ("Slice", _slice)],
    "pooling": [("MaxPool 3x3/2", _maxpool), ("AveragePool 2x2/2", _avgpool), ("GlobalAveragePool", _gap)],
    "pooling_nd": [("MaxPool1d 4/4", _pool1d("MaxPool", 4)), ("AveragePool1d 2/2", _pool1d("AveragePool", 2))],
    "reduction": [("ReduceMean", _reduce)],
    "softmax": [("Softmax", _softmax)],
    "normalization": [("LayerNormalization", _layernorm)],
    "resize": [("Resize nearest", _resize("nearest"))],
    "resize_linear": [("Resize linear", _resize("linear"))],
    "recurrent": [("LSTM", _recurrent("LSTM")), ("GRU", _recurrent("GRU"))],
    "view": [("Reshape", _reshape)],
    "layout": [("ReorderOutput", _reorder)],
}


def family_probes(every: int = 1) -> list[Probe]:
    """Every family's graphs at SIZES (every `every`-th size; the tiny and the largest always)."""
    probes = []
    sizes = [s for i, s in enumerate(SIZES) if i % every == 0 or i in (0, len(SIZES) - 1)]
    for family, builders in FAMILY_PROBES.items():
        for label, build in builders:
            for c, hw in sizes:
                if family == "recurrent" and c * hw > 4096:
                    continue
                probes.append(_family_probe(family, f"{label} {c}x{hw}x{hw}",
                                            lambda b, build=build, c=c, hw=hw: build(b, c, hw)))
    return probes


@dataclass
class FusionProbe:
    """A fusion check: a alone, b alone, and a -> b, each a graph (times compared by nn-Meter's rule)."""

    fusion: str
    a: onnx.ModelProto
    b: onnx.ModelProto
    ab: onnx.ModelProto


def pair_conv(c: int = 64, hw: int = 56) -> Conv:
    """The conv of the fusion checks: a 1x1 conv, 64 channels on a 56x56 map."""
    return make_conv(name="pair", op="Conv", input_shape=(1, c, hw, hw), out_channels=c, kernel=(1, 1),
                     stride=(1, 1), padding=(0, 0, 0, 0))


def fusion_probes() -> list[FusionProbe]:
    """One probe per conv fusion convcost models: conv -> BatchNormalization, conv -> Relu, and
    conv -> Add (a residual of the same shape) -> Relu."""
    conv = pair_conv()
    shape = conv.output_shape
    c = shape[1]

    def convs(b: _Builder, x: str, residual: bool) -> str:
        """The conv a; for the residual check, after another conv whose output the Add reads too (the
        runtime fuses an Add whose operand is in its own blocked layout, as in a ResNet)."""
        if residual:
            x = b.remember = _conv_node(b, conv, x)
        return _conv_node(b, conv, x)

    def bn(b: _Builder, x: str) -> str:
        ones = np.ones(c, np.float32)
        params = [b.const(ones * 1.1), b.const(ones * 0.1), b.const(ones * 0.2), b.const(ones * 0.9)]
        return b.op("BatchNormalization", [x, *params], shape)

    def relu(b: _Builder, x: str) -> str:
        return b.op("Relu", [x], shape)

    def add_relu(b: _Builder, x: str) -> str:
        other = b.remember or b.input(shape, "r")
        return relu(b, b.op("Add", [x, other], shape))

    def hardswish(b: _Builder, x: str) -> str:
        return b.op("HardSwish", [x], shape)

    probes = []
    for name, after in (("conv_bn", bn), ("conv_activation", relu), ("conv_hardswish", hardswish),
                        ("conv_add_activation", add_relu)):
        # a and a -> b end in one more conv: onnxruntime fuses into a conv only what feeds another node,
        # not a graph output (HardSwish is fused inside a model, decomposed at a graph's end).
        residual = name == "conv_add_activation"
        first = _Builder("a")
        a_out = _conv_node(first, conv, convs(first, first.input(conv.input_shape), residual))
        alone = _Builder("b")
        b_out = after(alone, alone.input(shape))
        chain = _Builder("ab")
        ab_out = _conv_node(chain, conv, after(chain, convs(chain, chain.input(conv.input_shape), residual)))
        probes.append(FusionProbe(name, first.model([a_out]), alone.model([b_out]), chain.model([ab_out])))
    # A BatchNormalization with no conv before it (DenseNet's pre-activation, here after a pool), then
    # Relu, then a conv.
    def pool(b: _Builder) -> str:
        return b.op("MaxPool", [b.input(shape)], shape, kernel_shape=[3, 3], pads=[1, 1, 1, 1])

    first, alone, chain = _Builder("a"), _Builder("b"), _Builder("ab")
    a_out = _conv_node(first, conv, bn(first, pool(first)))
    b_out = relu(alone, alone.input(shape))
    ab_out = _conv_node(chain, conv, relu(chain, bn(chain, pool(chain))))
    probes.append(FusionProbe("bn_activation", first.model([a_out]), alone.model([b_out]), chain.model([ab_out])))
    return probes + _elementwise_fusion_probes(shape)


def _elementwise_fusion_probes(shape: Shape) -> list[FusionProbe]:
    """SiLU (a: Sigmoid, b: the Mul by x) and the erf form of GELU (a: the scaling and Erf, b: the
    Add, Mul by x and Mul by 0.5), as torch's exporter writes them."""
    def silu(parts: str) -> onnx.ModelProto:
        b = _Builder(parts)
        x = b.input(shape)
        if parts == "a":
            return b.model([b.op("Sigmoid", [x], shape)])
        if parts == "b":
            return b.model([b.op("Mul", [x, b.input(shape, "y")], shape)])
        return b.model([b.op("Mul", [x, b.op("Sigmoid", [x], shape)], shape)])

    def gelu(parts: str) -> onnx.ModelProto:
        b = _Builder(parts)
        x = b.input(shape)
        if parts in ("a", "ab"):
            y = b.op("Erf", [b.op("Div", [x, b.const(np.array(1.4142135, np.float32))], shape)], shape)
            if parts == "a":
                return b.model([y])
        else:
            y = b.input(shape, "y")
        y = b.op("Mul", [x, b.op("Add", [y, b.const(np.array(1.0, np.float32))], shape)], shape)
        return b.model([b.op("Mul", [y, b.const(np.array(0.5, np.float32))], shape)])

    return [FusionProbe("sigmoid_mul", silu("a"), silu("b"), silu("ab")),
            FusionProbe("gelu", gelu("a"), gelu("b"), gelu("ab"))] + _matmul_fusion_probes()


def _matmul_fusion_probes() -> list[FusionProbe]:
    """A transformer's MatMul + bias Add (a: the MatMul by a weight, b: the Add of a bias along the
    last axis) and attention's scaled scores (a: the MatMul of two activations, b: the Mul by a
    scalar). The MatMul's input is 2-D: of higher rank, onnxruntime reshapes it around the Gemm,
    which adds kernels the count would see."""
    tokens, width, heads, head = 256, 128, 4, 32

    def bias(parts: str) -> onnx.ModelProto:
        b = _Builder(parts)
        if parts == "b":
            return b.model([b.op("Add", [b.input((tokens, 3 * width)), b.weight((3 * width,))], (tokens, 3 * width))])
        y = b.op("MatMul", [b.input((tokens, width)), b.weight((width, 3 * width))], (tokens, 3 * width))
        return b.model([y if parts == "a" else b.op("Add", [y, b.weight((3 * width,))], (tokens, 3 * width))])

    def scale(parts: str) -> onnx.ModelProto:
        b = _Builder(parts)
        scores = (1, heads, tokens, tokens)
        if parts == "b":
            return b.model([b.op("Mul", [b.input(scores), b.const(np.array(0.125, np.float32))], scores)])
        y = b.op("MatMul", [b.input((1, heads, tokens, head)), b.input((1, heads, head, tokens), "k")], scores)
        return b.model([y if parts == "a" else b.op("Mul", [y, b.const(np.array(0.125, np.float32))], scores)])

    return [FusionProbe("matmul_add", bias("a"), bias("b"), bias("ab")),
            FusionProbe("matmul_scale", scale("a"), scale("b"), scale("ab"))]


def chain_probe(length: int) -> onnx.ModelProto:
    """`length` Adds of a small tensor one after another: the executor's cost per node and per run."""
    b = _Builder("chain")
    x = b.input((1, 8, 8, 8))
    for _ in range(length):
        x = b.op("Add", [x, b.const(np.ones((1, 8, 1, 1), np.float32), f"c{b.count}")], (1, 8, 8, 8))
    return b.model([x])



#: Megabytes the rest of a model touches, at which calibrate times each footprint probe.
FOOTPRINT_MB = (8.0, 64.0, 256.0, 768.0)
#: The footprint probes' size: (channels, side) of the activation map, 0.8 MB.
FOOTPRINT_SIZE = (64, 56)
@dataclass
class FootprintProbe:
    """What `latency.footprint` compares: an op alone, as the sweep times it, and the same op with its
    input written by a 1x1 conv just before, as in a model."""

    key: str  # the op family, or footprint.CONV
    op: str  # the op type whose kernel is timed
    alone: onnx.ModelProto
    produced: onnx.ModelProto


def _alone_and_produced(name: str, build: Any) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """The graph `build(b)` makes, as is and with each 4-D input written by a 1x1 conv."""
    graphs = []
    for produced in (False, True):
        b = _Builder(name)
        b.produced = produced
        graphs.append(b.model([build(b)]))
    return graphs[0], graphs[1]


def footprint_probes() -> list[FootprintProbe]:
    """For each family with a probe on an activation map, and for a depthwise conv (the memory-bound
    conv kind), the op at FOOTPRINT_SIZE alone and after a producer. Every builder of a family is
    offered: calibrate keeps the first whose op onnxruntime does not fuse into the conv."""
    c, hw = FOOTPRINT_SIZE
    out = []
    for family, builders in FAMILY_PROBES.items():
        if family in ("view", "recurrent", "resize", "resize_linear", "pooling_nd", "normalization", "layout"):
            continue  # no kernel of their own, a producer already, or no 4-D map to produce
        for _label, build in builders:
            alone, produced = _alone_and_produced(family, lambda b, build=build: build(b, c, hw))
            if len(produced.graph.node) == len(alone.graph.node):
                continue  # no 4-D input: nothing to produce
            op = FUSED_KERNELS.get(family, alone.graph.node[-1].op_type)
            out.append(FootprintProbe(family, op, alone, produced))
    depthwise = make_conv(name="dw", op="Conv", input_shape=_nchw(c, hw), out_channels=c, kernel=(3, 3),
                          stride=(1, 1), padding=(1, 1, 1, 1), groups=c)
    out.append(FootprintProbe(CONV, "Conv", *_alone_and_produced(
        "conv", lambda b: _conv_node(b, depthwise, b.input(depthwise.input_shape)))))
    return out


#: The cold-weights probe's conv: (channels, side) of a 3x3 conv like ResNet's last stage (9.4 MB of
#: weights, each used by 49 output pixels), and the chain lengths calibrate times it in.
COLD_CONV = (512, 7)
COLD_CHAINS = (4, 8, 16, 32)


def chain_weights(length: int, channels: int = COLD_CONV[0]) -> dict[str, np.ndarray]:
    """Weights for a weight_chain of up to `length` convs (a shorter chain reads the first ones)."""
    rng = np.random.default_rng(0)
    return {f"w{i}": rng.standard_normal((channels, channels, 3, 3), dtype=np.float32) * np.float32(0.01)
            for i in range(length)}


def weight_chain(length: int, channels: int = COLD_CONV[0], side: int = COLD_CONV[1],
                 weights: dict[str, np.ndarray] | None = None) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """`length` 3x3 convs of `channels` each, one after another on a `side` x `side` map, each with
    weights of its own: in a run of the chain every conv reads weights last read one run ago.

    Returns the graph and the weights it reads (the first `length` of `weights`, or new ones): the
    graph's initializers name external data that the session takes from the arrays
    (ort_run.make_session's `weights`), so a chain of 300 MB of weights is not copied into the
    protobuf, serialized and parsed again."""
    b = _Builder("weights")
    weights = weights if weights is not None else chain_weights(length, channels)
    used = {w: weights[w] for w in list(weights)[:length]}
    x = b.input((1, channels, side, side))
    for w, array in used.items():
        b.inits.append(_external(w, array))
        b.constants.add(w)
        x = b.op("Conv", [x, w], (1, channels, side, side), kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    return b.model([x]), used


def _external(name: str, array: np.ndarray) -> TensorProto:
    """An initializer whose data lives outside the model (the session is given the array itself)."""
    t = TensorProto(name=name, data_type=FLOAT, dims=array.shape, data_location=TensorProto.EXTERNAL)
    for key, value in (("location", f"{name}.bin"), ("offset", "0"), ("length", str(array.nbytes))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def rest_of_model(mb: float) -> onnx.ModelProto:
    """A Relu reading and writing `mb` megabytes in all: what the rest of a model touches per run."""
    b = _Builder("rest")
    shape = (max(int(mb * 1e6 / 8), 1),)
    return b.model([b.op("Relu", [b.input(shape)], shape)])
