"""ONNX control flow: the convs and matmuls inside If, Loop and Scan bodies.

A body is costed as a graph of its own. It becomes a small model: the body's nodes; its formal
inputs bound to what the node feeds them (an If branch has none, a Loop body gets the iteration
number, its condition and the carried values, a Scan body the states and one slice of each
scanned input); and the outer tensors it reads, as initializers where their values are known (a
constant, a folded shape, a given `-i NAME=VALUE`) and as inputs with their shapes otherwise.
That model goes through the shape inference, value folding and op handlers of the main graph,
so a body resolves whatever the main graph would, at any depth of nesting.

Which bodies count, and how often:
- If: the branch its condition selects where the condition folds; else the branch with more
  MACs, with a warning naming the If.
- Loop: M times where the trip count M is constant and the body's condition cannot stop it
  early; else once, with a warning. Carried values take the shapes of their initial values;
  where the body changes them, each iteration is followed with its own (up to MAX_UNROLL).
- Scan: once per slice of the scanned axis, where that axis is static.
Iteration k > 0 repeats the rows of iteration 0 as `NAME#k`, as the TorchScript loader names a
layer called again, and its weights count once in params.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from convcost.ir.model import Uncounted
from convcost.loaders.onnx import proto
from convcost.loaders.onnx.dims import Shapes, static
from convcost.loaders.onnx.graph import (
    GraphError,
    Names,
    Table,
    attrs,
    constants,
    evaluation_order,
    joined,
    node_label,
    outer_names,
    quote,
)
from convcost.loaders.onnx.ops import COSTED, HANDLERS, RULES, Ctx
from convcost.loaders.onnx.shapes import infer
from convcost.loaders.onnx.weights import Weights
from convcost.util.errors import InputError
from convcost.util.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    from onnx import GraphProto, ModelProto, TensorProto, ValueInfoProto

    from convcost.loaders.onnx.values import Evaluator

#: Bodies nested deeper than this are listed as not counted.
MAX_DEPTH = 16
#: Iterations followed one by one where a body changes the shapes it carries.
MAX_UNROLL = 16
#: Rows one Loop or Scan may add (iterations x convs and matmuls per iteration).
MAX_ROWS = 100_000
_INT64, _BOOL = 7, 9
#: How a body's name reads in layer names, by the attribute that holds it.
BRANCH = {"then_branch": "then", "else_branch": "else", "body": "body"}


@dataclass
class Tally:
    """What the walk of one model adds up over all its scopes."""

    #: params of the rows that repeat a Loop/Scan iteration: their weights are counted once
    repeat_params: int = 0


@dataclass
class Scope:
    """One graph being walked, the main graph or a body, with what its own bodies read from it."""

    model: ModelProto  # after shape inference; its nodes are `table`'s
    table: Table
    ctx: Ctx
    depth: int = 0
    tally: Tally = field(default_factory=Tally)
    _inits: dict[str, TensorProto] | None = None
    _infos: dict[str, ValueInfoProto] | None = None
    _values: Evaluator | None = None

    @property
    def inits(self) -> dict[str, TensorProto]:
        if self._inits is None:
            self._inits = {t.name: t for t in self.model.graph.initializer}
        return self._inits

    def value(self, name: str) -> np.ndarray | None:
        """A small tensor's value, where constants, static shapes and given inputs fix it."""
        from convcost.loaders.onnx.values import MAX_ELEMENTS, Evaluator

        if not name:
            return None
        dims = static(self.ctx.shapes.get(name))
        if dims is not None and math.prod(dims) > MAX_ELEMENTS:
            return None
        if self._values is None:
            self._values = Evaluator(self.model.graph, self.table, self.ctx.shapes, dict(self.inits))
        try:
            return self._values.value(name)
        except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError):
            return None  # best effort, as in `values.fold`

    def info(self, name: str) -> ValueInfoProto | None:
        """A tensor's type and shape as this scope knows them (for a body that reads it)."""
        if self._infos is None:
            g = self.model.graph
            self._infos = {vi.name: vi for vi in (*g.input, *g.value_info, *g.output)}
        vi = self._infos.get(name)
        if vi is not None:
            return vi
        t = self.inits.get(name)
        if t is not None:
            return proto.make_tensor_value_info(name, t.data_type, list(t.dims))
        elem = self.ctx.types.get(name)
        if elem is None:
            return None
        dims = self.ctx.shapes.get(name)
        return proto.make_tensor_value_info(name, elem, None if dims is None else list(dims))


