"""Values of small shape tensors, where onnx's data propagation stops short.

Exporters compute split points and target shapes at run time: `x.chunk(2, dim=1)` becomes
Shape -> Gather -> Add -> Div -> Mul -> Slice. onnx propagates some of these values but not all
(Div, and Slice reads only true constants), so the Slice output loses its dims and every conv
after it is lost. This module evaluates such chains (integers, at most MAX_ELEMENTS values)
and folds the result into a constant the consumer reads, so the next inference pass resolves it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from convcost.loaders.onnx.dims import Shapes, static
from convcost.loaders.onnx.graph import Table, attrs

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto, TensorProto

MAX_ELEMENTS = 64
#: (dims, flat values) of a small tensor.
Value = tuple[tuple[int, ...], list[Any]]


def _trunc_div(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        return int(a / b) if b else 0  # integer Div truncates (C semantics)
    return a / b


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "Add": operator.add, "Sub": operator.sub, "Mul": operator.mul, "Div": _trunc_div,
    "Max": max, "Min": min, "Mod": lambda a, b: a % b if b else 0,
    # comparisons and logic: what an If condition computes from a shape or a scalar input
    "Equal": operator.eq, "Greater": operator.gt, "Less": operator.lt, "GreaterOrEqual": operator.ge,
    "LessOrEqual": operator.le, "And": lambda a, b: bool(a and b), "Or": lambda a, b: bool(a or b),
    "Xor": lambda a, b: bool(a) != bool(b),
}


class Evaluator:
    """Computes values of small tensors from constants and static shapes, memoized."""

    def __init__(self, graph: GraphProto, table: Table, shapes: Shapes,
                 inits: dict[str, TensorProto] | None = None) -> None:
        """`table` describes `graph`'s nodes (their outputs are read from it, not from protobuf);
        `inits` the graph's initializers by name, when the caller has them already."""
        self.shapes = shapes
        nodes = list(graph.node)
        self.producer: dict[str, NodeProto] = {o: nodes[i] for i, outs in enumerate(table.outputs) for o in outs if o}
        self.inits = inits if inits is not None else {t.name: t for t in graph.initializer}
        self.memo: dict[str, Value | None] = {}

    def value(self, name: str, depth: int = 0) -> Value | None:
        if name in self.memo:
            return self.memo[name]
        self.memo[name] = None  # guards against cycles
        result = self._compute(name, depth) if depth < 64 else None
        if result is not None and len(result[1]) > MAX_ELEMENTS:
            result = None
        self.memo[name] = result
        return result

    def _tensor(self, t: TensorProto) -> Value | None:
        if math.prod(t.dims) > MAX_ELEMENTS or t.data_location == 1:
            return None
        from onnx.numpy_helper import to_array

        try:
            arr = to_array(t)
        except (ValueError, TypeError):  # a tensor the lean reader left on disk
            return None
        return tuple(arr.shape), arr.reshape(-1).tolist()

    def _compute(self, name: str, depth: int) -> Value | None:
        if name in self.inits:
            return self._tensor(self.inits[name])
        node = self.producer.get(name)
        if node is None:
            return None
        op, a = node.op_type, attrs(node)
        if op == "Constant":
            if "value" in a:
                return self._tensor(a["value"])
            for key in ("value_int", "value_float"):
                if key in a:
                    return (), [a[key]]
            for key in ("value_ints", "value_floats"):
                if key in a:
                    return (len(a[key]),), list(a[key])
            return None
        if op in ("Shape", "Size"):
            dims = static(self.shapes.get(node.input[0]))
            if dims is None:
                return None
            if op == "Size":
                return (), [math.prod(dims)]
            picked = list(dims)[slice(a.get("start", 0), a.get("end"))]
            return (len(picked),), picked
        args = [self.value(x, depth + 1) if x else None for x in node.input]
        first = args[0] if args else None
        if first is None:
            return None
        dims, vals = first
        if op in ("Identity", "Cast"):
            to = a.get("to")
            if op == "Cast" and to in (1, 10, 11, 16):
                return dims, [float(v) for v in vals]
            if op == "Cast" and to in (2, 3, 4, 5, 6, 7, 12, 13):
                return dims, [int(v) for v in vals]
            if op == "Cast" and to == 9:  # BOOL
                return dims, [bool(v) for v in vals]
            return first if op == "Identity" else None
        if op in ("Neg", "Abs"):
            return dims, [(-v if op == "Neg" else abs(v)) for v in vals]
        if op == "Not":
            return dims, [not v for v in vals]
        if op in _BINARY and len(args) == 2 and args[1] is not None:
            other_dims, other = args[1]
            if len(vals) != len(other) and 1 not in (len(vals), len(other)):
                return None
            n = max(len(vals), len(other))
            fn = _BINARY[op]
            out = [fn(vals[i % len(vals)], other[i % len(other)]) for i in range(n)]
            return (dims if len(vals) >= len(other) else other_dims), out
        if op == "Concat":
            if any(x is None for x in args) or any(len(x[0]) > 1 for x in args if x):
                return None
            flat = [v for x in args if x for v in x[1]]
            return (len(flat),), flat
        if op == "Gather":
            index = args[1] if len(args) > 1 else None
            if index is None or len(dims) > 1 or a.get("axis", 0) not in (0, -1):
                return None
            try:
                picked = [vals[i] for i in index[1]]
            except IndexError:
                return None
            return index[0], picked
        if op in ("Unsqueeze", "Squeeze", "Reshape"):
            new_dims = _reshaped(op, dims, a, args[1] if len(args) > 1 else None)
            return (new_dims, vals) if new_dims is not None and math.prod(new_dims) == len(vals) else None
        if op == "Slice" and len(dims) <= 1 and len(args) >= 3 and args[1] and args[2]:
            start, end = int(args[1][1][0]), int(args[2][1][0])
            step = int(args[4][1][0]) if len(args) > 4 and args[4] else 1
            if step == 0:
                return None
            picked = vals[start:end:step]
            return (len(picked),), picked
        if op == "ConstantOfShape":
            shape = [int(v) for v in vals]
            fill = self._tensor(a["value"]) if "value" in a else None
            if math.prod(shape) > MAX_ELEMENTS:
                return None
            return tuple(shape), [fill[1][0] if fill else 0.0] * math.prod(shape)
        return None


