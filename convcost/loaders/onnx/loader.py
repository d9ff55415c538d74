"""ONNX models: every Conv/ConvTranspose (and quantized form) with exact shapes, plus matmul totals.

Steps: read the file without its weight data (`onnx_wire`), put nodes in evaluation order,
apply `-i` input shapes, run shape inference (`onnx_shapes`), turn ops into convcost ops
(`onnx_ops`), attach lazy weight loaders (`onnx_weights`). Named `onnx_loader` so that it
never shadows the `onnx` package.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from convcost.ir.inputs import Inputs, givens
from convcost.ir.model import Model, Node, Shape, Uncounted, counted_family
from convcost.loaders.onnx import proto
from convcost.loaders.onnx.control import Scope, cost_bodies, declared_params, pinned
from convcost.loaders.onnx.dims import Shapes
from convcost.loaders.onnx.graph import (
    GraphError,
    Names,
    Table,
    attrs,
    constants,
    evaluation_order,
    joined,
    quote,
    subgraphs,
    text,
)
from convcost.loaders.onnx.naming import module_paths
from convcost.loaders.onnx.ops import (
    COSTED,
    FLOAT_TYPES,
    HANDLERS,
    KNOWN_CONTRIB,
    MAC_LIKE,
    PARAM_INPUTS,
    RULES,
    TRANSFORMS,
    Ctx,
)
from convcost.loaders.onnx.shapes import apply_inputs, apply_tensor_shapes, infer, needed_values, static
from convcost.loaders.onnx.weights import Weights
from convcost.loaders.onnx.wire import WireError, read_lean
from convcost.util.errors import InputError, first_line

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, NodeProto


def load_onnx(path: str | Path, inputs: Inputs | None = None, *,
              tensor_shapes: dict[str, Shape] | None = None) -> Model:
    """Load an ONNX model's convolutions and matrix products without reading its weights.

    `inputs` comes from `-i`: key "" is the one tensor input no other key names; a scalar input
    (rank 0) takes a value, a tensor a shape. `tensor_shapes` comes from `--shape`: any tensor's
    shape, so inference gets past an op convcost cannot shape.
    """
    path = Path(path)
    try:
        return _load(path, inputs, tensor_shapes)
    except UnicodeError:  # proto2 strings are not checked when parsed; onnx's C++ side does check
        raise InputError("not a valid ONNX model: a name in it is not valid UTF-8", path) from None


def _given(inputs: Inputs | None) -> str:
    """The -i values as typed (`-i 1x3x8x8`, `-i x=1x3x8x8`), for errors a wrong input size causes."""
    return " ".join(f"-i {k + '=' if k else ''}{g.text}" for k, g in givens(inputs).items())


def _load(path: Path, inputs: Inputs | None, tensor_shapes: dict[str, Shape] | None) -> Model:
    source = str(path)
    model = _parse(path)
    warnings: list[str] = []
    graph = model.graph
    table = Table(graph)
    try:
        available = {i.name for i in graph.input} | {t.name for t in graph.initializer}
        order = evaluation_order(table, available)
    except GraphError as exc:
        raise InputError(str(exc), source) from None
    if order is not None:
        nodes = [graph.node[i] for i in order]
        copies = [type(n)() for n in nodes]
        for copy, node in zip(copies, nodes, strict=True):
            copy.CopyFrom(node)
        del graph.node[:]
        graph.node.extend(copies)
        table = Table(graph)
        warnings.append("graph nodes were not in topological order (the ONNX spec requires it); "
                        "convcost sorted them")
    resolved, values = apply_inputs(model, inputs, source)
    if tensor_shapes:
        apply_tensor_shapes(model, tensor_shapes, source)
    model, shapes, types = infer(model, table, RULES, source, costed=HANDLERS.keys())
    _require_values(needed_values(model, table, shapes, HANDLERS.keys()), source)
    given = _given(inputs)
    scope = _scope(path, source, model, table, shapes, types, given)
    pins = pinned(scope)  # If outputs whose branch is known: infer again with their shapes
    if pins:
        model.graph.value_info.extend(pins)
        model, shapes, types = infer(model, table, RULES, source, costed=HANDLERS.keys())
        scope = _scope(path, source, model, table, shapes, types, given)
    ctx = scope.ctx
    _walk(scope)
    if not len(table):
        warnings.append("the graph has no nodes")
    other = _other_params(ctx, table)
    return Model(
        name=path.stem,
        format="onnx",
        source=source,
        inputs=resolved,
        values=values,
        convs=ctx.convs,
        matmuls=ctx.matmuls,
        other_params=other,
        declared_params=declared_params(ctx, other, scope.tally),
        uncosted=ctx.uncosted,
        uncounted=ctx.uncounted,
        warnings=warnings + ctx.notes.lines(),
        nodes=ctx.nodes,
    )


def _require_values(needed: dict[str, list[str]], source: str) -> None:
    """Refuse, as for a symbolic dim, a model whose conv shapes are computed from a scalar input
    (a sample rate, a hop length) that `-i` gave no value."""
    if not needed:
        return
    name, ops = next(iter(needed.items()))
    more = f" (and {len(ops) - 1} more)" if len(ops) > 1 else ""
    how = " ".join(f"-i {quote(n)[1:-1]}=VALUE" for n in needed)
    raise InputError(f"the input shapes of {quote(ops[0])}{more} are computed from the value of scalar input "
                     f"{quote(name)}; give {'it' if len(needed) == 1 else 'each'}: {how}", source)


def _scope(path: Path, source: str, model: ModelProto, table: Table, shapes: Shapes, types: dict[str, int],
           given: str) -> Scope:
    """The main graph's scope once its shapes are inferred: constants, producers, weights, names."""
    table.nodes = list(model.graph.node)  # the inferred copy: the original can go
    initializers = {t.name: t for t in model.graph.initializer}
    const, made_by = constants(table, set(initializers))
    producer = {o: table.nodes[i] for i, outs in enumerate(table.outputs) for o in outs if o}
    ctx = Ctx(source, shapes, types, const, made_by, Weights(path, initializers, made_by), producer=producer,
              names=Names(module_paths(model, const, made_by)), given=given)
    return Scope(model, table, ctx)


