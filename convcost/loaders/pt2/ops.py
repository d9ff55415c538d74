"""aten calls of an exported graph as convcost ops: convs and every form of matrix product.

An exported graph holds aten calls at one of two levels: the default training IR keeps
`aten.conv2d`, `aten.linear`, `aten.matmul`, `aten.einsum`, `aten.scaled_dot_product_attention`;
after `run_decompositions()` they are `aten.convolution`, `aten.addmm`/`mm`/`bmm` on permuted
weights, and attention as its two `bmm`s. Both are read. Arguments are named by the op's schema
and those left at their default are omitted, so the handlers read them by name with torch's
defaults. Shapes come from the graph's tensor metadata (`Graph.shape`), never from running anything.

Matrix products are counted as torch's CPU kernels compute them, so that the MACs equal
`FlopCounterMode` and the TorchScript loader: `linear`/`matmul` fold leading dims into `m` where
torch folds them, a two-operand `einsum` is the one `bmm` torch reduces it to.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from convcost.ir.model import Conv, MatMul, Shape, Uncounted, WeightLoader
from convcost.ir.shapes import ShapeError, make_conv
from convcost.util.errors import InputError
from convcost.util.registry import Registry

UNNAMED = {"conv": "convolution", "matmul": "matmul", "attention": "attention"}

#: Ops that only re-view a tensor: a weight seen through them is still that parameter (as the
#: TorchScript loader finds a parameter behind a view by its memory).
VIEW_OPS = frozenset({"aten.t", "aten.permute", "aten.transpose", "aten.view", "aten._unsafe_view", "aten.reshape",
                      "aten.expand", "aten.unsqueeze", "aten.squeeze", "aten.alias", "aten.detach", "aten.numpy_T",
                      "aten.mT", "aten.adjoint", "aten.contiguous"})

#: Ops whose names say they multiply weights; those without a handler are listed as uncosted.
_MULTIPLIES = re.compile(r"conv(?!ert)|linear|matmul|(^|[._])mm|einsum|lstm|gru|rnn|attention")
#: Names that match the above but multiply nothing (interpolation, dtype conversion).
_NOT_MULTIPLIES = re.compile(r"upsample|interpolate|grid_sampler")


def multiplies(op: str) -> bool:
    """Whether an op the loader has no handler for looks like a conv or matrix product."""
    return bool(_MULTIPLIES.search(op)) and not _NOT_MULTIPLIES.search(op)


def op_name(target: str) -> tuple[str, str]:
    """`torch.ops.aten.conv2d.padding` -> ("aten.conv2d", "padding"); `torch.ops.higher_order.cond` ->
    ("torch.cond", ""); other targets unchanged."""
    parts = target.split(".")
    if len(parts) >= 5 and parts[:2] == ["torch", "ops"]:
        return ".".join(parts[2:-1]), parts[-1]
    if len(parts) == 4 and parts[:3] == ["torch", "ops", "higher_order"]:  # torch.cond, while_loop, map
        return f"torch.{parts[3]}", ""
    return target, ""


# --- arguments -------------------------------------------------------------------------------

def tensor_ref(arg: object) -> str | None:
    """The tensor name an argument refers to (`as_tensor`, `as_optional_tensor`), else None."""
    if not isinstance(arg, dict):
        return None
    ref = arg.get("as_tensor")
    if ref is None and isinstance(arg.get("as_optional_tensor"), dict):
        ref = arg["as_optional_tensor"].get("as_tensor")
    if isinstance(ref, dict) and isinstance(ref.get("name"), str):
        return str(ref["name"])
    return None


def tensor_refs(arg: object) -> list[str] | None:
    if not isinstance(arg, dict) or not isinstance(arg.get("as_tensors"), list):
        return None
    names = [t.get("name") for t in arg["as_tensors"] if isinstance(t, dict)]
    return [n for n in names if isinstance(n, str)]


@dataclass
class Node:
    """One call: op, overload, schema-named arguments, output tensors, module path, node name."""

    op: str
    overload: str
    args: dict[str, Any]
    outputs: list[str]
    module: str
    name: str

    def arg(self, name: str, default: Any = None) -> Any:
        return self.args.get(name, default)


# --- the graph being read ----------------------------------------------------------------------

@dataclass
class Graph:
    """What handlers see: shapes and dtypes of named tensors, which are parameters, and the output."""

    shape: Callable[[str], Shape | None]
    dtype: Callable[[str], str | None]
    sym_int: Callable[[object], int | None]
    #: Placeholder name -> parameter FQN (`p_conv1_weight` -> `conv1.weight`).
    params: dict[str, str]
    param_numel: dict[str, int]
    #: (parameter FQN, its shape) -> a lazy reader of its stored values, if the archive has them.
    weights: Callable[[str, Shape], WeightLoader | None]
    #: Tensor -> the tensor it is a view of.
    views: dict[str, str] = field(default_factory=dict)
    convs: list[Conv] = field(default_factory=list)
    matmuls: list[MatMul] = field(default_factory=list)
    uncounted: list[Uncounted] = field(default_factory=list)
    uncosted: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    source: str = ""

    def param(self, tensor: str | None) -> str | None:
        """The parameter FQN a tensor is (directly or through views), else None."""
        seen = 0
        while tensor is not None and seen < 10_000:
            if tensor in self.params:
                return self.params[tensor]
            tensor = self.views.get(tensor)
            seen += 1
        return None

    def base_name(self, kind: str, node: Node, weight: str | None) -> str:
        """The layer's name: its weight's parameter name without `.weight` (as `named_modules()` and
        the TorchScript loader name it), else the module running the op, else `convolution`/`matmul`."""
        fqn = self.param(weight)
        if fqn:
            return fqn[: -len(".weight")] if fqn.endswith(".weight") else fqn
        return node.module or UNNAMED[kind]

    def name(self, base: str) -> str:
        """A call index for a layer called again: `block.conv`, `block.conv#1`..."""
        n = self.calls[base]
        self.calls[base] += 1
        return base if n == 0 else f"{base}#{n}"

    def used_params(self, *tensors: str | None) -> int:
        found = {self.param(t) for t in tensors} - {None}
        return sum(self.param_numel.get(p, 0) for p in found if p)

    def skip(self, node: Node, why: str, uncosted: bool = True) -> None:
        """A conv or matmul the loader found but cannot count: `check` fails on it, and its op is
        listed as not costed (unless the caller already counted it there)."""
        self.uncounted.append(Uncounted(self.label(node), node.op, why))
        if uncosted:
            self.uncosted[node.op] += 1

    def label(self, node: Node) -> str:
        """What to call an op that is not counted: its layer name as if it were, else its graph node."""
        refs = [tensor_ref(node.arg("weight"))] + [tensor_ref(a) for a in node.args.values()]
        fqn = next((p for t in refs if (p := self.param(t))), None)
        if fqn:
            return fqn[: -len(".weight")] if fqn.endswith(".weight") else fqn
        return node.module or node.name

    def ints(self, node: Node, name: str, rank: int, default: int) -> tuple[int, ...] | None:
        """An int or int-list argument broadcast to `rank` values; None if symbolic and unresolved."""
        arg = node.arg(name)
        if arg is None:
            return (default,) * rank
        values: list[int | None]
        if isinstance(arg, dict) and "as_int" in arg:
            values = [arg["as_int"]]
        elif isinstance(arg, dict) and "as_ints" in arg:
            values = list(arg["as_ints"])
        elif isinstance(arg, dict) and "as_sym_int" in arg:
            values = [self.sym_int(arg["as_sym_int"])]
        elif isinstance(arg, dict) and "as_sym_ints" in arg:
            values = [self.sym_int(v) for v in arg["as_sym_ints"]]
        else:
            raise InputError(f"node {node.name} ({node.op}): argument {name} is not an int or int list", self.source)
        if any(v is None for v in values):
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise InputError(f"node {node.name} ({node.op}): argument {name} holds a non-integer", self.source)
        ints = [int(v) for v in values if v is not None]
        if len(ints) == 1:
            return tuple(ints * rank)
        if len(ints) != rank:
            raise InputError(f"node {node.name} ({node.op}): {name} has {len(ints)} values for a {rank}-D conv",
                             self.source)
        return tuple(ints)


Handler = Callable[[Graph, Node], None]

#: aten op (without overload) -> how it counts.
HANDLERS: Registry[str, Handler] = Registry("torch.export op handler")


# --- convolutions ------------------------------------------------------------------------------

def _shape_or_skip(g: Graph, node: Node, tensor: str | None, role: str) -> Shape | None:
    shape = g.shape(tensor) if tensor is not None else None
    if shape is None:
        g.skip(node, f"the size of its {role} is symbolic and convcost cannot evaluate it (a data-dependent size)")
    return shape


def _conv(transposed: bool | None) -> Handler:
    """A conv op; `transposed` None reads the op's own `transposed` argument (aten.convolution)."""

    def handle(g: Graph, node: Node) -> None:
        x_name = tensor_ref(node.arg("input", node.arg("self")))
        w_name = tensor_ref(node.arg("weight"))
        if x_name is None or w_name is None:
            raise InputError(f"node {node.name} ({node.op}): no input or weight tensor", g.source)
        x = _shape_or_skip(g, node, x_name, "input")
        w = _shape_or_skip(g, node, w_name, "weight") if x is not None else None
        if x is None or w is None:
            return
        is_transposed = bool(node.arg("transposed", {}).get("as_bool", False)) if transposed is None else transposed
        rank = len(w) - 2
        name = g.name(g.base_name("conv", node, w_name))
        where = f"layer {name} (node {node.name}, {node.op})"
        if rank < 1:
            raise InputError(f"{where}: weight of shape {list(w)} is not a conv weight", g.source)
        unbatched = len(x) == rank + 1
        batched = (1, *x) if unbatched else x
        groups_arg = g.ints(node, "groups", 1, 1)
        stride = g.ints(node, "stride", rank, 1)
        dilation = g.ints(node, "dilation", rank, 1)
        out_pad = g.ints(node, "output_padding", rank, 0) if is_transposed else (0,) * rank
        padding_arg = node.arg("padding")
        text_pad = padding_arg.get("as_string") if isinstance(padding_arg, dict) else None
        padding = None if text_pad is not None else g.ints(node, "padding", rank, 0)
        if None in (groups_arg, stride, dilation, out_pad) or (text_pad is None and padding is None):
            g.skip(node, "a symbolic stride, padding, dilation or groups argument")
            return
        assert groups_arg is not None and stride is not None and dilation is not None and out_pad is not None
        groups = groups_arg[0]
        if text_pad is not None:
            pads = _text_padding(text_pad, w[2:], stride, dilation, where, g.source)
        else:
            assert padding is not None
            pads = padding + padding
        channels = w[0] if is_transposed else w[1] * groups
        if len(batched) != rank + 2 or batched[1] != channels:
            raise InputError(f"{where}: input of shape {list(x)} does not fit weight {list(w)} with groups={groups} "
                             "(rank or channels)", g.source)
        bias = tensor_ref(node.arg("bias")) is not None
        try:
            conv = make_conv(name, "ConvTranspose" if is_transposed else "Conv", batched,
                             out_channels=w[1] * groups if is_transposed else w[0], kernel=w[2:], stride=stride,
                             padding=pads, dilation=dilation, groups=groups, bias=bias,
                             output_padding=out_pad if is_transposed else None, dtype=_priced_dtype(g.dtype(x_name)))
        except ShapeError as exc:
            raise InputError(f"{where}: {exc}", g.source) from None
        recorded = g.shape(node.outputs[0]) if node.outputs else None
        expected = conv.output_shape[1:] if unbatched else conv.output_shape
        if recorded is not None and recorded != expected:
            raise InputError(f"{where}: the archive records an output of shape {list(recorded)}, but the conv's "
                             f"attributes give {list(expected)}: the archive is inconsistent", g.source)
        # Only a weight that is the parameter itself (not a view of it) is the stored tensor.
        fqn = g.params.get(w_name)
        loader = g.weights(fqn, w) if fqn else None
        g.convs.append(conv.with_changes(weight=loader) if loader else conv)

    return handle


