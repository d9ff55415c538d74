"""Values of small shape tensors, where onnx's data propagation stops short.

Exporters compute pads, split points and target shapes at run time, and onnx's inference does not
follow every such chain: `F.pad` from torch's legacy exporter is ConstantOfShape -> Concat ->
Reshape -> Slice (step -1, 2-D) -> Transpose -> Reshape -> Cast -> Pad, `x.chunk(2, dim=1)` divides
a dim with Div, TF-style "same" padding runs float Div and Ceil on the input size. The Pad, Slice
or Reshape at the end then has no static output shape, and every conv after it is lost.

`Evaluator` computes such tensors (at most MAX_ELEMENTS values each) from constants and static
shapes with numpy, one fold function per op type in `FOLDERS`, following the ONNX spec's
semantics; `fold` writes the result as an initializer the consumer reads, so the next inference
pass resolves it. docs/onnx.md lists the ops and the exporter patterns that need them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from convcost.loaders.onnx import proto
from convcost.loaders.onnx.dims import Shapes, static
from convcost.loaders.onnx.graph import Table, attrs, has_subgraph
from convcost.util.registry import Registry

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto, OperatorSetIdProto, TensorProto, TypeProto

#: The most elements a tensor may have to be evaluated (shape tensors have a handful).
MAX_ELEMENTS = 64
#: The deepest chain of ops one value is computed through.
MAX_DEPTH = 64
#: Failures of a fold function on a malformed node: the value stays unknown.
_FOLD_ERRORS = (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError, AttributeError)


class Call:
    """One node being evaluated: its attributes and, on demand, its inputs' values and dims."""

    def __init__(self, evaluator: Evaluator, node: NodeProto, depth: int) -> None:
        self.node, self.attrs = node, attrs(node)
        self._evaluator, self._depth = evaluator, depth

    def __len__(self) -> int:
        return len(self.node.input)

    def given(self, i: int) -> bool:
        """Whether optional input `i` is present."""
        return i < len(self.node.input) and bool(self.node.input[i])

    def arg(self, i: int) -> np.ndarray | None:
        """The value of input `i`, or None where it is absent or unknown."""
        return self._evaluator.value(self.node.input[i], self._depth + 1) if self.given(i) else None

    def args(self) -> list[np.ndarray] | None:
        """The values of all inputs, or None unless every one is known."""
        out = [self.arg(i) for i in range(len(self))]
        return None if any(v is None for v in out) else out  # type: ignore[return-value]

    def dims(self, i: int) -> tuple[int | str | None, ...] | None:
        """Input `i`'s dims as inference knows them (not its value), else as inferred here."""
        if not self.given(i):
            return None
        dims = self._evaluator.shapes.get(self.node.input[i])
        if static(dims) is None:
            dims = self._evaluator.shape(self.node.input[i], self._depth + 1) or dims
        return dims

    def ints(self, position: int, attr: str = "") -> list[int] | None:
        """An int list given as input `position`, or as attribute `attr` where the node has it
        (older opsets)."""
        if attr in self.attrs:
            return [int(v) for v in self.attrs[attr]]
        value = self.arg(position)
        return None if value is None else [int(v) for v in value.reshape(-1)]


#: Evaluates one op from a `Call`: the value of its first output, or None.
Folder = Callable[[Call], "np.ndarray | None"]
FOLDERS: Registry[str, Folder] = Registry("value folder")


