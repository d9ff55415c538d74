"""The work of every other op of a model: bytes moved, and for recurrent ops their MACs.

Convs and matmuls are priced by their own formulas (`conv`, `matmul`). Everything else a model
runs -- activations, adds, pooling, concat, resize, softmax, normalization, LSTM/GRU -- falls into
one of the FAMILIES below, decided by its op type (`family_of`), and its work is one formula per
family (`node_work`). A latency model turns that work into time with per-family figures of a
device profile (convcost.latency.graph). An op type with no family is `None`: the caller names it
as unpriced, never a silent zero.

Bytes are elements x element size: activations in and out, plus constant operands (a BatchNorm's
scale and shift, an Add's bias) read once. Float tensors take the analysis dtype; integer and bool
tensors (indices, shapes, masks) their own size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from convcost.ir.model import Node, Shape
from convcost.util.registry import Registry
from convcost.util.registry import lineage as chain_of

#: Bytes per element of the dtypes a node can have (Node.dtype).
ELEMENT_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "uint8": 1, "int16": 2,
                 "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "bool": 1}
FLOATS = frozenset({"float32", "float64", "float16", "bfloat16"})


@dataclass(frozen=True)
class Family:
    """A family of ops that one latency formula prices: what they do, and the op types in it."""

    name: str
    description: str
    #: Op types, lower-case, without a domain or `aten::` prefix (`relu`, `max_pool2d`, `maxpool`).
    ops: frozenset[str]
    #: The family whose figures apply where a profile has none of this one's.
    parent: str | None = None


FAMILIES: Registry[str, Family] = Registry("op family")


def _family(name: str, description: str, *ops: str, parent: str | None = None) -> None:
    FAMILIES.add(name, Family(name, description, frozenset(o.lower() for o in ops), parent))


_family("view", "ops that re-label a tensor without moving it (the runtime aliases the buffer)",
        "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "view", "_unsafe_view", "flatten",
        "reshape", "squeeze", "unsqueeze", "detach", "alias", "t")
_family("shape", "ops on shapes and indices (tiny tensors): their time is the per-call overhead",
        "Shape", "Size", "ConstantOfShape", "Range", "NonZero", "Constant", "EyeLike", "OneHot", "full", "zeros",
        "ones", "arange", "scalar_tensor", "lift_fresh_copy", "empty", "new_zeros", "new_ones", "zeros_like",
        "ones_like", "full_like", "empty_like", "_to_copy", "copy_", "sym_size", "sym_numel")
_family("elementwise", "cheap arithmetic per element (add, mul, relu, clip, batch norm at inference)",
        "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "PRelu", "Clip", "Max", "Min", "Neg", "Abs", "Where",
        "Cast", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Not",
        "Xor", "Floor", "Ceil", "Round", "Sign", "Mod", "BatchNormalization", "ThresholdedRelu", "Shrink",
        "IsNaN", "IsInf", "BitShift", "add", "sub", "mul", "div", "relu", "leaky_relu", "prelu", "_prelu_kernel",
        "clamp", "clamp_min", "clamp_max", "hardtanh", "relu6", "maximum", "minimum", "neg", "abs", "where", "rsub",
        "eq", "ne", "gt", "lt", "ge", "le", "masked_fill", "floor", "ceil", "round", "sign", "remainder",
        "batch_norm", "_native_batch_norm_legit_no_training", "native_batch_norm", "threshold", "fill", "to",
        "logical_and", "logical_or", "logical_not", "bitwise_not", "add_", "mul_", "relu_", "copy")
_family("transcendental", "per-element ops with an exp, tanh, erf or division inside (sigmoid, gelu, swish...)",
        "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Pow", "Elu",
        "Selu", "Celu", "Softplus", "Softsign", "Mish", "Sin", "Cos",
        "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Trilu", "sigmoid", "tanh", "hardsigmoid", "hardswish",
        "erf", "exp", "log", "sqrt", "rsqrt", "reciprocal", "pow", "elu", "selu", "celu",
        "softplus", "mish", "sin", "cos", "log_sigmoid_forward", "glu")
_family("swish", "x * sigmoid(x) in one kernel (SiLU: onnxruntime's QuickGelu, torch's silu): one pass that "
        "reads x and writes the product", "QuickGelu", "silu", "Swish", parent="transcendental")
_family("gelu", "GELU in one kernel (onnxruntime's Gelu, fused from the erf form exporters write; torch's gelu): "
        "one pass that reads x and writes x * Phi(x), an erf per element", "Gelu", "FastGelu", "BiasGelu",
        "gelu", parent="transcendental")
_family("data_movement", "copies that rearrange elements (concat, transpose, slice, gather, pad, split)",
        "Concat", "Transpose", "Slice", "Split", "Gather", "GatherElements", "GatherND", "Pad", "Tile", "Expand",
        "DepthToSpace", "SpaceToDepth", "ScatterND", "ScatterElements", "ReverseSequence", "Compress", "TopK",
        "cat", "concat", "stack", "transpose", "permute", "slice", "select", "split", "split_with_sizes",
        "chunk", "unbind", "gather", "index", "index_select", "embedding", "constant_pad_nd", "pad",
        "reflection_pad2d", "replication_pad2d", "repeat", "pixel_shuffle", "pixel_unshuffle", "roll", "flip",
        "channel_shuffle", "narrow", "as_strided", "unfold", "topk", "sort", "clone", "contiguous")
_family("layout", "copies a runtime inserts to change a tensor's memory layout (onnxruntime's NCHWc reorders); "
                  "priced as data movement unless a profile says otherwise",
        "ReorderInput", "ReorderOutput", parent="data_movement")
_family("pooling", "windowed max / average pooling and global pooling",
        "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool", "MaxRoiPool",
        "max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "max_pool3d_with_indices",
        "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
        "adaptive_avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool2d", "pool",
        "global_pool")
_family("pooling_nd", "pooling over one or three spatial axes: runtimes' blocked 2-D pooling kernels do not "
        "apply (the family of a pooling node whose input is not 2-D)", parent="pooling")
_family("reduction", "reductions over axes (mean, sum, max, argmax, norms)",
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "CumSum", "Mean", "Sum", "amax", "amin",
        "argmax", "argmin", "norm", "linalg_vector_norm", "var", "var_mean", "std", "cumsum", "prod",
        "logsumexp", "all", "any")
_family("softmax", "softmax and log-softmax over an axis (max, exp-sum and scale passes)",
        "Softmax", "LogSoftmax", "Hardmax", "softmax", "_softmax", "log_softmax", "_log_softmax")
_family("normalization", "layer, instance and group normalization (mean and variance passes, then scale)",
        "LayerNormalization", "InstanceNormalization", "GroupNormalization", "LpNormalization", "RMSNormalization",
        "SimplifiedLayerNormalization", "SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "LRN",
        "MeanVarianceNormalization", "layer_norm", "native_layer_norm", "group_norm", "native_group_norm",
        "instance_norm", "local_response_norm", "rms_norm", "_fused_rms_norm")
_family("resize", "upsampling and resizing, nearest neighbour (a copy of each input element); priced on "
        "what it reads and writes", "Resize", "Upsample", "upsample_nearest1d", "upsample_nearest2d",
        "upsample_nearest3d", "_upsample_nearest_exact2d", "interpolate")
_family("resize_linear", "resizing that interpolates (linear, bilinear, trilinear, cubic; grid sampling): "
        "weights per output element, several times a nearest copy's time", "upsample_bilinear2d",
        "upsample_linear1d", "upsample_trilinear3d", "upsample_bicubic2d", "_upsample_bilinear2d_aa",
        "grid_sampler_2d", "GridSample", parent="resize")
_family("recurrent", "LSTM, GRU and RNN layers: a matrix product per time step and gate",
        "LSTM", "GRU", "RNN", "lstm", "gru", "rnn_tanh", "rnn_relu")


def _key(op: str) -> str:
    """`aten::relu_`, `com.microsoft::FusedConv`, `Relu` -> `relu_`, `fusedconv`, `relu` (the lookup key)."""
    return op.rsplit("::", 1)[-1].split(".", 1)[0].lower()


def _by_op() -> dict[str, str]:
    table: dict[str, str] = {}
    for f in FAMILIES.values():
        for op in f.ops:
            if op in table:
                raise AssertionError(f"op {op!r} is in families {table[op]} and {f.name}")
            table[op] = f.name
    return table


_BY_OP = _by_op()


def family_of(op: str) -> str | None:
    """The family op type `op` belongs to, or None where convcost has no formula for it."""
    key = _key(op)
    return _BY_OP.get(key) or (_BY_OP.get(key.rstrip("_")) if key.endswith("_") else None)


#: The `mode` of an ONNX Resize / Upsample (or an aten interpolate) that interpolates.
INTERPOLATING = frozenset({"linear", "bilinear", "trilinear", "cubic", "bicubic"})


def node_family(node: Node) -> str | None:
    """The family that prices `node`: its op type's, refined by its shapes (pooling over 1 or 3 axes)
    and attributes (a Resize that interpolates)."""
    family = family_of(node.op)
    if family == "pooling" and node.input_shapes and node.input_shapes[0] is not None \
            and len(node.input_shapes[0]) != 4:
        return "pooling_nd"
    if family == "resize" and str(node.attrs.get("mode", "nearest")).lower() in INTERPOLATING:
        return "resize_linear"
    return family


def lineage(family: str) -> list[str]:
    """`family`, then the family whose figures it falls back to, and so on."""
    return chain_of(FAMILIES, family)


@dataclass(frozen=True)
class NodeWork:
    """What one op does: bytes moved once each, multiply-accumulates (recurrent ops), and how many
    kernel calls it makes inside (a recurrent op calls one per time step and direction)."""

    bytes: int = 0
    macs: int = 0
    steps: int = 1


def element_bytes(dtype: str | None, analysis_dtype: str) -> int:
    """A float tensor takes the analysis dtype's size; any other its own (int64 indices stay 8)."""
    if dtype is None or dtype in FLOATS:
        return ELEMENT_BYTES.get(analysis_dtype, 4)
    return ELEMENT_BYTES.get(dtype, 4)