def _parse(path: Path) -> ModelProto:
    from google.protobuf.message import DecodeError

    try:
        lean = read_lean(path)
    except WireError as exc:
        raise InputError(f"not a valid ONNX model: {exc}", path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path) from None
    model = proto.onnx().pb.ModelProto()
    try:
        model.ParseFromString(lean)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InputError(f"not a valid ONNX model: protobuf decoding failed ({exc})", path) from None
    if not model.HasField("graph"):
        raise InputError("not an ONNX model: it has no graph", path)
    if model.functions:  # model-local functions (torch's dynamo exporter can write them): inline
        try:
            model = proto.full("inliner").inline_local_functions(model)
        except Exception as exc:  # the inliner raises what its C++ side throws
            first = first_line(exc)
            raise InputError(f"cannot inline the model's local functions: {first}", path) from None
    return model


def _costed_inside(graph: GraphProto) -> int:
    count = 0
    for node in graph.node:
        count += node.op_type in COSTED
        for sub in subgraphs(node):
            count += _costed_inside(sub)
    return count


def _walk(scope: Scope) -> None:
    """Cost every node of a graph (the main graph or a control-flow body, whose nodes `cost_bodies`
    walks with this function); list what is not costed; warn about ops nobody can infer."""
    ctx, table = scope.ctx, scope.table
    known: dict[tuple[str, str], bool] = {}
    unknown: dict[str, list[str]] = {}
    for index, op in enumerate(table.ops):
        domain = table.domains[index]
        key = (domain, op)
        handler = HANDLERS.get(key)
        node = table.nodes[index]
        if handler is not None:
            convs, matmuls = len(ctx.convs), len(ctx.matmuls)
            handler(ctx, node, index)
            counted: tuple[Literal["conv", "matmul"], int] | None = None
            if len(ctx.convs) > convs:
                counted = ("conv", convs)
            elif len(ctx.matmuls) > matmuls:
                counted = ("matmul", matmuls)
            ctx.nodes.append(_node(ctx, table, index, counted))
            continue
        if key[0] == "" and op in NOT_RUN:
            continue
        ctx.nodes.append(_node(ctx, table, index, None))
        if op == "Reshape":
            _check_reshape(ctx, node, index)
        if op in MAC_LIKE:
            ctx.uncosted[op] = ctx.uncosted.get(op, 0) + 1
            if counted_family(op):
                ctx.uncounted.append(Uncounted(_label(ctx, table, index), op, f"convcost does not count {op}"))
            continue
        if index in table.outer:
            if cost_bodies(scope, index, _walk):
                continue
            inside = sum(_costed_inside(g) for g in subgraphs(node))
            if inside:
                label = _label(ctx, table, index)
                ctx.uncosted[op] = ctx.uncosted.get(op, 0) + 1
                ctx.uncounted.append(Uncounted(label, op,
                                               f"{inside} conv/matmul nodes inside its body are not counted"))
                ctx.notes.add("control-flow bodies",
                              f"{op} {quote(label)}: {inside} conv/matmul nodes inside its body "
                              "are not counted (control flow)")
                continue
        if key not in known:
            try:
                known[key] = key in KNOWN_CONTRIB or proto.has_schema(op, domain)
            except (TypeError, UnicodeError):  # a name that is not valid text
                known[key] = False
        if not known[key]:
            where = _label(ctx, table, index)
            label = quote(f"{domain}::{op}" if domain else op)[1:-1]
            ctx.uncosted[label] = ctx.uncosted.get(label, 0) + 1
            if counted_family(op):
                ctx.uncounted.append(Uncounted(where, label, f"convcost does not know {label}"))
            if any(o and o not in ctx.shapes for o in table.outputs[index]):
                unknown.setdefault(label, []).append(where)
    for label, nodes in unknown.items():
        more = f" and {len(nodes) - 3} more" if len(nodes) > 3 else ""
        which = ", ".join(quote(n) for n in nodes[:3])
        ctx.notes.add("unknown ops", f"unknown op {label} (node {which}{more}): its output shape cannot be "
                      "inferred; convs and matmuls that depend on it are not counted")