class Evaluator:
    """Computes values of small tensors from constants and static shapes, memoized.

    Given the model's opsets it also infers, node by node, the dims of tensors whose `Shape` a
    value needs but inference left open, feeding onnx's per-node inference the values computed
    here. TF-style "same" padding computes each conv's pads from the previous conv's output, so
    a net of N such convs would otherwise resolve one pad per inference pass."""

    def __init__(self, graph: GraphProto, table: Table, shapes: Shapes,
                 inits: dict[str, TensorProto] | None = None, types: dict[str, int] | None = None,
                 opsets: Sequence[OperatorSetIdProto] | None = None) -> None:
        """`table` describes `graph`'s nodes (their outputs are read from it, not from protobuf);
        `inits` the graph's initializers by name, when the caller has them already; `types` the
        element types inference found; `opsets` the model's opset imports (None: no per-node
        inference)."""
        self.shapes, self.types = shapes, types if types is not None else {}
        nodes = list(graph.node)
        self.producer: dict[str, NodeProto] = {o: nodes[i] for i, outs in enumerate(table.outputs) for o in outs if o}
        self.inits = inits if inits is not None else {t.name: t for t in graph.initializer}
        self.memo: dict[str, np.ndarray | None] = {}
        self.opsets = list(opsets) if opsets is not None else None
        #: name -> (dims, element type) inferred here, or None where that failed.
        self.inferred: dict[str, tuple[tuple[int, ...], int] | None] = {}

    def value(self, name: str, depth: int = 0) -> np.ndarray | None:
        """`name`'s value (a read-only array of at most MAX_ELEMENTS elements), or None."""
        if name in self.memo:
            return self.memo[name]
        self.memo[name] = None  # guards against cycles
        result = None
        if depth < MAX_DEPTH:
            try:
                with np.errstate(all="ignore"):
                    result = self._compute(name, depth)
            except _FOLD_ERRORS:  # a malformed node (a STRING 'start', an index out of range) stays unknown
                result = None
        if result is not None:
            result = np.asarray(result)
            if result.size > MAX_ELEMENTS or result.dtype.kind not in "biuf":
                result = None
            else:
                result.flags.writeable = False  # memoized values are shared between consumers
        self.memo[name] = result
        return result

    def _compute(self, name: str, depth: int) -> np.ndarray | None:
        if name in self.inits:
            return _tensor(self.inits[name])
        node = self.producer.get(name)
        if node is None or node.domain not in ("", "ai.onnx") or not node.output or node.output[0] != name:
            return None  # graph inputs, custom domains, second outputs (Split) stay unknown
        folder = FOLDERS.get(node.op_type)
        return folder(Call(self, node, depth)) if folder is not None else None

    def shape(self, name: str, depth: int = 0) -> tuple[int, ...] | None:
        """`name`'s static dims: inference's, else inferred here from its producer."""
        init = self.inits.get(name)
        dims = static(self.shapes.get(name) if init is None else tuple(init.dims))
        if dims is not None or self.opsets is None or init is not None:
            return dims
        if name not in self.inferred:
            self.inferred[name] = None  # guards against cycles
            if depth < MAX_DEPTH:
                self._infer(name, depth)
        got = self.inferred[name]
        return got[0] if got else None

    def elem(self, name: str) -> int | None:
        init = self.inits.get(name)
        if init is not None:
            return init.data_type
        got = self.inferred.get(name)
        return got[1] if got else self.types.get(name)

    def _infer(self, name: str, depth: int) -> None:
        """onnx's shape inference for `name`'s producer alone, its inputs' dims and small values given."""
        node = self.producer.get(name)
        if node is None or node.domain not in ("", "ai.onnx") or has_subgraph(node):
            return
        input_types: dict[str, TypeProto] = {}
        input_data: dict[str, TensorProto] = {}
        for x in node.input:
            if not x:
                continue
            dims, elem = self.shape(x, depth + 1), self.elem(x)
            if dims is None or not elem:
                return
            input_types[x] = proto.make_tensor_type_proto(elem, dims)
            value = self.value(x, depth + 1) if math.prod(dims) <= MAX_ELEMENTS else None
            tensor = None if value is None else _as_tensor(x, value, elem)
            if tensor is not None:
                input_data[x] = tensor
        version = next((o.version for o in self.opsets or () if o.domain in ("", "ai.onnx")), None)
        try:
            schema = proto.get_schema(node.op_type, version or proto.opset_version())
            outputs = proto.infer_node_outputs(schema, node, input_types, input_data, self.opsets or ())
        except proto.errors(RuntimeError, ValueError, TypeError):
            return
        for out, type_proto in outputs.items():
            tt = type_proto.tensor_type
            dims = static(tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim))
            if type_proto.HasField("tensor_type") and tt.HasField("shape") and dims is not None and tt.elem_type:
                self.inferred[out] = (dims, tt.elem_type)