def _elements(shapes: list[Shape]) -> int:
    return sum(math.prod(s) for s in shapes)


WorkFormula = Callable[[Node, int], NodeWork]
_WORK: Registry[str, WorkFormula] = Registry("node work formula")


def _traffic(node: Node, bpe: int) -> NodeWork:
    """Every input (activations and constants) read once, every output written once."""
    known = [s for s in node.input_shapes if s is not None]
    return NodeWork(bytes=(_elements(known) + _elements(node.known_outputs())) * bpe)


for _name in ("elementwise", "transcendental", "swish", "gelu", "data_movement", "layout", "reduction", "softmax",
              "normalization", "resize", "resize_linear"):
    _WORK.add(_name, _traffic)


def _window(node: Node) -> int:
    """Elements in one pooling window: ONNX `kernel_shape`, a spec's `kernel`, aten's `kernel_size`."""
    for key in ("kernel_shape", "kernel", "kernel_size"):
        value = node.attrs.get(key)
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            return math.prod(value)
        if isinstance(value, int) and not isinstance(value, bool):
            out = node.output_shapes[0] if node.output_shapes else None
            return value ** (len(out) - 2 if out else 2)
    return 1


@_WORK.register("pooling", "pooling_nd")
def _pooling(node: Node, bpe: int) -> NodeWork:
    """A pool reads its input from memory once and writes its output: overlapping windows (a 3x3 / 2
    max pool's) read the rows they share from cache. In onnxruntime at one thread here a blocked
    3x3 / 2 max pool takes the same time as a 2x2 / 2 one on the same map (64x112x112: 141 us both;
    96x109x109: 200 and 197 us). Windows that skip elements (kernel < stride) read only theirs."""
    base = _traffic(node, bpe)
    window = _window(node)
    outputs = _elements(node.known_outputs())
    if window <= 1 or not outputs:
        return base
    known = [s for s in node.input_shapes if s is not None]
    reads = min(outputs * window, _elements(known)) if known else outputs * window
    return NodeWork(bytes=(reads + outputs) * bpe)