def _reshaped(op: str, dims: tuple[int, ...], a: dict[str, Any],
              second: Value | None) -> tuple[int, ...] | None:
    """Dims after Unsqueeze / Squeeze (axes from the attribute or the second input) or Reshape."""
    if op == "Reshape":
        if second is None:
            return None
        target = [int(v) for v in second[1]]
        if not a.get("allowzero"):
            target = [dims[i] if v == 0 and i < len(dims) else v for i, v in enumerate(target)]
        if target.count(-1) == 1:
            known = math.prod(v for v in target if v != -1)
            if not known:
                return None
            target[target.index(-1)] = math.prod(dims) // known
        return tuple(target) if all(v >= 0 for v in target) else None
    axes = a.get("axes") if "axes" in a else ([int(v) for v in second[1]] if second else None)
    if op == "Squeeze":
        if axes is None:
            return tuple(d for d in dims if d != 1)
        drop = {ax % len(dims) for ax in axes} if dims else set()
        return tuple(d for i, d in enumerate(dims) if i not in drop)
    if axes is None:
        return None
    rank = len(dims) + len(axes)
    out = list(dims)
    for ax in sorted(ax % rank for ax in axes):
        out.insert(ax, 1)
    return tuple(out)


#: Inputs that steer an op's output shape: (op type) -> input positions.
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "Split": (1,), "Pad": (1, 3),
    "Resize": (1, 2, 3), "Upsample": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2), "Unsqueeze": (1,),
    "Squeeze": (1,), "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMax": (1,), "ReduceMin": (1,),
    "TopK": (1,), "OneHot": (1,), "CenterCropPad": (1,),
}


def fold(graph: GraphProto, table: Table, shapes: Shapes, types: dict[str, int]) -> int:
    """Where an op's output shape is not static and a shape input is computed, replace that
    input with a constant holding its value. Returns how many inputs were folded."""
    from onnx import helper

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
                evaluator = evaluator or Evaluator(graph, table, shapes, dict(inits))  # as they are now
                try:
                    value = evaluator.value(name)
                except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError):
                    value = None  # folding is best effort: a malformed node (say, a STRING 'start') stays unfolded
                if value is None:
                    continue
                dims, vals = value
                new = f"{name}__convcost_folded"
                try:
                    tensor = helper.make_tensor(new, types.get(name, 7), list(dims), vals)
                except (ValueError, TypeError, OverflowError):  # values a tensor cannot hold
                    continue
                graph.initializer.append(tensor)
                inits[new] = graph.initializer[-1]
                folded[name] = new
            graph.node[index].input[i] = inputs[i] = folded[name]
            count += 1
        table.inputs[index] = tuple(inputs)
    return count