def _tensor(t: TensorProto) -> np.ndarray | None:
    if math.prod(t.dims) > MAX_ELEMENTS or t.data_location == 1:
        return None
    try:
        return proto.to_array(t)
    except (ValueError, TypeError):  # a tensor the lean reader left on disk
        return None


def _small(shape: Sequence[int]) -> bool:
    """Whether a tensor of `shape` may be built (checked before allocating it)."""
    return all(d >= 0 for d in shape) and math.prod(shape) <= MAX_ELEMENTS


# --- constants and shapes -----------------------------------------------------------------------


@FOLDERS.register("Constant")
def _constant(call: Call) -> np.ndarray | None:
    a = call.attrs
    if "value" in a:
        return _tensor(a["value"])
    if "value_int" in a:
        return np.array(a["value_int"], dtype=np.int64)
    if "value_ints" in a:
        return np.array(a["value_ints"], dtype=np.int64)
    if "value_float" in a:
        return np.array(a["value_float"], dtype=np.float32)
    if "value_floats" in a:
        return np.array(a["value_floats"], dtype=np.float32)
    return None  # sparse and string constants


@FOLDERS.register("Shape")
def _shape(call: Call) -> np.ndarray | None:
    """Only the dims `start`/`end` pick (opset 15) need to be static."""
    dims = call.dims(0)
    if dims is None:
        return None
    picked = list(dims)[slice(call.attrs.get("start", 0), call.attrs.get("end"))]
    known = static(tuple(picked))
    return np.array(known, dtype=np.int64) if known is not None or not picked else None


@FOLDERS.register("Size")
def _size(call: Call) -> np.ndarray | None:
    dims = static(call.dims(0))
    return None if dims is None else np.array(math.prod(dims), dtype=np.int64)


@FOLDERS.register("ConstantOfShape")
def _constant_of_shape(call: Call) -> np.ndarray | None:
    shape = call.arg(0)
    if shape is None or not _small(shape.tolist()):
        return None
    fill = _tensor(call.attrs["value"]) if "value" in call.attrs else np.zeros(1, dtype=np.float32)
    return None if fill is None or fill.size != 1 else np.full(shape.tolist(), fill.reshape(-1)[0])


# --- element-wise arithmetic, comparison and logic ----------------------------------------------


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Integer Div truncates toward zero, as onnxruntime's does (numpy's // floors)."""
    if np.any(b == 0):
        return None
    quotient = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -quotient, quotient)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return _int_div(a, b)
    return np.true_divide(a, b)


def _mod(a: np.ndarray, b: np.ndarray, fmod: bool) -> np.ndarray | None:
    """fmod=1 takes the dividend's sign (C fmod), fmod=0 the divisor's (numpy's mod)."""
    if a.dtype.kind in "iu" and np.any(b == 0):
        return None
    return np.fmod(a, b) if fmod else np.mod(a, b)


_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray | None]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _div, "Equal": np.equal,
    # Comparisons and logic: the dynamo exporter's floor division (`sr // 100` is Div, Mod, Less,
    # Equal, And, Sub) and If conditions on a shape or a scalar input's value.
    "Less": np.less, "LessOrEqual": np.less_equal, "Greater": np.greater, "GreaterOrEqual": np.greater_equal,
    "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor,
}


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray | None]) -> Folder:
    def fold(call: Call) -> np.ndarray | None:
        args = call.args()
        if args is None or len(args) != 2:
            return None
        a, b = args
        if math.prod(np.broadcast_shapes(a.shape, b.shape)) > MAX_ELEMENTS:
            return None
        return fn(a, b)
    return fold


for _op, _fn in _BINARY.items():
    FOLDERS.add(_op, _binary(_fn))


@FOLDERS.register("Mod")
def _mod_fold(call: Call) -> np.ndarray | None:
    fmod = bool(call.attrs.get("fmod", 0))
    return _binary(lambda a, b: _mod(a, b, fmod))(call)


