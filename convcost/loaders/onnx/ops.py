"""ONNX ops -> convcost ops: Conv and its relatives become `Conv`, matrix products `MatMul`.

One handler per op type, in a registry keyed by (domain, op type). Handlers only read
attributes and resolved shapes; MACs come from convcost.cost like every other format's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from convcost.ir.model import Conv, MatMul, Node, Shape, Uncounted
from convcost.ir.shapes import BadAttribute, ShapeError, make_conv, same_pads, split_pads
from convcost.loaders.onnx.dims import Dims, Rule, Shapes, show, static
from convcost.loaders.onnx.graph import Names, attrs, joined, node_label, op_key, quote, text
from convcost.loaders.onnx.weights import Weights
from convcost.util.errors import InputError, short
from convcost.util.registry import Registry

if TYPE_CHECKING:
    from onnx import NodeProto

MS = "com.microsoft"
INT8 = "int8"
_INT32 = 6


@dataclass(frozen=True)
class ConvForm:
    """Where a conv-like op keeps its operands, and what it computes."""

    x: int
    w: int
    bias: int | None
    transposed: bool = False
    dtype: str | None = None


CONV_FORMS: dict[tuple[str, str], ConvForm] = {
    ("", "Conv"): ConvForm(0, 1, 2),
    ("", "ConvTranspose"): ConvForm(0, 1, 2, transposed=True),
    ("", "QLinearConv"): ConvForm(0, 3, 8, dtype=INT8),
    ("", "ConvInteger"): ConvForm(0, 1, None, dtype=INT8),
    (MS, "FusedConv"): ConvForm(0, 1, 2),
}

#: Ops with multiply-accumulate work that convcost does not cost (listed in every output).
MAC_LIKE = frozenset({"LSTM", "GRU", "RNN", "DeformConv", "Attention", "MultiHeadAttention", "QAttention",
                      "GroupQueryAttention", "NhwcConv", "QGemm", "MatMulNBits", "DynamicQuantizeMatMul",
                      "MatMulIntegerToFloat", "QLinearConvTranspose", "ConvTransposeWithDynamicPads",
                      "DynamicQuantizeLSTM", "QOrderedMatMul", "Col2Im"})

#: Inputs of non-conv, non-matmul ops that hold learned parameters (counted in `other_params`).
PARAM_INPUTS: dict[str, tuple[int, ...] | None] = {
    "BatchNormalization": (1, 2),  # scale, bias; running mean/var are buffers, as in torch
    "InstanceNormalization": (1, 2),
    "LayerNormalization": (1, 2),
    "GroupNormalization": (1, 2),
    "RMSNormalization": (1,),
    "SkipLayerNormalization": (2, 3, 4),
    "PRelu": (1,),
    "Add": (0, 1), "Sub": (0, 1), "Mul": (0, 1), "Div": (0, 1),  # biases, layer scales, embeddings
    "Gather": (0,),  # embedding tables
    "Expand": (0,),  # class tokens
    "Sum": None, "Concat": None,  # None: every input
}
#: Ops a parameter may pass through before it is used (walked back to the stored tensor).
TRANSFORMS = frozenset({"Identity", "Cast", "Reshape", "Unsqueeze", "Squeeze", "Transpose", "Flatten",
                        "DequantizeLinear", "QuantizeLinear"})
FLOAT_TYPES = frozenset({1, 10, 11, 16})  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
#: Element types an op is priced in as the model stores them (FLOAT16, BFLOAT16; UINT8 and INT8 of
#: integer matmuls); FLOAT and DOUBLE take the analysis dtype.
OWN_DTYPES = {10: "float16", 16: "bfloat16", 2: INT8, 3: INT8}
MAX_NOTES = 5
UNKNOWN_CONVS = "convs whose shapes are unknown"
UNKNOWN_MATMULS = "matrix products whose shapes are unknown"
UNPARSED_EINSUMS = "Einsum equations convcost cannot parse"
EMPTY_CONVS = "convs with an empty operand"


class Notes:
    """Warnings grouped by reason, so 10,000 identical problems read as one line plus a count."""

    def __init__(self) -> None:
        self.groups: dict[str, list[str]] = {}
        self.counts: dict[str, int] = {}

    def add(self, reason: str, message: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        group = self.groups.setdefault(reason, [])
        if len(group) < MAX_NOTES:
            group.append(message)

    def lines(self) -> list[str]:
        out: list[str] = []
        for reason, messages in self.groups.items():
            out.extend(messages)
            extra = self.counts[reason] - len(messages)
            if extra:
                out.append(f"... and {extra} more: {reason}")
        return out


@dataclass
class Ctx:
    """What handlers read (shapes, constants, weights) and fill in (ops, notes)."""

    source: str
    shapes: Shapes
    types: dict[str, int]
    const: set[str]
    made_by: dict[str, NodeProto]
    weights: Weights
    #: tensor name -> the node that makes it (any tensor, not only constants)
    producer: dict[str, NodeProto] = field(default_factory=dict)
    names: Names = field(default_factory=Names)
    convs: list[Conv] = field(default_factory=list)
    matmuls: list[MatMul] = field(default_factory=list)
    #: every node walked, convs and matmuls included (Model.nodes)
    nodes: list[Node] = field(default_factory=list)
    uncosted: dict[str, int] = field(default_factory=dict)
    uncounted: list[Uncounted] = field(default_factory=list)
    notes: Notes = field(default_factory=Notes)
    #: constant tensors counted as conv/matmul params (not again as other params)
    covered: set[str] = field(default_factory=set)
    #: conv geometry -> the conv it makes (name and weight filled in per node)
    geometry: dict[object, Conv] = field(default_factory=dict)
    #: the -i values as the user wrote them ("" without -i): errors an input size can cause name them
    given: str = ""

    def skip(self, node: NodeProto, index: int, why: str, reason: str) -> None:
        """An op that costs MACs but cannot be counted: say so, and list it as uncosted."""
        self.uncosted[node.op_type] = self.uncosted.get(node.op_type, 0) + 1
        label = joined(self.names.prefix, node_label(node, index))  # prefixed inside a control-flow body
        self.uncounted.append(Uncounted(label, node.op_type, why))
        self.notes.add(reason, f"{node.op_type} {quote(label)} not counted: {why}")

    def invalid(self, node: NodeProto, index: int, why: str, input_related: bool = True) -> NoReturn:
        """A node onnxruntime refuses to run: exit 2 naming it. When -i was given and the input's
        size can be the cause (`input_related`), say that -i is what the model likely cannot take."""
        hint = f" ({self.given}: likely an input size the model cannot take)" if self.given and input_related else ""
        label = joined(self.names.prefix, node_label(node, index))
        raise InputError(f"invalid model: {text(node.op_type)} {quote(label)}: {why}{hint}",
                         self.source)

    def dims(self, node: NodeProto, i: int) -> Dims | None:
        return self.shapes.get(node.input[i]) if i < len(node.input) and node.input[i] else None

    def numel_if_const(self, name: str) -> int:
        """Elements of a constant operand (a parameter), 0 for an activation."""
        if not name or name not in self.const:
            return 0
        shape = static(self.shapes.get(name))  # a scalar's () is static
        if shape is None:
            return 0
        self.cover(name)
        return math.prod(shape)

    def cover(self, name: str) -> None:
        """Mark a constant (and what it was made from) as counted by a conv or matmul."""
        seen = 0
        while name and name not in self.covered and seen < 64:
            self.covered.add(name)
            node = self.made_by.get(name)
            if node is None or node.op_type not in TRANSFORMS:
                break
            for other in node.input[1:]:
                self.covered.add(other)
            name = node.input[0] if node.input else ""
            seen += 1


# --- convolutions ----------------------------------------------------------------------------


def _ints(a: dict[str, object], key: str, default: list[int]) -> list[int]:
    value = a.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise BadAttribute(f"attribute {key} must be a list of integers, got {short(value)}")
    return list(value) if value else default


def _int(a: dict[str, object], key: str, default: int) -> int:
    value = a.get(key, default)
    if not isinstance(value, int):  # a STRING or FLOAT attribute where ONNX says INT
        raise BadAttribute(f"attribute {key} must be an integer, got {short(value)}")
    return value


def build_conv(node: NodeProto, name: str, form: ConvForm, x: Shape, w: Shape, bias: bool) -> Conv:
    """The `Conv` an ONNX conv node computes, with every attribute applied.

    Raises ShapeError (BadAttribute when the attributes are wrong whatever the input) for what
    onnxruntime refuses to run."""
    a = attrs(node)
    rank = len(w) - 2
    if rank < 1:
        raise BadAttribute(f"weight shape {list(w)} has no spatial axes")
    if len(x) != rank + 2:
        raise ShapeError(f"input {list(x)} does not match a {rank}-D weight {list(w)}")
    kernel = _ints(a, "kernel_shape", list(w[2:]))
    if kernel != list(w[2:]):
        raise BadAttribute(f"kernel_shape {kernel} disagrees with the weight's {list(w[2:])}")
    strides = _ints(a, "strides", [1] * rank)
    dilations = _ints(a, "dilations", [1] * rank)
    group = _int(a, "group", 1)
    auto_pad = str(a.get("auto_pad", "NOTSET")) or "NOTSET"
    pads = _ints(a, "pads", [0] * (2 * rank))
    out_pad = _ints(a, "output_padding", [0] * rank)
    if group < 1:
        raise BadAttribute(f"group must be positive, got {group}")
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise BadAttribute(f"unknown auto_pad {short(auto_pad)} (NOTSET, SAME_UPPER, SAME_LOWER or VALID)")
    for label, values, n, low in (("strides", strides, rank, 1), ("dilations", dilations, rank, 1),
                                  ("pads", pads, 2 * rank, 0), ("output_padding", out_pad, rank, 0)):
        if len(values) != n or any(v < low for v in values):
            raise BadAttribute(f"{label} {values} must be {n} values >= {low} for a {rank}-D conv")
    spatial = list(x[2:])
    if not form.transposed:
        if w[1] * group != x[1]:
            raise ShapeError(f"weight {list(w)} with group={group} expects {w[1] * group} input channels, "
                             f"input has {x[1]}")
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            pads = list(same_pads(spatial, kernel, strides, dilations, upper=auto_pad == "SAME_UPPER"))
        elif auto_pad == "VALID":
            pads = [0] * (2 * rank)
        return make_conv(name, "Conv", x, w[0], kernel, strides, pads, dilations, group, bias, None,
                         form.dtype)

    if w[0] != x[1]:
        raise ShapeError(f"weight {list(w)} expects {w[0]} input channels, input has {x[1]}")
    target = _ints(a, "output_shape", [])
    if target and (len(target) != rank or any(t < 1 for t in target)):  # spatial axes only, as onnx says
        raise BadAttribute(f"output_shape {target} must be {rank} positive values, one per spatial axis")
    if not target and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = [s * st for s, st in zip(spatial, strides, strict=True)]
    if auto_pad == "VALID" and not target:
        pads = [0] * (2 * rank)
    c_out = w[1] * group
    if not target:
        return make_conv(name, "ConvTranspose", x, c_out, kernel, strides, pads, dilations, group, bias,
                         out_pad, form.dtype)
    reach = [(kernel[i] - 1) * dilations[i] + 1 for i in range(rank)]
    # onnxruntime's rule: the input size output_shape implies, (out - reach) // stride + 1, must not
    # exceed the real one; up to stride - 1 pixels past the natural size read as negative padding.
    most = [strides[i] * spatial[i] + reach[i] - 1 for i in range(rank)]
    if any(t > m for t, m in zip(target, most, strict=True)):
        raise ShapeError(f"output_shape {target} is inconsistent with its input {spatial}, strides {strides}, "
                         f"kernel {kernel} and dilations {dilations}: at most {most} fits")
    natural = [strides[i] * (spatial[i] - 1) + out_pad[i] + reach[i] for i in range(rank)]
    pads = list(split_pads([n - t for n, t in zip(natural, target, strict=True)], auto_pad == "SAME_UPPER"))
    # Check everything else at non-negative pads; MACs depend only on the input, so the requested
    # shape (and the pads that give exactly it, even negative ones) is kept.
    conv = make_conv(name, "ConvTranspose", x, c_out, kernel, strides, [max(p, 0) for p in pads], dilations,
                     group, bias, out_pad, form.dtype)
    return _copy(conv, padding=tuple(pads), output_shape=(x[0], c_out, *target))


def _conv_operands(shapes: Shapes, inputs: Sequence[str], form: ConvForm) -> tuple[Shape | None, Shape | None,
                                                                                   bool]:
    n = len(inputs)
    x = static(shapes.get(inputs[form.x])) if form.x < n and inputs[form.x] else None
    w = static(shapes.get(inputs[form.w])) if form.w < n and inputs[form.w] else None
    return x, w, form.bias is not None and form.bias < n and bool(inputs[form.bias])


def _own_dtype(ctx: Ctx, *names: str) -> str | None:
    """The dtype an op's operands are stored in, where it is not the analysis's (see OWN_DTYPES)."""
    for name in names:
        t = ctx.types.get(name)
        if t in OWN_DTYPES:
            return OWN_DTYPES[t]
    return None


def _quantized_input(ctx: Ctx, name: str) -> bool:
    node = ctx.producer.get(name)
    while node is not None and node.op_type in ("Identity", "Transpose"):
        node = ctx.producer.get(node.input[0])
    return node is not None and node.op_type == "DequantizeLinear" and ctx.types.get(node.input[0]) in (2, 3)


Handler = Callable[[Ctx, "NodeProto", int], None]
#: The ops convcost costs, keyed by (domain, op type): each handler records its node's convs or matmuls.
HANDLERS: Registry[tuple[str, str], Handler] = Registry("ONNX op handler")
#: Our output-shape rules for ops onnx's inference cannot shape (contrib ops), keyed likewise.
RULES: Registry[tuple[str, str], Rule] = Registry("ONNX shape rule")


@HANDLERS.register(*CONV_FORMS)
def handle_conv(ctx: Ctx, node: NodeProto, index: int) -> None:
    key_op = op_key(node)
    form = CONV_FORMS[key_op]
    inputs = tuple(node.input)
    x, w, bias = _conv_operands(ctx.shapes, inputs, form)
    if x is None or w is None:
        which, dims = ("input", ctx.dims(node, form.x)) if x is None else ("weight", ctx.dims(node, form.w))
        why = f"{which} shape {show(dims)} is not static" if dims is not None else f"{which} shape is unknown"
        ctx.skip(node, index, why + " (see the warnings about ops before it)", UNKNOWN_CONVS)
        return
    if 0 in x or 0 in w:  # onnxruntime runs an empty conv (no work); the IR has no empty Conv
        ctx.skip(node, index, f"an operand is empty (input {list(x)}, weight {list(w)})", EMPTY_CONVS)
        return
    # Real models repeat a handful of conv geometries many times: build each once.
    key = (key_op, x, w, bias, b"".join([a.SerializeToString() for a in node.attribute]))
    template = ctx.geometry.get(key)
    if template is None:
        try:
            template = build_conv(node, "", form, x, w, bias)
        except ShapeError as exc:
            ctx.invalid(node, index, str(exc), input_related=not isinstance(exc, BadAttribute))
        ctx.geometry[key] = template
    name = ctx.names.take(node, index)
    dtype = template.dtype
    # QDQ models (DequantizeLinear of int8 weights and activations) run as int8 convs.
    if dtype is None and _quantized_input(ctx, inputs[form.w]) and _quantized_input(ctx, inputs[0]):
        dtype = INT8
    if dtype is None:  # a float16 / bfloat16 model
        dtype = _own_dtype(ctx, inputs[form.x], inputs[form.w])
    inferred = static(ctx.shapes.get(node.output[0]))
    if inferred is not None and inferred != template.output_shape:
        ctx.notes.add("conv output shapes that differ from ONNX inference",
                      f"{node.op_type} {quote(name)}: computed output {list(template.output_shape)} differs "
                      f"from ONNX shape inference {list(inferred)}; MACs use the computed shape")
    for extra in inputs:  # weight and bias are params; quantization scales and zero points are not
        if extra in ctx.const:
            ctx.cover(extra)
    ctx.convs.append(_copy(template, name=name, dtype=dtype, weight=ctx.weights.loader(inputs[form.w]),
                           origin=node.output[0] if node.output else None))


def _copy(template: Conv, **changes: object) -> Conv:
    """`dataclasses.replace` without re-running `__init__` (7x faster; it adds up over 100k convs)."""
    conv = object.__new__(Conv)
    conv.__dict__.update(template.__dict__)
    conv.__dict__.update(changes)
    return conv


@RULES.register(*CONV_FORMS)
def conv_rule(node: NodeProto, shapes: Shapes, types: dict[str, int]) -> list[tuple[Dims, int]] | None:
    """Our shape rule for conv-like ops onnx cannot infer (contrib domains)."""
    form = CONV_FORMS[op_key(node)]
    x, w, bias = _conv_operands(shapes, tuple(node.input), form)
    if x is None or w is None:
        return None
    try:
        conv = build_conv(node, "", form, x, w, bias)
    except ShapeError:
        return None
    elem = _INT32 if node.op_type == "ConvInteger" else types.get(node.input[form.x], 1)
    if node.op_type == "QLinearConv" and len(node.input) > 7:
        elem = types.get(node.input[7], elem)
    return [(conv.output_shape, elem)]


# --- matrix products -------------------------------------------------------------------------


def _broadcast(a: Shape, b: Shape) -> Shape | None:
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b, strict=True):
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y))
    return tuple(out)


def _matmul(ctx: Ctx, node: NodeProto, index: int, ia: int, ib: int, trans_a: bool = False,
            trans_b: bool = False, extra: tuple[int, ...] = ()) -> None:
    a, b = static(ctx.dims(node, ia)), static(ctx.dims(node, ib))
    if a is None or b is None:
        ctx.skip(node, index, "operand shapes are unknown or not static", UNKNOWN_MATMULS)
        return
    if not a or not b:  # MatMul's operands have rank >= 1 (Gemm's 2); onnxruntime refuses a scalar
        ctx.invalid(node, index, f"operands {list(a)} and {list(b)}: a scalar cannot be matrix-multiplied",
                    input_related=False)
    if trans_a and len(a) >= 2:
        a = (*a[:-2], a[-1], a[-2])
    if trans_b and len(b) >= 2:
        b = (*b[:-2], b[-1], b[-2])
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    batch = _broadcast(a2[:-2], b2[:-2])
    if batch is None or a2[-1] != b2[-2]:
        ctx.invalid(node, index, f"operands {list(a)} and {list(b)} do not multiply")
    params = sum(ctx.numel_if_const(node.input[i]) for i in (ia, ib, *extra) if i < len(node.input))
    x, y = node.input[ia], node.input[ib]
    dtype = INT8 if _quantized_input(ctx, x) and _quantized_input(ctx, y) else _own_dtype(ctx, x, y)
    ctx.matmuls.append(MatMul(ctx.names.take(node, index), node.op_type, batch=math.prod(batch), m=a2[-2],
                              k=a2[-1], n=b2[-1], params=params, dtype=dtype))


@HANDLERS.register(("", "MatMul"), ("", "MatMulInteger"))
def handle_matmul(ctx: Ctx, node: NodeProto, index: int) -> None:
    _matmul(ctx, node, index, 0, 1)


@HANDLERS.register(("", "QLinearMatMul"))
def handle_qlinear_matmul(ctx: Ctx, node: NodeProto, index: int) -> None:
    _matmul(ctx, node, index, 0, 3)


@HANDLERS.register(("", "Gemm"), (MS, "FusedGemm"))
def handle_gemm(ctx: Ctx, node: NodeProto, index: int) -> None:
    a = attrs(node)
    _matmul(ctx, node, index, 0, 1, bool(a.get("transA", 0)), bool(a.get("transB", 0)), extra=(2,))


@HANDLERS.register((MS, "FusedMatMul"))
def handle_fused_matmul(ctx: Ctx, node: NodeProto, index: int) -> None:
    a = attrs(node)
    if a.get("transBatchA") or a.get("transBatchB"):
        ctx.skip(node, index, "transBatchA/transBatchB are not supported", "unsupported FusedMatMul")
        return
    _matmul(ctx, node, index, 0, 1, bool(a.get("transA", 0)), bool(a.get("transB", 0)))


def _einsum_terms(equation: str, ranks: list[int]) -> tuple[list[str], str] | None:
    """Operand and output subscripts with '...' expanded to one private letter per axis."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        return None
    ell = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks, strict=True) if "..." in t),
              default=0)
    private = [chr(0x3B1 + i) for i in range(ell)]  # greek letters never clash with a-zA-Z

    def expand(term: str, rank: int) -> str:
        if "..." not in term:
            return term
        n = rank - len(term.replace("...", ""))
        return term.replace("...", "".join(private[ell - n:]))

    expanded = [expand(t, r) for t, r in zip(terms, ranks, strict=True)]
    if any(len(t) != r for t, r in zip(expanded, ranks, strict=True)):
        return None
    if arrow:
        out = rhs.replace("...", "".join(private))
    else:
        letters = "".join(expanded)
        out = "".join(private) + "".join(sorted(c for c in set(letters) if letters.count(c) == 1
                                               and c not in private))
    return expanded, out


