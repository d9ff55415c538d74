"""Graph structure the ONNX loader needs: node order, attributes, constants and layer names.

Kept apart from shape inference and op costing so each can be read (and tested) on its own.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto

# AttributeProto.AttributeType values (onnx.proto), so reading attributes needs no onnx.helper.
_FLOAT, _INT, _STRING, _TENSOR, _GRAPH, _FLOATS, _INTS, _STRINGS = 1, 2, 3, 4, 5, 6, 7, 8
_GRAPHS = 10

#: Ops whose output is random even when every input is constant.
RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                        "Multinomial", "Bernoulli"})


class GraphError(ValueError):
    """A graph that cannot be evaluated in any order (message names the nodes)."""


def attrs(node: NodeProto) -> dict[str, Any]:
    """A node's attributes as Python values (ints, floats, str, lists, TensorProto, GraphProto)."""
    out: dict[str, Any] = {}
    for a in node.attribute:
        t = a.type
        if t == _INT:
            out[a.name] = a.i
        elif t == _INTS:
            out[a.name] = list(a.ints)
        elif t == _FLOAT:
            out[a.name] = a.f
        elif t == _FLOATS:
            out[a.name] = list(a.floats)
        elif t == _STRING:
            out[a.name] = a.s.decode("utf-8", "replace")
        elif t == _STRINGS:
            out[a.name] = [s.decode("utf-8", "replace") for s in a.strings]
        elif t == _TENSOR:
            out[a.name] = a.t
        elif t == _GRAPH:
            out[a.name] = a.g
        elif t == _GRAPHS:
            out[a.name] = list(a.graphs)
    return out


def has_subgraph(node: NodeProto) -> bool:
    return any(a.type in (_GRAPH, _GRAPHS) for a in node.attribute)


def subgraphs(node: NodeProto) -> Iterator[GraphProto]:
    for a in node.attribute:
        if a.type == _GRAPH:
            yield a.g
        elif a.type == _GRAPHS:
            yield from a.graphs


def outer_names(graph: GraphProto) -> set[str]:
    """Names a subgraph reads from enclosing scopes (used neither as its input nor defined in it)."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        used.update(x for x in node.input if x)
        for sub in subgraphs(node):
            used |= outer_names(sub)
        defined.update(node.output)
    return used - defined


def text(value: str | bytes) -> str:
    """A protobuf string as text: upb hands back bytes where a (proto2) string is not UTF-8."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def quote(value: str | bytes, limit: int = 80) -> str:
    """A name from the model, quoted for a one-line message: control characters escaped, long
    names cut."""
    name = text(value)
    return repr(name if len(name) <= limit else name[: limit - 3] + "...")


def op_key(node: NodeProto) -> tuple[str, str]:
    """(domain, op type), with the default domain spelled "" however the model spells it."""
    domain = text(node.domain)
    return ("" if domain == "ai.onnx" else domain), text(node.op_type)


def node_label(node: NodeProto, index: int) -> str:
    """How messages name a node: its name, else its first output, else op type and position."""
    if node.name:
        return text(node.name)
    first = next((o for o in node.output if o), "")
    return text(first) or f"{text(node.op_type)}_{index}"


def joined(prefix: str, name: str) -> str:
    """`prefix` + `name` with one slash between them where both bring one (legacy-exporter names
    start with `/`)."""
    return prefix + name[1:] if prefix.endswith("/") and name.startswith("/") else prefix + name


#: Standard ops with graph attributes; ops of other domains may have them too.
CONTROL_FLOW = frozenset({"If", "Loop", "Scan", "SequenceMap"})


class Table:
    """Each node's op, domain, inputs and outputs, read from protobuf once.

    Reading a protobuf field from Python builds a new object every time; passes over a graph
    of 100,000 nodes read these plain tuples instead.
    """

    def __init__(self, graph: GraphProto) -> None:
        self.nodes = list(graph.node)
        self.ops: list[str] = []
        self.domains: list[str] = []
        self.inputs: list[tuple[str, ...]] = []
        self.outputs: list[tuple[str, ...]] = []
        #: index -> outer-scope names its subgraphs read (control flow only)
        self.outer: dict[int, list[str]] = {}
        ops, domains, inputs, outputs = self.ops, self.domains, self.inputs, self.outputs
        for i, node in enumerate(self.nodes):
            op, domain = node.op_type, node.domain
            if op.__class__ is not str or domain.__class__ is not str:
                op, domain = text(op), text(domain)
            if domain == "ai.onnx":
                domain = ""
            ops.append(op)
            domains.append(domain)
            inputs.append(tuple(node.input))
            outputs.append(tuple(node.output))
            if (op in CONTROL_FLOW or domain) and has_subgraph(node):
                self.outer[i] = [n for sub in subgraphs(node) for n in outer_names(sub)]

    def __len__(self) -> int:
        return len(self.nodes)

    def label(self, i: int) -> str:
        return node_label(self.nodes[i], i)