def _variadic(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Folder:
    """Max, Min: any number of inputs, broadcast together."""
    def fold(call: Call) -> np.ndarray | None:
        args = call.args()
        if not args or math.prod(np.broadcast_shapes(*(a.shape for a in args))) > MAX_ELEMENTS:
            return None
        out = args[0]
        for other in args[1:]:
            out = fn(out, other)
        return out
    return fold


FOLDERS.add("Max", _variadic(np.maximum))
FOLDERS.add("Min", _variadic(np.minimum))


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Folder:
    def fold(call: Call) -> np.ndarray | None:
        x = call.arg(0)
        return None if x is None else fn(x)
    return fold


_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Identity": lambda x: x, "Neg": np.negative, "Abs": np.abs, "Floor": np.floor, "Ceil": np.ceil,
    "Not": np.logical_not,
}
for _op, _unary_fn in _UNARY.items():
    FOLDERS.add(_op, _unary(_unary_fn))


@FOLDERS.register("Cast")
def _cast(call: Call) -> np.ndarray | None:
    """Float to int truncates toward zero (numpy's astype, like onnxruntime's static_cast)."""
    x = call.arg(0)
    if x is None:
        return None
    dtype = proto.np_dtype(call.attrs["to"])
    return x.astype(dtype) if dtype.kind in "biuf" else None


@FOLDERS.register("Where")
def _where(call: Call) -> np.ndarray | None:
    args = call.args()
    if args is None or len(args) != 3:
        return None
    if math.prod(np.broadcast_shapes(*(a.shape for a in args))) > MAX_ELEMENTS:
        return None
    return np.where(args[0].astype(bool), args[1], args[2]).astype(np.result_type(args[1], args[2]))


# --- layout: gather, concatenate, slice, reshape ------------------------------------------------


@FOLDERS.register("Gather")
def _gather(call: Call) -> np.ndarray | None:
    """Indices may be negative (counted from the end), as in numpy."""
    data, index = call.arg(0), call.arg(1)
    if data is None or index is None:
        return None
    return np.take(data, index.astype(np.int64), axis=call.attrs.get("axis", 0))


@FOLDERS.register("Concat")
def _concat(call: Call) -> np.ndarray | None:
    args = call.args()
    return None if not args else np.concatenate(args, axis=call.attrs.get("axis", 0))


@FOLDERS.register("Slice")
def _slice(call: Call) -> np.ndarray | None:
    """Any rank, negative axes and steps; starts/ends clamped as the ONNX spec says (which differs
    from Python's slices for a start before the first element with a negative step)."""
    data = call.arg(0)
    if data is None:
        return None
    if "starts" in call.attrs:  # opset 1-9: attributes
        starts: list[int] | None = [int(v) for v in call.attrs["starts"]]
        ends: list[int] | None = [int(v) for v in call.attrs.get("ends", [])]
        axes: list[int] | None = [int(v) for v in call.attrs["axes"]] if "axes" in call.attrs else None
        steps: list[int] | None = None
    else:
        starts, ends = call.ints(1), call.ints(2)
        axes = call.ints(3) if call.given(3) else None
        steps = call.ints(4) if call.given(4) else None
    if starts is None or ends is None or (call.given(3) and axes is None) or (call.given(4) and steps is None):
        return None
    axes = [ax + data.ndim if ax < 0 else ax for ax in (axes if axes is not None else range(len(starts)))]
    steps = steps if steps is not None else [1] * len(starts)
    if not (len(starts) == len(ends) == len(axes) == len(steps)) or len(set(axes)) != len(axes):
        return None
    index: list[slice] = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if not 0 <= axis < data.ndim or step == 0:
            return None
        dim = data.shape[axis]
        start, end = start + dim if start < 0 else start, end + dim if end < 0 else end
        if step > 0:
            index[axis] = slice(min(max(start, 0), dim), min(max(end, 0), dim), step)
        else:
            end = min(max(end, -1), dim - 1)
            index[axis] = slice(min(max(start, 0), dim - 1), None if end < 0 else end, step)
    return data[tuple(index)]


@FOLDERS.register("Reshape")
def _reshape(call: Call) -> np.ndarray | None:
    """A 0 in the target copies the input's dim unless `allowzero` (opset 14)."""
    data, target = call.arg(0), call.ints(1)
    if data is None or target is None:
        return None
    if not call.attrs.get("allowzero", 0):
        target = [data.shape[i] if v == 0 and i < data.ndim else v for i, v in enumerate(target)]
    return data.reshape(target)


