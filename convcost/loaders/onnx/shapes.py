"""Every tensor's shape: `-i` overrides, then onnx shape inference, then our own rules where it gives up.

onnx's inference (with data propagation, so Shape -> Gather -> Concat -> Reshape chains resolve)
does almost all the work. It gives up at ops it has no schema for (contrib ops like
com.microsoft::FusedConv, custom domains); where we know an op's shape rule we compute its
outputs, hand them back to onnx as value_info and run inference again, so everything downstream
resolves too.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from convcost.ir.inputs import Given, Inputs, ScalarKind, givens
from convcost.ir.model import INT64_MAX, Scalar, Shape
from convcost.loaders.onnx import proto
from convcost.loaders.onnx.dims import Dims, Rule, Shapes, show, static
from convcost.loaders.onnx.graph import Table, quote, subgraphs, text
from convcost.util.errors import InputError, first_line

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, TensorProto, ValueInfoProto

MAX_PASSES = 8


def _dims_of(vi: ValueInfoProto) -> Dims | None:
    if not vi.type.HasField("tensor_type"):
        return None
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    # A dim_value of 0 is "unset" in practice (proto3); it reads as unknown, like an empty dim.
    return tuple([d.dim_value or d.dim_param or None for d in tt.shape.dim])


def real_inputs(graph: GraphProto) -> list[ValueInfoProto]:
    """Graph inputs that are not initializers (IR < 4 models list weights as inputs too)."""
    inits = {t.name for t in graph.initializer}
    return [vi for vi in graph.input if vi.name not in inits]


#: ONNX element types a scalar input's value can take, by the kind of value.
_VALUE_KINDS: dict[int, ScalarKind] = {
    1: "float", 10: "float", 11: "float", 16: "float",
    2: "int", 3: "int", 4: "int", 5: "int", 6: "int", 7: "int", 12: "int", 13: "int",
    9: "bool",
}


def _type_name(vi: ValueInfoProto) -> str:
    TensorProto = proto.onnx().pb.TensorProto  # noqa: N806

    elem = vi.type.tensor_type.elem_type
    return TensorProto.DataType.Name(elem).lower() if elem in TensorProto.DataType.values() else f"type {elem}"


def takes_value(vi: ValueInfoProto) -> bool:
    """A scalar input: rank 0, or the one element of shape [1] (exporters write both for a number)."""
    dims = _dims_of(vi)
    return dims is not None and dims in ((), (1,))


def _what(vi: ValueInfoProto) -> str:
    """'a scalar (int64)' or 'a float tensor [N, 3, H, W]', for messages about what an input takes."""
    dims = _dims_of(vi)
    if dims == ():
        return f"a scalar ({_type_name(vi)})"
    return f"a {_type_name(vi)} tensor" + ("" if dims is None else f" {show(dims)}")


def _value_tensor(vi: ValueInfoProto, given: Given, source: str) -> tuple[Scalar, TensorProto]:
    """The initializer that stands for scalar input `vi` at the value `-i` gives it."""
    import numpy as np

    name = quote(vi.name)[1:-1]
    kind = _VALUE_KINDS.get(vi.type.tensor_type.elem_type)
    if kind is None:
        raise InputError(f"input {quote(vi.name)} is {_what(vi)}; convcost cannot give it a value", source)
    value = given.as_kind(kind)
    if value is None:
        raise InputError(f"input {quote(vi.name)} is {_what(vi)}: -i {name}={given.text} is not "
                         f"{'an' if kind == 'int' else 'a'} {kind}", source)
    try:
        dtype = proto.np_dtype(vi.type.tensor_type.elem_type)
        array = np.array(value).astype(dtype, casting="same_kind" if kind == "float" else "unsafe")
        if kind == "int" and array.item() != value:
            raise OverflowError
        tensor = proto.from_array(array.reshape(_dims_of(vi) or ()), vi.name)
    except (OverflowError, ValueError, TypeError):
        raise InputError(f"input {quote(vi.name)} is {_what(vi)}: -i {name}={given.text} is out of its range",
                         source) from None
    return value, tensor


def apply_inputs(model: ModelProto, overrides: Inputs | None,
                 source: str) -> tuple[dict[str, Shape], dict[str, Scalar]]:
    """Set input shapes and scalar values from `-i` and check that every input is then static.

    Key "" is the one tensor input no other `-i` names. A scalar input (rank 0 or shape [1]) given
    a value becomes an initializer of that value, so inference and value folding compute with it
    (a Div by the sample rate, a Resize to a size derived from it, an If on it). Returns name ->
    shape for every other real input, and name -> value for those. Declared shapes elsewhere
    (value_info, outputs) describe the old input size, so they are dropped when `-i` changes a
    fixed dim.
    """
    graph = model.graph
    inputs = real_inputs(graph)
    by_name = {vi.name: vi for vi in inputs}
    names = ", ".join(quote(n) for n in by_name) or "none"
    given = givens(overrides)
    for name in given:
        if name and name not in by_name:
            raise InputError(f"-i {quote(name)[1:-1]}=...: the model has no input {quote(name)} "
                             f"(inputs: {names})", source)
    if "" in given:
        unnamed = given.pop("")
        open_ = [vi for vi in inputs if vi.name not in given and _dims_of(vi) != ()]
        if len(open_) != 1:
            scalar = [vi for vi in inputs if vi.name not in given and _dims_of(vi) == ()]
            if not open_ and scalar:
                raise InputError(f"input {quote(scalar[0].name)} is {_what(scalar[0])}: give its value with "
                                 f"-i {quote(scalar[0].name)[1:-1]}=VALUE, not a shape", source)
            raise InputError(f"the model has {len(inputs)} inputs ({names}); name the one -i sets: "
                             "-i NAME=SHAPE", source)
        given = {open_[0].name: unnamed} | given
    stale = False
    values: dict[str, Scalar] = {}
    constants: list[TensorProto] = []
    for name, g in given.items():
        vi = by_name[name]
        label = quote(name)[1:-1]
        if not vi.type.HasField("tensor_type"):
            raise InputError(f"input {quote(name)} is not a tensor; -i cannot set its shape", source)
        old = _dims_of(vi)
        if takes_value(vi) and g.value is not None:
            values[text(name)], tensor = _value_tensor(vi, g, source)
            constants.append(tensor)
            continue
        if old == ():
            raise InputError(f"input {quote(name)} is {_what(vi)}: -i {label}={g.text} gives a shape; give its "
                             f"value: -i {label}=VALUE", source)
        shape = g.shape
        if shape is None:
            raise InputError(f"input {quote(name)} is {_what(vi)}: -i {label}={g.text} gives a value; give its "
                             f"shape: -i {label}=SHAPE", source)
        if old is not None and len(old) != len(shape):
            read = f" ({g.text} reads as a 1-D shape)" if g.value is not None else ""
            raise InputError(f"-i gives input {quote(name)} {len(shape)} dims {list(shape)}{read}, but the model "
                             f"declares {len(old)}: {show(old)}", source)
        if old is not None and any(isinstance(o, int) and o > 0 and o != s
                                   for o, s in zip(old, shape, strict=True)):
            stale = True
        dims = vi.type.tensor_type.shape.dim
        del dims[:]
        for s in shape:
            dims.add().dim_value = s
    if stale:
        _forget_shapes(graph)
    resolved: dict[str, Shape] = {}
    for vi in inputs:
        if text(vi.name) in values:
            continue
        dims = _dims_of(vi)
        label = quote(vi.name)
        how = f"-i {label[1:-1]}=SHAPE" if len(inputs) > 1 else "-i SHAPE (e.g. -i 1x3x224x224)"
        if dims is None:
            raise InputError(f"input {label} has no declared shape; give it with {how}", source)
        for axis, d in enumerate(dims):
            if not (isinstance(d, int) and d > 0):
                what = f"symbolic dim {quote(d)}" if isinstance(d, (str, bytes)) else "an unknown dim"
                raise InputError(f"input {label} has {what} (axis {axis} of {show(dims)}); "
                                 f"give its shape with {how}", source)
        resolved[text(vi.name)] = dims  # type: ignore[assignment]
    if constants:
        valued = {t.name for t in constants}
        kept = [vi for vi in graph.input if vi.name not in valued]
        del graph.input[:]
        graph.input.extend(kept)
        graph.initializer.extend(constants)
    return resolved, values


def needed_values(model: ModelProto, table: Table, shapes: Shapes,
                  costed: Collection[tuple[str, str]]) -> dict[str, list[str]]:
    """Scalar inputs without a value that the shapes of costed ops depend on: input name -> labels
    of the ops whose input shapes are unknown and computed (through any chain) from it."""
    scalars = {vi.name for vi in real_inputs(model.graph) if takes_value(vi)}
    if not scalars or _resolved(table, shapes, costed):
        return {}
    reach: dict[str, frozenset[str]] = {name: frozenset((name,)) for name in scalars}
    needed: dict[str, list[str]] = {}
    none: frozenset[str] = frozenset()
    for i, ins in enumerate(table.inputs):
        found = none.union(*(reach[x] for x in (*ins, *table.outer.get(i, ())) if x in reach))
        if not found:
            continue
        for out in table.outputs[i]:
            if out:
                reach[out] = found
        if (table.domains[i], table.ops[i]) in costed and any(
                x and static(shapes.get(x)) is None and x in reach for x in ins):
            for name in sorted(found):
                needed.setdefault(text(name), []).append(table.label(i))
    return needed


def apply_tensor_shapes(model: ModelProto, given: Mapping[str, Shape], source: str) -> None:
    """Declare the shapes `--shape` gives, so that inference takes them as they are and carries on
    past an op nobody can shape (a custom or unknown op).

    A declared shape wins over what onnx infers; a tensor the graph does not make, an initializer
    or a graph input (set with -i) is an error.
    """
    graph = model.graph
    makers = {text(o): node for node in graph.node for o in node.output if o}
    inits = {text(t.name): t.data_type for t in graph.initializer}
    inputs = {text(vi.name) for vi in real_inputs(graph)}
    declared = {text(vi.name): vi.type.tensor_type.elem_type for vi in (*graph.input, *graph.value_info,
                                                                         *graph.output)
                if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type}
    for name in given:
        label = quote(name)
        if name in inputs:
            raise InputError(f"--shape {label[1:-1]}=...: {label} is a graph input; set its shape with "
                             f"-i {label[1:-1]}=SHAPE", source)
        if name in inits:
            raise InputError(f"--shape {label[1:-1]}=...: {label} is an initializer (stored data); "
                             "its shape is fixed", source)
        if name not in makers:
            close = difflib.get_close_matches(name, list(makers), n=3)
            hint = f" (did you mean {', '.join(quote(c) for c in close)}?)" if close else ""
            raise InputError(f"--shape {label[1:-1]}=...: the graph has no tensor {label}{hint}", source)
    first_input = next((declared[text(vi.name)] for vi in real_inputs(graph) if text(vi.name) in declared), 0)

    def elem(name: str) -> int:
        """The tensor's declared type, else its maker's first typed input's: onnx stops inferring
        at a tensor of unknown type."""
        if declared.get(name):
            return declared[name]
        for x in makers[name].input:
            found = declared.get(text(x)) or inits.get(text(x))
            if found:
                return found
        return first_input or proto.FLOAT

    outputs = {text(vi.name): vi for vi in graph.output}
    kept = [vi for vi in graph.value_info if text(vi.name) not in given]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    for name, shape in given.items():
        info = proto.make_tensor_value_info(name, elem(name), list(shape))
        if name in outputs:
            outputs[name].CopyFrom(info)
        else:
            graph.value_info.append(info)


def _forget_shapes(graph: GraphProto) -> None:
    """Drop the declared shapes of a graph's tensors and outputs, in control-flow bodies too."""
    del graph.value_info[:]
    for out in graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")
    for node in graph.node:
        for sub in subgraphs(node):
            _forget_shapes(sub)