def evaluation_order(table: Table, available: set[str]) -> list[int] | None:
    """None when nodes are already topologically sorted, else a sorted order (stable).

    `available` are the graph's inputs and initializers. Raises GraphError for a tensor nobody
    produces, a tensor produced twice, or a cycle.
    """
    producer: dict[str, int] = {}
    for i, outs in enumerate(table.outputs):
        for out in outs:
            if out:
                if out in producer:
                    first = table.label(producer[out])
                    raise GraphError(f"tensor {quote(out)} is produced by two nodes ({quote(first)} and "
                                     f"{quote(table.label(i))})")
                producer[out] = i
    seen = set(available)
    seen.add("")
    sorted_already = True
    for i, ins in enumerate(table.inputs):
        reads = ins + tuple(table.outer.get(i, ()))
        for name in reads:
            if name not in seen:
                if name not in producer:
                    raise GraphError(f"node {quote(table.label(i))} ({quote(table.ops[i])}) reads "
                                     f"{quote(name)}, "
                                     "which no node, graph input or initializer produces")
                sorted_already = False
        seen.update(table.outputs[i])
    if sorted_already:
        return None
    users: list[list[int]] = [[] for _ in table.nodes]
    waiting = []
    for i, ins in enumerate(table.inputs):
        deps = {producer[n] for n in (*ins, *table.outer.get(i, ())) if n in producer and n not in available}
        waiting.append(len(deps))
        for j in deps:
            users[j].append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(table):
        stuck = [table.label(i) for i, w in enumerate(waiting) if w > 0]
        more = f" and {len(stuck) - 3} more" if len(stuck) > 3 else ""
        raise GraphError(f"graph has a cycle: nodes {', '.join(quote(s) for s in stuck[:3])}{more} "
                         "each wait for one another")
    return order


class Names:
    """Unique, stable layer names.

    By default a node's name, else its output's; repeats get `_2`, `_3`... With `paths` (a torch
    export, see naming.py) the module path instead, and repeats (a module called again) get
    TorchScript's call index: `block.conv`, `block.conv#1`, ... Nodes of a control-flow body are
    named by `scope`: the body's prefix, then the name.
    """

    def __init__(self, paths: Callable[[NodeProto], str] | None = None) -> None:
        self.paths = paths
        self.used: set[str] = set()
        self.next: dict[str, int] = {}  # base name + separator -> the suffix to try next (no quadratic search)
        self.prefix = ""

    def scope(self, prefix: str) -> Names:
        """Names for the nodes of a subgraph: `prefix` (`If_3/then/`, the full path) before each name.

        The prefix holds a unique name already, so the scope's names are unique among themselves
        only: walking one body twice (each Loop iteration) names its nodes the same way twice."""
        inner = copy.copy(self)
        inner.used, inner.next = set(), {}
        inner.prefix = prefix
        return inner

    def base(self, node: NodeProto, index: int) -> str:
        """The name before any repeat suffix."""
        return self.paths(node) if self.paths is not None else node_label(node, index)

    def take(self, node: NodeProto, index: int) -> str:
        """A new unique name for `node`, after the scope's prefix."""
        base = joined(self.prefix, self.base(node, index))
        if self.paths is not None:
            return self._unique(base, "#", 1)
        return self._unique(base, "_", 2)

    def _unique(self, base: str, sep: str, first: int) -> str:
        name = base
        if name in self.used:
            key = base + sep
            k = self.next.get(key, first)
            while f"{base}{sep}{k}" in self.used:
                k += 1
            name = f"{base}{sep}{k}"
            self.next[key] = k + 1
        self.used.add(name)
        return name


def constants(table: Table, initializers: set[str]) -> tuple[set[str], dict[str, NodeProto]]:
    """Names whose value is fixed by the model (initializers, Constant, and ops of constants only).

    Returns the constant names and, for constants made by a node, that node.
    """
    const = set(initializers)
    made_by: dict[str, NodeProto] = {}
    for i, op in enumerate(table.ops):
        if op in RANDOM_OPS or i in table.outer:
            continue
        inputs = [x for x in table.inputs[i] if x]
        if op == "Constant" or (inputs and all(x in const for x in inputs)):
            for out in table.outputs[i]:
                if out:
                    const.add(out)
                    made_by[out] = table.nodes[i]
    return const, made_by