@HANDLERS.register(("", "Einsum"))
def handle_einsum(ctx: Ctx, node: NodeProto, index: int) -> None:
    """Pairwise, left to right: batch letters (in both and kept), m, n (in one and kept), k (summed).

    Letters in only one operand and not kept are summed first (additions, no MACs).
    """
    shapes = [static(ctx.dims(node, i)) for i in range(len(node.input))]
    if any(s is None for s in shapes):
        ctx.skip(node, index, "operand shapes are unknown or not static", UNKNOWN_MATMULS)
        return
    dims = [s for s in shapes if s is not None]
    parsed = _einsum_terms(str(attrs(node).get("equation", "")), [len(s) for s in dims])
    if parsed is None:
        ctx.skip(node, index, "cannot parse its equation", UNPARSED_EINSUMS)
        return
    terms, out = parsed
    size: dict[str, int] = {}
    for term, shape in zip(terms, dims, strict=True):
        for c, d in zip(term, shape, strict=True):
            size[c] = max(size.get(c, 1), d)
    if len(terms) < 2:
        return  # a transpose, trace or sum: no multiplications
    params = sum(ctx.numel_if_const(x) for x in node.input)
    dtype = _own_dtype(ctx, *node.input)
    name = ctx.names.take(node, index)
    left = terms[0]
    for step, right in enumerate(terms[1:], start=1):
        later = set(out).union(*terms[step + 1:])
        both = set(left) & set(right)
        batch = [c for c in both if c in later]
        k = [c for c in both if c not in later]
        m = [c for c in set(left) - both if c in later]
        n = [c for c in set(right) - both if c in later]

        def prod(cs: list[str]) -> int:
            return math.prod(size[c] for c in cs)

        ctx.matmuls.append(MatMul(name if step == 1 else f"{name}#{step}", "Einsum", batch=prod(batch),
                                  m=prod(m), k=prod(k), n=prod(n), params=params if step == 1 else 0,
                                  dtype=dtype))
        left = "".join(batch + m + n)


COSTED = frozenset(op for _, op in HANDLERS)


# --- our shape rules where onnx inference gives up ---------------------------------------------


@RULES.register(*((MS, op) for op in ("Gelu", "FastGelu", "BiasGelu", "QuickGelu", "BiasAdd",
                                     "SkipLayerNormalization", "BiasDropout")))
def _same_as_input(node: NodeProto, shapes: Shapes, types: dict[str, int]) -> list[tuple[Dims, int]] | None:
    dims = shapes.get(node.input[0]) if node.input else None
    return [(dims, types.get(node.input[0], 1))] if dims is not None else None


@RULES.register((MS, "FusedGemm"))
def _gemm_rule(node: NodeProto, shapes: Shapes, types: dict[str, int]) -> list[tuple[Dims, int]] | None:
    a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    at = attrs(node)
    m = a[1] if at.get("transA") else a[0]
    n = b[0] if at.get("transB") else b[1]
    return [((m, n), types.get(node.input[0], 1))]


#: Contrib ops our rules cover: not "unknown" even though onnx has no schema for them.
KNOWN_CONTRIB = frozenset(RULES) | frozenset(HANDLERS)

