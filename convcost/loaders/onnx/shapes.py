"""Every tensor's shape: `-i` overrides, then onnx shape inference, then our own rules where it gives up.

onnx's inference (with data propagation, so Shape -> Gather -> Concat -> Reshape chains resolve)
does almost all the work. It gives up at ops it has no schema for (contrib ops like
com.microsoft::FusedConv, custom domains); where we know an op's shape rule we compute its
outputs, hand them back to onnx as value_info and run inference again, so everything downstream
resolves too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from convcost.ir.model import INT64_MAX, Shape
from convcost.loaders.onnx.dims import Dims, Rule, Shapes, show, static
from convcost.loaders.onnx.graph import Table, quote, text
from convcost.loaders.onnx.values import fold
from convcost.util.errors import InputError, first_line

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, ValueInfoProto

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


def apply_inputs(model: ModelProto, overrides: Mapping[str, Shape] | None, source: str) -> dict[str, Shape]:
    """Set input shapes from `-i` and check that every input is then static.

    Key "" means the model's single input. Returns name -> shape for every real input.
    Declared shapes elsewhere (value_info, outputs) describe the old input size, so they are
    dropped when `-i` changes a fixed dim.
    """
    graph = model.graph
    inputs = real_inputs(graph)
    by_name = {vi.name: vi for vi in inputs}
    names = ", ".join(quote(n) for n in by_name) or "none"
    overrides = dict(overrides or {})
    if "" in overrides:
        if len(inputs) != 1:
            raise InputError(f"the model has {len(inputs)} inputs ({names}); name the one -i sets: "
                             "-i NAME=SHAPE", source)
        overrides = {inputs[0].name: overrides.pop("")} | overrides
    stale = False
    for name, shape in overrides.items():
        if name not in by_name:
            raise InputError(f"-i {quote(name)[1:-1]}=...: the model has no input {quote(name)} "
                             f"(inputs: {names})", source)
        vi = by_name[name]
        if not vi.type.HasField("tensor_type"):
            raise InputError(f"input {quote(name)} is not a tensor; -i cannot set its shape", source)
        old = _dims_of(vi)
        if old is not None and len(old) != len(shape):
            raise InputError(f"-i gives input {quote(name)} {len(shape)} dims {list(shape)}, but the model "
                             f"declares {len(old)}: {show(old)}", source)
        if old is not None and any(isinstance(o, int) and o > 0 and o != s
                                   for o, s in zip(old, shape, strict=True)):
            stale = True
        dims = vi.type.tensor_type.shape.dim
        del dims[:]
        for s in shape:
            dims.add().dim_value = s
    if stale:
        del graph.value_info[:]
        for out in graph.output:
            if out.type.HasField("tensor_type"):
                out.type.tensor_type.ClearField("shape")
    resolved: dict[str, Shape] = {}
    for vi in inputs:
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
    return resolved


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
    import onnx
    from onnx.shape_inference import infer_shapes

    _declare_domains(model)
    shapes: Shapes = {}
    types: dict[str, int] = {}
    original, data_prop = model, not costed
    for _ in range(MAX_PASSES):
        try:
            model = infer_shapes(model, check_type=False, strict_mode=False, data_prop=data_prop)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as exc:
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
        folded = fold(model.graph, table, shapes, types, model.opset_import)
        if not added and not folded:
            break
    return model, shapes, types


def _value_info(name: str, elem: int, dims: Dims) -> ValueInfoProto:
    from onnx import helper

    return helper.make_tensor_value_info(name, elem, list(dims))