def read_shapes(graph: GraphProto) -> tuple[Shapes, dict[str, int]]:
    """Dims and element types of every tensor onnx knows about."""
    shapes: Shapes = {}
    types: dict[str, int] = {}
    for t in graph.initializer:
        shapes[t.name] = tuple(t.dims)
        types[t.name] = t.data_type
    for vi in (*graph.input, *graph.value_info, *graph.output):
        dims = _dims_of(vi)
        if dims is not None:
            shapes[vi.name] = dims
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types.setdefault(vi.name, vi.type.tensor_type.elem_type)
    return shapes, types


def _declare_domains(model: ModelProto) -> None:
    """onnx refuses to infer a graph using a domain it has no opset import for; declare it."""
    declared = {o.domain for o in model.opset_import}
    for node in model.graph.node:
        if node.domain not in declared and node.domain != "ai.onnx":
            entry = model.opset_import.add()
            entry.domain, entry.version = node.domain, 1
            declared.add(node.domain)


def _resolved(table: Table, shapes: Shapes, costed: Collection[tuple[str, str]]) -> bool:
    """Whether every input of every op we cost has a static shape."""
    for i, op in enumerate(table.ops):
        if (table.domains[i], op) in costed:
            for name in table.inputs[i]:
                if name and static(shapes.get(name)) is None:
                    return False
    return True