#: ONNX element type -> dtype name of a node's output (Node.dtype).
ELEMENT_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}
#: Nodes that hold a value rather than run a kernel: not part of Model.nodes.
NOT_RUN = frozenset({"Constant"})


def _node(ctx: Ctx, table: Table, index: int, counted: tuple[Literal["conv", "matmul"], int] | None) -> Node:
    """The IR node of graph node `index`: tensor names, resolved shapes, dtype, attributes."""
    node = table.nodes[index]
    ins, outs = tuple(table.inputs[index]), tuple(table.outputs[index])
    shape = lambda t: static(ctx.shapes.get(t)) if t else None  # noqa: E731
    label = _label(ctx, table, index)
    try:
        values: dict[str, object] = {k: v for k, v in attrs(node).items() if isinstance(v, int | float | str | list)}
    except Exception:  # an attribute convcost cannot read is no reason to refuse the model here
        values = {}
    return Node(
        name=label, op=table.ops[index] if not table.domains[index] or table.domains[index] == "ai.onnx"
        else f"{table.domains[index]}::{table.ops[index]}",
        inputs=ins, outputs=outs,
        input_shapes=tuple(shape(t) for t in ins), output_shapes=tuple(shape(t) for t in outs),
        dtype=ELEMENT_TYPES.get(ctx.types.get(outs[0], 0)) if outs else None,
        constant=frozenset(i for i, t in enumerate(ins) if t in ctx.const),
        attrs=values, counted=counted, source=text(node.name))


def _label(ctx: Ctx, table: Table, index: int) -> str:
    """A node's name in messages, after its body's prefix (`Loop_2/body/`) inside control flow."""
    return joined(ctx.names.prefix, table.label(index))


def _check_reshape(ctx: Ctx, node: NodeProto, index: int) -> None:
    """onnx's inference trusts a Reshape's target; a wrong element count is a model onnxruntime
    cannot run at this input size (often an `-i` batch a hard-coded target cannot take)."""
    before = static(ctx.shapes.get(node.input[0])) if node.input else None
    after = static(ctx.shapes.get(node.output[0])) if node.output else None
    if before is not None and after is not None and math.prod(before) != math.prod(after):
        ctx.invalid(node, index, f"turns {list(before)} ({math.prod(before)} elements) into {list(after)} "
                    f"({math.prod(after)} elements)")


def _root(ctx: Ctx, name: str) -> str:
    """Walk a constant back through reshapes, casts and transposes to the tensor the model stores.

    Identity stops the walk: exporters alias one stored tensor to several parameters with it
    (torch.onnx deduplicates equal initializers), and each is a parameter of its own."""
    for _ in range(64):
        node = ctx.made_by.get(name)
        if node is None or node.op_type not in TRANSFORMS or node.op_type == "Identity" or not node.input:
            break
        name = node.input[0]
    return name


def _other_params(ctx: Ctx, table: Table) -> int:
    """Learned parameters outside convs and matmuls: normalization scales and biases, biases added
    after a MatMul, layer scales, embeddings (see PARAM_INPUTS). Running statistics, shape
    tensors, scalars and quantization scales are not parameters."""
    counted: set[str] = set()
    total = 0
    for index, op in enumerate(table.ops):
        positions = PARAM_INPUTS.get(op, ())
        inputs = table.inputs[index]
        if positions == () or (table.domains[index], op) in HANDLERS:
            continue
        for i in range(len(inputs)) if positions is None else positions:
            if i >= len(inputs) or inputs[i] not in ctx.const:
                continue
            root = _root(ctx, inputs[i])
            maker = ctx.made_by.get(root)
            stored = maker is None or maker.op_type in ("Constant", "ConstantOfShape", "Identity")
            if not stored or root in ctx.covered or root in counted or ctx.types.get(root) not in FLOAT_TYPES:
                continue
            shape = static(ctx.shapes.get(root))
            if shape is None or math.prod(shape) <= 1:
                continue
            counted.add(root)
            total += math.prod(shape)
    return total