@_WORK.register("view", "shape")
def _nothing(node: Node, bpe: int) -> NodeWork:
    """No data moves: only the call itself costs time."""
    return NodeWork()


@_WORK.register("recurrent")
def _recurrent(node: Node, bpe: int) -> NodeWork:
    """ONNX LSTM/GRU/RNN: X (seq, batch, input), W (dirs, gates*hidden, input), R (dirs, gates*hidden,
    hidden): per step and direction a (batch x input) x (input x gates*hidden) product for the input
    and one for the hidden state: seq x dirs x batch x gates*hidden x (input + hidden) MACs.
    Torch's aten::lstm carries the same shapes in its weight list (x, then W and R per layer)."""
    shapes = [s for s in node.input_shapes if s is not None]
    base = _traffic(node, bpe)
    if len(shapes) < 3 or len(shapes[0]) != 3:
        return base
    x, w, r = shapes[0], shapes[1], shapes[2]
    if len(w) == 3 and len(r) == 3:  # ONNX: W (dirs, G*H, I), R (dirs, G*H, H)
        dirs, gh, inp = w
        hidden = r[2]
    elif len(w) == 2 and len(r) == 2:  # aten: W (G*H, I), R (G*H, H) of one direction
        gh, inp = w
        hidden, dirs = r[1], 1
    else:
        return base
    batch_first = bool(node.attrs.get("batch_first", False)) or node.attrs.get("layout") == 1
    seq, batch = (x[1], x[0]) if batch_first else (x[0], x[1])
    return NodeWork(bytes=base.bytes, macs=seq * dirs * batch * gh * (inp + hidden), steps=seq * dirs)


def traffic_bytes(node: Node, analysis_dtype: str = "float32") -> int:
    """Bytes a node moves reading every input and writing every output once (convs and matmuls too)."""
    return _traffic(node, element_bytes(node.dtype, analysis_dtype)).bytes


def node_work(node: Node, analysis_dtype: str = "float32") -> NodeWork | None:
    """The work of a node that is neither a conv nor a matmul; None where its op has no family."""
    family = node_family(node)
    if family is None:
        return None
    return _WORK[family](node, element_bytes(node.dtype, analysis_dtype))