def infer(
    model: ModelProto, table: Table, rules: Mapping[tuple[str, str], Rule], source: str,
    costed: Collection[tuple[str, str]] = (),
) -> tuple[ModelProto, Shapes, dict[str, int]]:
    """Run shape inference, and where it stops our shape rules and value folding, then again.

    The first pass runs without data propagation, which is several times faster (it would
    compute every ConstantOfShape weight of the zoo's light models); if that resolves the inputs
    of every `costed` op, it is the only pass.

    Returns the inferred model, its shapes and element types. `table` describes the model's
    nodes (inference keeps them as they are; folding rewrites inputs in both)."""
    _declare_domains(model)
    shapes: Shapes = {}
    types: dict[str, int] = {}
    original, data_prop = model, not costed
    for _ in range(MAX_PASSES):
        try:
            model = proto.infer_shapes(model, check_type=False, strict_mode=False, data_prop=data_prop)
        except proto.errors(RuntimeError, ValueError) as exc:  # ValueError: the C++ side on malformed graphs
            first = first_line(exc)
            raise InputError(f"ONNX shape inference failed: {first}", source) from None
        shapes, types = read_shapes(model.graph)
        if not data_prop:
            if _resolved(table, shapes, costed):
                break
            model, data_prop = original, True
            continue
        added = []
        for i, op in enumerate(table.ops):
            rule = rules.get((table.domains[i], op))
            if rule is None or all(o in shapes for o in table.outputs[i] if o):
                continue
            node = model.graph.node[i]
            got = rule(node, shapes, types)
            if not got:
                continue
            for out, (dims, elem) in zip(node.output, got, strict=False):
                if out and out not in shapes:
                    shapes[out] = dims
                    types[out] = elem
                    if all(not isinstance(d, int) or 0 <= d <= INT64_MAX for d in dims):
                        added.append(_value_info(out, elem, dims))
        model.graph.value_info.extend(added)
        from convcost.loaders.onnx.values import fold  # (and numpy: only where inference stops short)

        folded = fold(model.graph, table, shapes, types, model.opset_import)
        if not added and not folded:
            break
    return model, shapes, types


def _value_info(name: str, elem: int, dims: Dims) -> ValueInfoProto:
    return proto.make_tensor_value_info(name, elem, list(dims))