@FOLDERS.register("Transpose")
def _transpose(call: Call) -> np.ndarray | None:
    data = call.arg(0)
    return None if data is None else np.transpose(data, call.attrs.get("perm"))


@FOLDERS.register("Squeeze")
def _squeeze(call: Call) -> np.ndarray | None:
    """Axes from the attribute (opset < 13) or the second input; none: every dim of size 1."""
    data = call.arg(0)
    axes = call.ints(1, "axes") if "axes" in call.attrs or call.given(1) else []
    if data is None or axes is None:
        return None
    return np.squeeze(data, axis=tuple(axes) if axes else None)


@FOLDERS.register("Unsqueeze")
def _unsqueeze(call: Call) -> np.ndarray | None:
    """Axes (attribute before opset 13, input since) index the output's dims."""
    data, axes = call.arg(0), call.ints(1, "axes")
    return None if data is None or axes is None else np.expand_dims(data, tuple(axes))


@FOLDERS.register("ReduceProd")
def _reduce_prod(call: Call) -> np.ndarray | None:
    """Axes from the attribute (opset < 18) or the second input; none: all, unless
    `noop_with_empty_axes`."""
    data = call.arg(0)
    axes = call.ints(1, "axes") if "axes" in call.attrs or call.given(1) else []
    if data is None or axes is None:
        return None
    if not axes and call.attrs.get("noop_with_empty_axes", 0):
        return data
    keep = bool(call.attrs.get("keepdims", 1))
    return np.prod(data, axis=tuple(axes) if axes else None, keepdims=keep).astype(data.dtype)


#: Inputs that steer an op's output shape: (op type) -> input positions.
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "Split": (1,), "Pad": (1, 3),
    "Resize": (1, 2, 3), "Upsample": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2), "Unsqueeze": (1,),
    "Squeeze": (1,), "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMax": (1,), "ReduceMin": (1,),
    "TopK": (1,), "OneHot": (1,), "CenterCropPad": (1,),
}


def _as_tensor(name: str, value: np.ndarray, elem: int | None) -> TensorProto | None:
    """`value` as an initializer of the element type inference gave `name` (else the value's own)."""
    try:
        if elem:
            value = value.astype(proto.np_dtype(elem))
        return proto.from_array(value.copy(order="C"), name)  # keeps 0-d tensors 0-d
    except (ValueError, TypeError, KeyError, OverflowError):  # values a tensor of that type cannot hold
        return None


def fold(graph: GraphProto, table: Table, shapes: Shapes, types: dict[str, int],
         opsets: Sequence[OperatorSetIdProto] | None = None) -> int:
    """Where an op's output shape is not static and a shape input is computed, replace that
    input with a constant holding its value. Returns how many inputs were folded.

    `opsets` (the model's opset imports) lets the evaluator infer dims node by node where a
    value needs them, so a chain of computed pads folds in one call."""
    evaluator: Evaluator | None = None
    inits: dict[str, TensorProto] | None = None
    folded: dict[str, str] = {}
    count = 0
    for index, op in enumerate(table.ops):
        positions = SHAPE_INPUTS.get(op)
        if positions is None or all(static(shapes.get(o)) is not None for o in table.outputs[index] if o):
            continue
        inputs = list(table.inputs[index])
        for i in positions:
            if inits is None:
                inits = {t.name: t for t in graph.initializer}
            if i >= len(inputs) or not inputs[i] or inputs[i] in inits:
                continue
            name = inputs[i]
            if name not in folded:
                evaluator = evaluator or Evaluator(graph, table, shapes, inits, types, opsets)
                producer = evaluator.producer.get(name)
                if producer is not None and producer.op_type == "Constant":
                    continue  # onnx reads Constant nodes itself
                value = evaluator.value(name)
                tensor = None if value is None else _as_tensor(f"{name}__convcost_folded", value, types.get(name))
                if tensor is None:
                    continue
                graph.initializer.append(tensor)
                inits[tensor.name] = graph.initializer[-1]
                evaluator.memo[tensor.name] = value  # the evaluator reads the rewritten node next
                folded[name] = tensor.name
            graph.node[index].input[i] = inputs[i] = folded[name]
            count += 1
        table.inputs[index] = tuple(inputs)
    return count