def _text_padding(text: str, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int], where: str,
                  source: str) -> tuple[int, ...]:
    """`padding="valid"` or `"same"` as begin and end pads; torch puts the odd pixel at the end."""
    rank = len(kernel)
    if text == "valid":
        return (0,) * (2 * rank)
    if text != "same":
        raise InputError(f"{where}: padding {text!r} is neither 'same' nor 'valid'", source)
    if any(s != 1 for s in stride):
        raise InputError(f"{where}: padding='same' needs stride 1, got {list(stride)}", source)
    totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    return tuple([t // 2 for t in totals] + [t - t // 2 for t in totals])


def _priced_dtype(dtype: str | None) -> str | None:
    """A conv's own dtype where it is not the default float32 (fp16 and bf16 exports)."""
    return dtype if dtype in ("float16", "bfloat16") else None


for _op in ("aten.conv1d", "aten.conv2d", "aten.conv3d", "aten.mkldnn_convolution", "aten.cudnn_convolution"):
    HANDLERS.add(_op, _conv(False))
for _op in ("aten.conv_transpose1d", "aten.conv_transpose2d", "aten.conv_transpose3d",
            "aten.cudnn_convolution_transpose"):
    HANDLERS.add(_op, _conv(True))
for _op in ("aten.convolution", "aten._convolution", "aten.convolution_overrideable"):
    HANDLERS.add(_op, _conv(None))


# --- matrix products ---------------------------------------------------------------------------

def record_matmul(g: Graph, node: Node, dims: tuple[int, int, int, int], x: str | None, y: str | None,
                  extra: Sequence[str | None] = (), base: str | None = None) -> None:
    """One product of `batch` (m x k) @ (k x n). Parameters among the operands make it `Linear`; it
    is named after `y`'s parameter, else `x`'s (as the TorchScript loader names it)."""
    batch, m, k, n = dims
    params = g.used_params(x, y, *extra)
    name = g.name(base or g.base_name("matmul", node, y if g.param(y) else x))
    g.matmuls.append(MatMul(name, "Linear" if params else "MatMul", batch, m, k, n, params))


def matmul_dims(a: Shape, b: Shape) -> tuple[int, int, int, int] | None:
    """batch, m, k, n of `torch.matmul(a, b)` as torch computes it (mm, mv, dot or bmm)."""
    if not a or not b:
        return None
    k = a[-1]
    if len(a) == 1 and len(b) == 1:
        return 1, 1, k, 1
    if len(b) == 1:  # mv, leading dims of a folded into m
        return (1, math.prod(a[:-1]), k, 1) if b[0] == k else None
    if b[-2] != k:
        return None
    n = b[-1]
    if len(a) == 1:  # (k) @ (..., k, n)
        return math.prod(b[:-2]), 1, b[-2], n
    if len(b) == 2:  # mm, leading dims of a folded into m
        return 1, math.prod(a[:-1]), k, n
    batch_a, batch_b = a[:-2], b[:-2]
    width = max(len(batch_a), len(batch_b))
    batch_a = (1,) * (width - len(batch_a)) + batch_a
    batch_b = (1,) * (width - len(batch_b)) + batch_b
    return math.prod(max(p, q) for p, q in zip(batch_a, batch_b, strict=True)), a[-2], k, n


def _product(x_arg: str, y_arg: str, extra: tuple[str, ...] = (), linear: bool = False) -> Handler:
    """A two-operand product: `linear` takes the weight as (n, k); others (..., k, n) or (k,)."""

    def handle(g: Graph, node: Node) -> None:
        x, y = tensor_ref(node.arg(x_arg)), tensor_ref(node.arg(y_arg))
        if x is None or y is None:
            raise InputError(f"node {node.name} ({node.op}): missing operand {x_arg} or {y_arg}", g.source)
        a = _shape_or_skip(g, node, x, x_arg)
        b = _shape_or_skip(g, node, y, y_arg) if a is not None else None
        if a is None or b is None:
            return
        if linear:
            if len(b) != 2 or not a or a[-1] != b[1]:
                raise InputError(f"node {node.name} ({node.op}): input {list(a)} does not fit weight {list(b)}",
                                 g.source)
            b = (b[1], b[0])
        dims = matmul_dims(a, b)
        if dims is None:
            raise InputError(f"node {node.name} ({node.op}): operands {list(a)} and {list(b)} do not multiply",
                             g.source)
        record_matmul(g, node, dims, x, y, [tensor_ref(node.arg(e)) for e in extra])

    return handle


HANDLERS.add("aten.linear", _product("input", "weight", ("bias",), linear=True))
HANDLERS.add("aten.matmul", _product("self", "other"))
for _op, _args in {
    "aten.mm": ("self", "mat2", ()),
    "aten.addmm": ("mat1", "mat2", ("self",)),
    "aten._addmm_activation": ("mat1", "mat2", ("self",)),
    "aten.bmm": ("self", "mat2", ()),
    "aten.baddbmm": ("batch1", "batch2", ("self",)),
    "aten.addbmm": ("batch1", "batch2", ("self",)),
    "aten.mv": ("self", "vec", ()),
    "aten.addmv": ("mat", "vec", ("self",)),
    "aten.dot": ("self", "tensor", ()),
    "aten.vdot": ("self", "tensor", ()),
}.items():
    HANDLERS.add(_op, _product(_args[0], _args[1], _args[2]))


def einsum_dims(equation: str, shapes: Sequence[Shape]) -> tuple[int, int, int, int] | None:
    """batch, m, k, n of the one bmm torch reduces a two-operand einsum to; (0, 0, 0, 0) where no
    letter is contracted (torch multiplies elementwise); None if not two operands or malformed.
    Letters in one operand only and not in the output are summed first (no MACs)."""
    lhs, arrow, out = equation.replace(" ", "").partition("->")
    terms = lhs.split(",")
    if len(terms) != 2 or len(shapes) != 2:
        return None
    sizes: dict[str, int] = {}
    letters: list[list[str]] = []
    ellipsis_rank = 0
    for term, shape in zip(terms, shapes, strict=True):
        explicit = term.replace("...", "")
        if not explicit.isalpha() or term.count("...") > 1:
            return None
        rank = len(shape) - len(explicit)
        if rank < 0 or (rank and "..." not in term):
            return None
        ellipsis_rank = max(ellipsis_rank, rank)
        before, _, after = term.partition("...")
        # Ellipsis dims are labelled by their place from the right, as broadcasting aligns them.
        labels = list(before) + [f".{rank - i}" for i in range(rank)] + list(after)
        for label, size in zip(labels, shape, strict=True):
            sizes[label] = max(size, sizes.get(label, 1))
        letters.append(labels)
    ellipsis = {f".{i + 1}" for i in range(ellipsis_rank)}
    if arrow:
        before, _, after = out.partition("...")
        output = set(before) | set(after) | (ellipsis if "..." in out else set())
    else:
        counts = Counter(lab for labels in letters for lab in labels)
        output = {lab for lab, c in counts.items() if c == 1} | ellipsis
    left, right = set(letters[0]), set(letters[1])
    if not (left & right) - output:
        return 0, 0, 0, 0
    batch = math.prod(sizes[x] for x in left & right & output)
    m = math.prod(sizes[x] for x in (left - right) & output)
    k = math.prod(sizes[x] for x in (left & right) - output)
    n = math.prod(sizes[x] for x in (right - left) & output)
    return batch, m, k, n


@HANDLERS.register("aten.einsum")
def _einsum(g: Graph, node: Node) -> None:
    equation = node.arg("equation", {}).get("as_string")
    tensors = tensor_refs(node.arg("tensors")) or []
    if len(tensors) == 1:
        return  # a trace, permutation or sum: no products
    if not isinstance(equation, str) or len(tensors) != 2:
        g.skip(node, f"an einsum of {len(tensors)} operands: the contraction order torch picks is not recorded")
        return
    shapes = [g.shape(t) for t in tensors]
    if any(s is None for s in shapes):
        _shape_or_skip(g, node, None, "operands")
        return
    dims = einsum_dims(equation, [s for s in shapes if s is not None])
    if dims is None:
        g.skip(node, f"einsum {equation!r}: convcost cannot read this equation")
        return
    if dims != (0, 0, 0, 0):
        record_matmul(g, node, dims, tensors[0], tensors[1])


def _attention(q_arg: str = "query", k_arg: str = "key", v_arg: str = "value") -> Handler:
    """Fused attention: softmax(Q K^T) V is two batched products, L x E x S then L x S x Ev."""

    def handle(g: Graph, node: Node) -> None:
        names = [tensor_ref(node.arg(a)) for a in (q_arg, k_arg, v_arg)]
        shapes = [g.shape(t) if t is not None else None for t in names]
        if any(s is None for s in shapes):
            _shape_or_skip(g, node, None, "query, key or value")
            return
        q, k, v = (s for s in shapes if s is not None)
        if len(q) < 2 or len(k) < 2 or len(v) < 2:
            raise InputError(f"node {node.name} ({node.op}): query, key and value need a sequence axis", g.source)
        batch = math.prod(q[:-2])
        base = node.module or UNNAMED["attention"]
        record_matmul(g, node, (batch, q[-2], q[-1], k[-2]), None, None, base=base)
        record_matmul(g, node, (batch, q[-2], k[-2], v[-1]), None, None, base=base)

    return handle


for _op in ("aten.scaled_dot_product_attention", "aten._scaled_dot_product_flash_attention_for_cpu",
            "aten._scaled_dot_product_flash_attention", "aten._scaled_dot_product_efficient_attention",
            "aten._scaled_dot_product_cudnn_attention"):
    HANDLERS.add(_op, _attention())