Walk = Callable[[Scope], None]
#: Counts the bodies of one control-flow node; False where it cannot (the caller lists them).
Control = Callable[[Scope, int, Walk], bool]
CONTROL: Registry[tuple[str, str], Control] = Registry("ONNX control-flow op")


def cost_bodies(scope: Scope, index: int, walk: Walk) -> bool:
    """Count the convs and matmuls in the bodies of node `index` (If, Loop, Scan) into `scope.ctx`.

    `walk` costs a scope's nodes (the loader's walk; it calls back here for nested bodies).
    Returns False for an op whose bodies convcost does not follow."""
    handler = CONTROL.get((scope.table.domains[index], scope.table.ops[index]))
    if handler is None or scope.depth >= MAX_DEPTH:
        return False
    return handler(scope, index, walk)


@dataclass
class Bind:
    """What a body's formal input holds: a type and shape, and its value where known."""

    info: ValueInfoProto | None
    value: np.ndarray | None = None


def _truth(value: np.ndarray | None) -> bool | None:
    return bool(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def _count(value: np.ndarray | None) -> int | None:
    if value is None or value.size != 1 or value.dtype.kind not in "biu":
        return None
    return max(int(value.reshape(-1)[0]), 0)


def _scalar(elem: int) -> ValueInfoProto:
    return proto.make_tensor_value_info("", elem, [])


def _elem(vi: ValueInfoProto | None) -> int:
    return vi.type.tensor_type.elem_type if vi is not None and vi.type.HasField("tensor_type") else 0


def _dropped(vi: ValueInfoProto | None, axis: int) -> ValueInfoProto | None:
    """A scanned input's type with the scanned axis removed: one slice, as the body sees it."""
    if vi is None or not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return vi
    out = proto.onnx().pb.ValueInfoProto()
    out.CopyFrom(vi)
    dims = out.type.tensor_type.shape.dim
    rank = len(dims)
    if not -rank <= axis < rank:
        return None
    del dims[axis % rank]
    return out


# --- walking one body ----------------------------------------------------------------------------


def _body_model(scope: Scope, graph: GraphProto, binds: list[Bind | None]) -> tuple[ModelProto, set[str]]:
    """The body as a model of its own; also the initializers that hold no model constant
    (bound inputs, values of outer activations), which must not count as parameters."""
    pb = proto.onnx().pb
    sub = pb.ModelProto()
    sub.ir_version = max(scope.model.ir_version, 4)  # initializers need not be inputs
    sub.opset_import.extend(scope.model.opset_import)
    g = sub.graph
    g.name = graph.name
    computed: set[str] = set()
    stale = False
    for i, formal in enumerate(graph.input):
        bind = binds[i] if i < len(binds) else None
        if bind is None:
            g.input.append(formal)
            continue
        if bind.value is not None:
            tensor = _tensor(formal.name, _elem(bind.info) or _elem(formal), bind.value)
            if tensor is not None:
                g.initializer.append(tensor)
                computed.add(formal.name)
                continue
        vi = pb.ValueInfoProto()
        vi.CopyFrom(bind.info if bind.info is not None else formal)
        vi.name = formal.name
        declared = formal.type.tensor_type if formal.type.HasField("tensor_type") else None
        if declared is not None and declared.HasField("shape") and declared.shape != vi.type.tensor_type.shape:
            stale = True  # onnx's shapes inside the body were inferred for other input shapes
        g.input.append(vi)
    for name in sorted(outer_names(graph)):
        t = scope.inits.get(name)
        if t is not None:
            g.initializer.append(t)
            continue
        value = scope.value(name)
        tensor = _tensor(name, scope.ctx.types.get(name, 0), value) if value is not None else None
        if tensor is not None:
            g.initializer.append(tensor)
            computed.add(name)
            continue
        g.input.append(scope.info(name) or proto.make_tensor_value_info(name, 1, None))
    g.initializer.extend(graph.initializer)
    g.node.extend(graph.node)
    g.output.extend(graph.output)
    if stale:
        for out in g.output:
            if out.type.HasField("tensor_type"):
                out.type.tensor_type.ClearField("shape")
    else:
        g.value_info.extend(graph.value_info)
    return sub, computed


def _tensor(name: str, elem: int, value: np.ndarray) -> TensorProto | None:
    try:
        return proto.full("helper").make_tensor(name, elem or _INT64, list(value.shape), value.reshape(-1).tolist())
    except (ValueError, TypeError, OverflowError):  # values a tensor of that type cannot hold
        return None


Shaped = tuple["ModelProto", Table, Shapes, dict[str, int], set[str]]


def _shape_body(scope: Scope, graph: GraphProto, binds: list[Bind | None]) -> Shaped | str:
    """The body as a model with its shapes inferred (model, table, shapes, types, and the
    initializers that hold no model constant), or why that failed."""
    model, computed = _body_model(scope, graph, binds)
    table = Table(model.graph)
    available = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    try:
        order = evaluation_order(table, available)
        if order is not None:
            nodes = [type(n)() for n in model.graph.node]
            for copy, i in zip(nodes, order, strict=True):
                copy.CopyFrom(model.graph.node[i])
            del model.graph.node[:]
            model.graph.node.extend(nodes)
            table = Table(model.graph)
        model, shapes, types = infer(model, table, RULES, scope.ctx.source, costed=HANDLERS.keys())
    except (GraphError, InputError) as exc:
        return exc.message if isinstance(exc, InputError) else str(exc)
    table.nodes = list(model.graph.node)
    return model, table, shapes, types, computed


def _scope_of(scope: Scope, graph: GraphProto, names: Names, shaped: Shaped) -> Scope:
    """A body's scope: its own shapes, constants and producers on top of the outer scope's."""
    ctx = scope.ctx
    model, table, shapes, types, computed = shaped
    reads = outer_names(graph)  # constants only where the outer scope has them as constants
    base = ({t.name for t in model.graph.initializer} - computed - reads) | {n for n in reads if n in ctx.const}
    const, made_by = constants(table, base)
    made_by = {**ctx.made_by, **made_by}
    own = {t.name: t for t in graph.initializer}
    producer = {**ctx.producer, **{o: table.nodes[i] for i, outs in enumerate(table.outputs) for o in outs if o}}
    weights = Weights(ctx.weights.path, {**ctx.weights.initializers, **own}, made_by)
    inner = Ctx(ctx.source, shapes, types, const, made_by, weights, producer=producer, names=names,
                covered=ctx.covered, geometry=ctx.geometry)
    return Scope(model, table, inner, scope.depth + 1, scope.tally)


def walk_body(scope: Scope, graph: GraphProto, names: Names, binds: list[Bind | None], walk: Walk) -> Scope:
    """Cost one body in a scope of its own (convs, matmuls, warnings in its own Ctx).

    Convs and weights it shares with the outer scope keep their identity: `covered` and the conv
    geometry cache are shared. A body whose shapes cannot be inferred comes back with each of its
    convs and matmuls listed as not counted."""
    shaped = _shape_body(scope, graph, binds)
    if isinstance(shaped, str):
        return _failed(scope, graph, names, f"convcost cannot shape its body: {shaped}")
    body = _scope_of(scope, graph, names, shaped)
    pins = pinned(body)
    if pins:
        model, table = body.model, body.table
        model.graph.value_info.extend(pins)
        try:
            model, shapes, types = infer(model, table, RULES, scope.ctx.source, costed=HANDLERS.keys())
        except InputError:
            pass  # the body as shaped before: what follows its If stays unknown
        else:
            table.nodes = list(model.graph.node)
            body = _scope_of(scope, graph, names, (model, table, shapes, types, shaped[4]))
    walk(body)
    return body


def pinned(scope: Scope) -> list[ValueInfoProto]:
    """Shapes for the outputs of Ifs whose condition folds, where onnx leaves them open (its
    inference merges both branches: a stride that differs between them leaves the spatial dims
    unknown). The caller runs inference again with them, so the layers after the If resolve."""
    found: list[ValueInfoProto] = []
    table, shapes = scope.table, scope.ctx.shapes
    for index, op in enumerate(table.ops):
        outs = [o for o in table.outputs[index] if o]
        if op != "If" or table.domains[index] or all(static(shapes.get(o)) is not None for o in outs):
            continue
        node = table.nodes[index]
        cond = _truth(scope.value(node.input[0] if node.input else ""))
        graph = attrs(node).get("then_branch" if cond else "else_branch") if cond is not None else None
        if not proto.is_graph(graph) or len(graph.output) != len(node.output):
            continue
        shaped = _shape_body(scope, graph, [])
        if isinstance(shaped, str):
            continue
        for out, vi in zip(node.output, graph.output, strict=True):
            dims = static(shaped[2].get(vi.name))
            if out and dims is not None and static(shapes.get(out)) is None:
                found.append(proto.make_tensor_value_info(out, shaped[3].get(vi.name, 1), list(dims)))
    return found


def _failed(scope: Scope, graph: GraphProto, names: Names, why: str) -> Scope:
    """A body convcost cannot shape: every conv and matmul in it (at any depth) is not counted."""
    ctx = scope.ctx
    inner = Ctx(ctx.source, {}, {}, set(), {}, ctx.weights, names=names, covered=ctx.covered,
                geometry=ctx.geometry)
    found = _list_costed(inner, graph, names.prefix, why)
    if found:
        inner.notes.add("control-flow bodies", f"{quote(names.prefix.rstrip('/'))}: {found} conv/matmul nodes "
                        f"are not counted: {why}")
    model = proto.onnx().pb.ModelProto()
    return Scope(model, Table(model.graph), inner, scope.depth + 1, scope.tally)


def _list_costed(ctx: Ctx, graph: GraphProto, prefix: str, why: str) -> int:
    found = 0
    for i, node in enumerate(graph.node):
        label = joined(prefix, node_label(node, i))
        if node.op_type in COSTED:
            ctx.uncosted[node.op_type] = ctx.uncosted.get(node.op_type, 0) + 1
            ctx.uncounted.append(Uncounted(label, node.op_type, why))
            found += 1
        for a in node.attribute:
            for sub in subgraphs_of(a):
                found += _list_costed(ctx, sub, f"{label}/{BRANCH.get(a.name, a.name)}/", why)
    return found


def subgraphs_of(attribute: object) -> list[GraphProto]:
    """The graphs an attribute holds (GRAPH or GRAPHS), none for any other attribute."""
    kind = getattr(attribute, "type", 0)
    if kind == 5:
        return [attribute.g]  # type: ignore[attr-defined]
    if kind == 10:
        return list(attribute.graphs)  # type: ignore[attr-defined]
    return []


# --- adding a body's rows to the scope that holds it ---------------------------------------------


def _work(ctx: Ctx) -> int:
    return sum(c.macs for c in ctx.convs) + sum(m.macs for m in ctx.matmuls)


def _rows(into: Ctx, body: Ctx, k: int, tally: Tally) -> None:
    """The body's convs and matmuls as iteration `k` (rows `NAME#k` after the first)."""
    if not k:
        into.convs.extend(body.convs)
        into.matmuls.extend(body.matmuls)
        return
    into.convs.extend(c.with_changes(name=f"{c.name}#{k}") for c in body.convs)
    into.matmuls.extend(replace(m, name=f"{m.name}#{k}") for m in body.matmuls)
    tally.repeat_params += sum(c.params for c in body.convs) + sum(m.params for m in body.matmuls)


def _extras(into: Ctx, body: Ctx) -> None:
    """The body's uncounted nodes (each once), uncosted op counts and warnings."""
    seen = {u.name for u in into.uncounted}
    into.uncounted.extend(u for u in body.uncounted if u.name not in seen)
    for op, n in body.uncosted.items():
        into.uncosted[op] = into.uncosted.get(op, 0) + n
    for reason, messages in body.notes.groups.items():
        for message in messages:
            into.notes.add(reason, message)
        into.notes.counts[reason] += body.notes.counts[reason] - len(messages)


def _not_counted(ctx: Ctx, name: str, op: str, why: str) -> None:
    ctx.uncosted[op] = ctx.uncosted.get(op, 0) + 1
    ctx.uncounted.append(Uncounted(name, op, why))
    ctx.notes.add("control-flow bodies", f"{op} {quote(name)}: {why}")


def _repeat(scope: Scope, graph: GraphProto, prefix: str, first: Scope, runs: int,
            rebind: Callable[[int | None, Scope | None], list[Bind | None]], carried: list[tuple[str, str]],
            walk: Walk, name: str, op: str) -> None:
    """Count `runs` iterations of a body walked once as `first` (iteration number unknown, carried
    values by shape only). `carried` pairs each carried body input with the output that feeds it
    back; `rebind(k, previous)` binds iteration k's inputs with values."""
    ctx = scope.ctx
    same = all(static(first.ctx.shapes.get(i)) == static(first.ctx.shapes.get(o)) for i, o in carried)
    if runs > 1 and not (same and not first.ctx.uncounted) and runs <= MAX_UNROLL:
        # the shapes or values differ between iterations: follow each with its own
        previous: Scope | None = None
        for k in range(runs):
            previous = walk_body(scope, graph, ctx.names.scope(prefix), rebind(k, previous), walk)
            _rows(ctx, previous.ctx, k, scope.tally)
            _extras(ctx, previous.ctx)
        return
    _extras(ctx, first.ctx)
    if not same and runs > 1:
        _rows(ctx, first.ctx, 0, scope.tally)
        _not_counted(ctx, name, op, f"its body changes the shapes it carries from one iteration to the next; "
                     f"convcost follows at most {MAX_UNROLL} iterations, not {runs} (the first is counted)")
        return
    per = len(first.ctx.convs) + len(first.ctx.matmuls)
    shown = min(runs, max(1, MAX_ROWS // per)) if per else 0  # a body without rows adds none
    for k in range(shown):
        _rows(ctx, first.ctx, k, scope.tally)
    if per and shown < runs:
        _not_counted(ctx, name, op, f"{runs} iterations of {per} convs/matmuls make more than {MAX_ROWS:,} rows; "
                     f"the first {shown} are counted")


# --- the ops -------------------------------------------------------------------------------------


@CONTROL.register(("", "If"))
def _if(scope: Scope, index: int, walk: Walk) -> bool:
    node = scope.table.nodes[index]
    a = attrs(node)
    then, other_graph = a.get("then_branch"), a.get("else_branch")
    if not proto.is_graph(then) or not proto.is_graph(other_graph):
        return False
    branches = {"then": then, "else": other_graph}
    ctx = scope.ctx
    name = ctx.names.take(node, index)
    cond = _truth(scope.value(node.input[0] if node.input else ""))
    if cond is not None:
        key = "then" if cond else "else"
        body = walk_body(scope, branches[key], ctx.names.scope(f"{name}/{key}/"), [], walk).ctx
        _rows(ctx, body, 0, scope.tally)
        _extras(ctx, body)
        return True
    walked = {key: walk_body(scope, g, ctx.names.scope(f"{name}/{key}/"), [], walk).ctx
              for key, g in branches.items()}
    work = {key: _work(c) for key, c in walked.items()}
    pick = "else" if work["else"] > work["then"] else "then"
    other = "then" if pick == "else" else "else"
    _rows(ctx, walked[pick], 0, scope.tally)
    _extras(ctx, walked[pick])
    if walked[other].uncounted:  # the branch left out may cost more than it shows
        _extras(ctx, walked[other])
    ctx.notes.add("If conditions not known",
                  f"If {quote(name)}: its condition is not known before the model runs; the costlier branch "
                  f"is counted ({pick}: {work[pick]:,} MACs, {other}: {work[other]:,} MACs)")
    return True


@CONTROL.register(("", "Loop"))
def _loop(scope: Scope, index: int, walk: Walk) -> bool:
    node = scope.table.nodes[index]
    graph = attrs(node).get("body")
    inputs = scope.table.inputs[index]
    carried = list(inputs[2:])
    if not proto.is_graph(graph) or len(graph.input) != 2 + len(carried) or \
            len(graph.output) < 1 + len(carried):
        return False  # not a valid Loop: onnx's inference has said so already
    ctx = scope.ctx
    name = ctx.names.take(node, index)
    trip_name = inputs[0] if inputs else ""
    cond_name = inputs[1] if len(inputs) > 1 else ""
    trip = _count(scope.value(trip_name))
    start = _truth(scope.value(cond_name)) if cond_name else True
    if trip == 0 or start is False:
        ctx.notes.add("loops that never run", f"Loop {quote(name)} never runs ("
                      f"{'its trip count is 0' if trip == 0 else 'its condition starts false'})")
        return True
    formals = [vi.name for vi in graph.input]
    outs = [vi.name for vi in graph.output]

    def rebind(k: int | None, previous: Scope | None) -> list[Bind | None]:
        import numpy as np

        # the body runs only while its condition is true: inside, the condition input is true
        binds: list[Bind | None] = [Bind(_scalar(_INT64), None if k is None else np.array(k, dtype=np.int64)),
                                    Bind(_scalar(_BOOL), np.array(True))]
        for j, outer in enumerate(carried):
            if previous is None:
                binds.append(Bind(scope.info(outer), None if k is None else scope.value(outer)))
            else:
                binds.append(Bind(previous.info(outs[1 + j]), previous.value(outs[1 + j])))
        return binds

    prefix = f"{name}/body/"
    first = walk_body(scope, graph, ctx.names.scope(prefix), rebind(None, None), walk)
    stop = _truth(first.value(outs[0])) if cond_name else True  # without a cond input its output is ignored
    runs = trip if trip is not None and trip_name and stop is True else 1 if stop is False else None
    if runs is None:
        why = ("its trip count is not known before the model runs" if trip is None
               else f"its condition can end it before {trip:,} iterations")
        _rows(ctx, first.ctx, 0, scope.tally)
        _extras(ctx, first.ctx)
        ctx.notes.add("loops counted once", f"Loop {quote(name)}: {why}; its body is counted once")
        return True
    pairs = [(formals[2 + j], outs[1 + j]) for j in range(len(carried)) if 1 + j < len(outs)]
    _repeat(scope, graph, prefix, first, runs, rebind, pairs, walk, name, "Loop")
    return True


@CONTROL.register(("", "Scan"))
def _scan(scope: Scope, index: int, walk: Walk) -> bool:
    node = scope.table.nodes[index]
    a = attrs(node)
    graph, m = a.get("body"), a.get("num_scan_inputs")
    inputs = scope.table.inputs[index]
    opset = next((o.version for o in scope.model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not proto.is_graph(graph) or not isinstance(m, int) or opset < 9:
        return False  # Scan-8 (batched, with sequence lengths) is not followed
    n = len(inputs) - m
    axes = a.get("scan_input_axes") or [0] * m
    if n < 0 or len(graph.input) != len(inputs) or len(axes) != m or len(graph.output) < n:
        return False
    ctx = scope.ctx
    name = ctx.names.take(node, index)
    outs = [vi.name for vi in graph.output]
    first_in = static(ctx.shapes.get(inputs[n])) if m else None
    runs = first_in[axes[0] % len(first_in)] if first_in else None

    def rebind(k: int | None, previous: Scope | None) -> list[Bind | None]:
        binds: list[Bind | None] = []
        for j in range(n):
            if previous is None:
                binds.append(Bind(scope.info(inputs[j]), None if k is None else scope.value(inputs[j])))
            else:
                binds.append(Bind(previous.info(outs[j]), previous.value(outs[j])))
        binds.extend(Bind(_dropped(scope.info(inputs[n + j]), axes[j])) for j in range(m))
        return binds

    prefix = f"{name}/body/"
    first = walk_body(scope, graph, ctx.names.scope(prefix), rebind(None, None), walk)
    if runs is None:
        _rows(ctx, first.ctx, 0, scope.tally)
        _extras(ctx, first.ctx)
        ctx.notes.add("loops counted once", f"Scan {quote(name)}: the length of its scanned axis is not known; "
                      "its body is counted once")
        return True
    pairs = [(graph.input[j].name, outs[j]) for j in range(min(n, len(outs)))]
    _repeat(scope, graph, prefix, first, runs, rebind, pairs, walk, name, "Scan")
    return True


def declared_params(ctx: Ctx, other: int, tally: Tally) -> int | None:
    """The model's params where Loop/Scan iterations repeat rows (each weight once), else None
    (params are then the sum over rows)."""
    if not tally.repeat_params:
        return None
    return sum(c.params for c in ctx.convs) + sum(m.params for m in ctx.matmuls) + other - tally.repeat_params

