"""torch.export archives (`.pt2`): every conv and matrix product of the exported graph, read as JSON.

Steps: open the zip without unpickling anything (`archive`), bind `-i` to the program's inputs
(fixed dims must match; dynamic dims take any value in their exported range, and the guards
recorded at export are checked), give every tensor its shape by evaluating the graph's size
expressions (`symbols`), and turn aten calls into convcost ops (`ops`) and every call into a
`Node` (Model.nodes). Neither torch nor numpy is
imported (numpy only when a weight-based feature reads a weight).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from convcost.ir import model as ir
from convcost.ir.inputs import Inputs, givens
from convcost.ir.model import Model, Shape, Uncounted, WeightLoader, counted_family
from convcost.loaders.aten_ops import COPY_IF_STRIDED, METADATA_OPS, scalar_attr
from convcost.loaders.notes import repeated_calls
from convcost.loaders.pt2.archive import Archive, dtype_name, open_archive
from convcost.loaders.pt2.ops import (
    HANDLERS,
    UNNAMED,
    VIEW_OPS,
    Graph,
    Node,
    multiplies,
    op_name,
    tensor_ref,
    tensor_refs,
)
from convcost.loaders.pt2.symbols import Unresolved, check_guard, evaluate, symbol_of
from convcost.util.errors import InputError, short

#: The newest schema major version convcost has read (torch 2.13 writes 8.20).
SCHEMA_MAJOR = 8
NO_FORMULA = "convcost has no formula for it"


def load_pt2(path: str | Path, inputs: Inputs | None = None) -> Model:
    """Count a `torch.export.save` archive. `inputs` comes from `-i` ("" is the single input)."""
    path = Path(path)
    archive = open_archive(path)
    try:
        return _Reader(archive).model(_shapes(inputs, str(path)))
    except InputError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise InputError(f"malformed exported program ({type(exc).__name__}: {short(str(exc))}); "
                         "save it again with torch.export.save", path) from None


def _excerpt(text: str, limit: int = 200) -> str:
    """An expression from the file, cut to a length one error line can hold."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def module_path(metadata: object) -> str:
    """The innermost module of a node's `nn_module_stack` ("key,path,type;..."): `layer1.0.conv1`."""
    stack = metadata.get("nn_module_stack") if isinstance(metadata, dict) else None
    if not isinstance(stack, str) or not stack:
        return ""
    parts = _split_entry(stack.split(";")[-1])
    return _plain_path(parts[1]) if len(parts) == 3 else ""


def _split_entry(entry: str) -> list[str]:
    """Split "key,path,type" at top-level commas (a type may hold brackets with commas)."""
    out, start, depth = [], 0, 0
    for i, c in enumerate(entry):
        if c in "[(":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(entry[start:i])
            start = i + 1
    out.append(entry[start:])
    return out


def _plain_path(path: str) -> str:
    """`L['self'].layer1[0].conv1` (older strict exports) -> `layer1.0.conv1`; plain paths unchanged."""
    path = re.sub(r"^L\[['\"]self['\"]\]\.?", "", path)
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    path = re.sub(r"\[['\"]([^'\"]+)['\"]\]", r".\1", path)
    return path.strip(".")


def _shapes(inputs: Inputs | None, source: str) -> dict[str, Shape]:
    """`-i` as shapes: the archive's inputs are tensors (scalar arguments are baked in at export)."""
    shapes: dict[str, Shape] = {}
    for name, given in givens(inputs).items():
        if given.shape is None:
            raise InputError(f"-i {name + '=' if name else ''}{given.text}: a torch.export archive's inputs "
                             "are tensors and take shapes (scalar arguments are fixed at export)", source)
        shapes[name] = given.shape
    return shapes


class _Reader:
    """One exported program: its signature, its inputs' shapes, and the graph walk."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.source = str(archive.path)
        program = archive.program
        if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
            raise InputError("the exported program JSON has no graph_module", self.source)
        module = program["graph_module"]
        self.graph: dict[str, Any] = module["graph"]
        self.values: dict[str, Any] = self.graph.get("tensor_values") or {}
        self.sym_values: dict[str, Any] = self.graph.get("sym_int_values") or {}
        specs = module["signature"]["input_specs"]
        self.params: dict[str, str] = {}
        self.user: dict[str, list[Any]] = {}
        #: Placeholders that are not user inputs: parameters, buffers, tensor constants.
        self.constants: set[str] = set()
        # Tied parameters (`b.weight = a.weight`) are listed under each name but stored once; PyTorch
        # keeps the first name (`named_parameters()`), and so does convcost, for names and params.
        first: dict[object, str] = {}
        for spec in specs:
            if "parameter" in spec:
                fqn = spec["parameter"]["parameter_name"]
                stored = archive.tensors.get(fqn)
                key = (stored.member, stored.offset, stored.sizes, stored.strides) if stored else fqn
                self.params[spec["parameter"]["arg"]["name"]] = first.setdefault(key, fqn)
            elif "user_input" in spec:
                name = tensor_ref(spec["user_input"]["arg"])
                if name is not None:
                    self.user[name] = self.values[name]["sizes"]
            for kind, body in spec.items():
                arg = body.get("arg") if isinstance(body, dict) and kind not in ("user_input", "token") else None
                if isinstance(arg, dict) and isinstance(arg.get("name"), str):
                    self.constants.add(arg["name"])
        self.ranges: dict[str, Any] = program.get("range_constraints") or {}
        guards = program.get("guards_code") or []
        self.guards = [g for g in guards if isinstance(g, str)] if isinstance(guards, list) else []
        version = program.get("schema_version") or {}
        self.major = version.get("major") if isinstance(version, dict) else None
        self.symbols: dict[str, int] = {}
        self.hints_valid = True
        self._shapes: dict[str, Shape | None] = {}

    # --- inputs ------------------------------------------------------------------------------

    def _hint(self, dim: Mapping[str, Any]) -> int | None:
        expr = dim.get("as_expr")
        hint = expr.get("hint") if isinstance(expr, dict) else None
        value = hint.get("as_int") if isinstance(hint, dict) else None
        return value if isinstance(value, int) else None

    def bind(self, given: dict[str, Shape]) -> dict[str, Shape]:
        """The input shapes to count at: the archive's example where `-i` says nothing."""
        names = ", ".join(self.user) or "none"
        if "" in given:
            if len(self.user) != 1:
                raise InputError(f"the exported program takes {len(self.user)} tensor inputs ({names}); name each: "
                                 "-i NAME=SHAPE", self.source)
            given = {next(iter(self.user)): given[""]}
        for name in given:
            if name not in self.user:
                raise InputError(f"-i {name}=...: the exported program has no input {name!r} (inputs: {names})",
                                 self.source)
        deferred: list[tuple[str, int, str, int]] = []
        for name, shape in given.items():
            dims = self.user[name]
            flag = f"-i {name}={'x'.join(map(str, shape))}"
            if len(shape) != len(dims):
                raise InputError(f"{flag}: input {name} has {len(dims)} dims in this archive "
                                 f"({self._example_text(name)}), not {len(shape)}", self.source)
            for axis, (dim, value) in enumerate(zip(dims, shape, strict=True)):
                if "as_int" in dim:
                    if dim["as_int"] != value:
                        raise InputError(
                            f"{flag}: axis {axis} of {name} is fixed at {dim['as_int']} in this archive (its example "
                            f"input is {self._example_text(name)}); a torch.export graph is traced at its export "
                            "shape, so another size needs an export that marks that axis dynamic "
                            "(torch.export.export(..., dynamic_shapes=...))", self.source)
                    continue
                expr = dim["as_expr"]["expr_str"]
                symbol = symbol_of(expr)
                if symbol is None:
                    deferred.append((name, axis, expr, value))
                elif self.symbols.setdefault(symbol, value) != value:
                    raise InputError(f"{flag}: axis {axis} of {name} must equal another axis of the same dynamic "
                                     f"size ({self.symbols[symbol]}) in this archive", self.source)
                else:
                    self._check_range(flag, name, axis, symbol, value)
        # Inputs -i left out keep their example sizes, unless they share a dynamic size with one given.
        example: dict[str, int] = {}
        for dims in self.user.values():
            for dim in dims:
                if "as_expr" in dim and (symbol := symbol_of(dim["as_expr"]["expr_str"])) is not None:
                    hint = self._hint(dim)
                    if hint is not None:
                        example.setdefault(symbol, hint)
                        self.symbols.setdefault(symbol, hint)
        self.hints_valid = all(example.get(s) == v for s, v in self.symbols.items())
        for name, axis, expr, value in deferred:
            try:
                derived = evaluate(expr, self.symbols)
            except Unresolved:
                derived = None
            if derived != value:
                raise InputError(f"-i {name}=...: axis {axis} of {name} is derived from other sizes in this archive "
                                 f"({_excerpt(expr)}) and cannot be {value}", self.source)
        shapes: dict[str, Shape] = {}
        for name in self.user:
            bound = self.shape(name)
            if bound is None:
                raise InputError(f"input {name}: a dynamic axis has no example size in the archive; give it: "
                                 f"-i {name}=SHAPE", self.source)
            shapes[name] = bound
        if given:
            self._check_guards(shapes)
        return shapes

    def _example_text(self, name: str) -> str:
        dims = [d.get("as_int", self._hint(d)) for d in self.user[name]]
        return "x".join("?" if d is None else str(d) for d in dims)

    def _check_range(self, flag: str, name: str, axis: int, symbol: str, value: int) -> None:
        bounds = self.ranges.get(symbol)
        if not isinstance(bounds, dict):
            return
        low, high = bounds.get("min_val"), bounds.get("max_val")
        if (isinstance(low, int) and value < low) or (isinstance(high, int) and value > high):
            shown = f"{low if isinstance(low, int) else ''}..{high if isinstance(high, int) else ''}"
            raise InputError(f"{flag}: axis {axis} of {name} must be in {shown}, the range it was exported with",
                             self.source)

    def _check_guards(self, shapes: dict[str, Shape]) -> None:
        def size_of(name: str, axis: int) -> int | None:
            shape = shapes.get(name)
            return shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None

        for guard in self.guards:
            if check_guard(guard, size_of) is False:
                given = " ".join(f"{n}={'x'.join(map(str, s))}" for n, s in shapes.items())
                raise InputError(f"-i {given}: the exported program requires {_excerpt(guard)} (a guard recorded "
                                 "at export)", self.source)

    # --- shapes ------------------------------------------------------------------------------

    def _size(self, dim: Any) -> int | None:
        if "as_int" in dim:
            value = dim["as_int"]
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        try:
            return evaluate(dim["as_expr"]["expr_str"], self.symbols)
        except Unresolved:
            return self._hint(dim) if self.hints_valid else None

    def shape(self, tensor: str) -> Shape | None:
        """A tensor's shape at the bound input sizes; None where an expression cannot be evaluated."""
        if tensor not in self._shapes:
            meta = self.values.get(tensor)
            sizes = [self._size(d) for d in meta["sizes"]] if isinstance(meta, dict) else [None]
            if any(s is None or s < 0 for s in sizes):
                self._shapes[tensor] = None
            else:
                self._shapes[tensor] = tuple(s for s in sizes if s is not None)
        return self._shapes[tensor]

    def strided(self, tensor: str) -> bool:
        """Whether a tensor's recorded strides are not those of contiguous memory (so that a reshape
        of it copies); False where they are unknown or symbolic and unresolved."""
        shape, meta = self.shape(tensor), self.values.get(tensor)
        strides = meta.get("strides") if isinstance(meta, dict) else None
        if shape is None or not isinstance(strides, list) or len(strides) != len(shape):
            return False
        expected = 1
        for size, dim in zip(reversed(shape), reversed(strides), strict=True):
            stride = self._size(dim) if isinstance(dim, dict) else None
            if stride is None:
                return False
            if size != 1 and stride != expected:
                return True
            expected *= size
        return False

    def dtype(self, tensor: str) -> str | None:
        meta = self.values.get(tensor)
        return dtype_name(meta.get("dtype")) if isinstance(meta, dict) else None

    def sym_int(self, arg: object) -> int | None:
        if not isinstance(arg, dict):
            return None
        if isinstance(arg.get("as_int"), int):
            return int(arg["as_int"])
        value = self.sym_values.get(arg.get("as_name"))  # type: ignore[arg-type]
        return self._size(value) if isinstance(value, dict) else None

    # --- the graph walk ----------------------------------------------------------------------

    def model(self, given: dict[str, Shape]) -> Model:
        shapes = self.bind(given)
        numel = {fqn: math.prod(s) for p, fqn in self.params.items() if (s := self.shape(p)) is not None}
        g = Graph(self.shape, self.dtype, self.sym_int, self.params, numel, self._weights, source=self.source)
        nodes = _Nodes(self)
        for raw in self.graph["nodes"]:
            node = _node(raw)
            if node.op in VIEW_OPS and node.outputs:
                base = tensor_ref(node.arg("self", node.arg("input")))
                if base is not None:
                    g.views[node.outputs[0]] = base
            handler = HANDLERS.get(node.op)
            if handler is not None:
                convs, matmuls = len(g.convs), len(g.matmuls)
                handler(g, node)
                nodes.add(raw, node, ("conv", convs) if len(g.convs) > convs else
                          ("matmul", matmuls) if len(g.matmuls) > matmuls else None)
                continue
            nodes.add(raw, node, None)
            before = len(g.uncounted)
            for label, sub in _subgraphs(raw):
                _control_flow(g, node, label, sub)
            if len(g.uncounted) > before:
                g.uncosted[node.op] += 1
            if multiplies(node.op):
                g.uncosted[node.op] += 1
                if counted_family(node.op):
                    g.skip(node, NO_FORMULA, uncosted=False)
        return Model(
            name=self.archive.path.stem,
            format="pt2",
            source=self.source,
            inputs=shapes,
            convs=g.convs,
            matmuls=g.matmuls,
            declared_params=sum(numel.values()) or None,
            uncosted=dict(g.uncosted),
            uncounted=g.uncounted,
            warnings=self._notes(g),
            nodes=nodes.nodes,
        )

    def _weights(self, fqn: str, shape: Shape) -> WeightLoader | None:
        return self.archive.weight_loader(fqn, shape)

    def _notes(self, g: Graph) -> list[str]:
        notes = []
        if isinstance(self.major, int) and self.major > SCHEMA_MAJOR:
            notes.append(f"written with torch.export schema {self.major}.x, newer than the {SCHEMA_MAJOR}.x convcost "
                         "knows; the graph was read as far as it matches")
        if note := repeated_calls(g.calls, set(UNNAMED.values())):
            notes.append(note)
        if any(c.name.split("#")[0] == UNNAMED["conv"] for c in g.convs):
            notes.append("some convs use weights that are not module parameters and run outside any submodule; "
                         f"they are named {UNNAMED['conv']}#N")
        reasons: dict[str, list[str]] = {}
        for u in g.uncounted:
            if u.why != NO_FORMULA:  # those are in the not-costed list already
                reasons.setdefault(u.why, []).append(u.name)
        for why, names in reasons.items():
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            notes.append(f"not counted: {', '.join(names[:3])}{more}: {why}")
        unread = [c.name for c in g.convs if c.weight is None]
        if unread and (self.archive.legacy or self.archive.pickled):
            notes.append(f"the weights of {len(unread)} convs are stored pickled in this archive (torch.export from "
                         "torch 2.7 or older, or tensor subclasses); convcost never unpickles, so they have no "
                         "approximation errors")
        return notes


class _Nodes:
    """The graph's calls as `Model.nodes`: metadata ops (views, size queries) are left out and
    their outputs (all of them: split, unbind) take their input's name, so edges run from the op
    that computed a tensor."""

    def __init__(self, reader: _Reader) -> None:
        self.reader = reader
        self.aliases: dict[str, str] = {}
        self.nodes: list[ir.Node] = []

    def add(self, raw: Mapping[str, Any], node: Node, counted: tuple[Literal["conv", "matmul"], int] | None) -> None:
        op = _aten_name(str(raw["target"]), node.op)
        ins = _input_tensors(node)
        names = tuple(self.aliases.get(t, t) for t in ins)
        if op in METADATA_OPS and not (op in COPY_IF_STRIDED and ins and self.reader.strided(ins[0])):
            if names:
                for out in node.outputs:
                    self.aliases[out] = names[0]
            return
        r = self.reader
        self.nodes.append(ir.Node(
            name=f"{node.module}/{node.name}" if node.module else node.name, op=op,
            inputs=names, outputs=tuple(node.outputs),
            input_shapes=tuple(r.shape(t) for t in ins), output_shapes=tuple(r.shape(t) for t in node.outputs),
            dtype=r.dtype(node.outputs[0]) if node.outputs else None,
            constant=frozenset(i for i, t in enumerate(names) if t in r.constants),
            attrs=self._attrs(node), counted=counted, source=node.name))

    def _attrs(self, node: Node) -> dict[str, object]:
        """Scalar arguments by name; symbolic sizes where they evaluate at the bound inputs."""
        out: dict[str, object] = {}
        for key, arg in node.args.items():
            if not isinstance(arg, dict) or len(arg) != 1:
                continue
            kind, value = next(iter(arg.items()))
            if kind == "as_sym_int":
                value = self.reader.sym_int(value)
            elif kind == "as_sym_ints" and isinstance(value, list):
                value = [self.reader.sym_int(v) for v in value]
            elif kind not in _SCALAR_ARGS:
                continue
            if value is not None and scalar_attr(value):
                out[key] = value
        return out


#: Argument kinds of the export schema that hold plain values (Node.attrs).
_SCALAR_ARGS = frozenset({"as_int", "as_ints", "as_float", "as_floats", "as_string", "as_strings", "as_bool",
                          "as_bools"})


def _aten_name(target: str, op: str) -> str:
    """`aten.relu` (of `torch.ops.aten.relu.default`) -> `aten::relu`, as TorchScript and the capture
    name it; other targets (`torch.cond`) unchanged."""
    return op.replace(".", "::", 1) if target.startswith("torch.ops.") and not op.startswith("torch.") else op


def _input_tensors(node: Node) -> list[str]:
    """The tensors a call reads, in argument order (lists of tensors, such as cat's, flattened)."""
    found: list[str] = []
    for arg in node.args.values():
        ref = tensor_ref(arg)
        if ref is not None:
            found.append(ref)
            continue
        found += tensor_refs(arg) or []
        optional = arg.get("as_optional_tensors") if isinstance(arg, dict) else None
        if isinstance(optional, list):
            found += [r for a in optional if (r := tensor_ref(a)) is not None]
    return found


def _node(raw: Mapping[str, Any]) -> Node:
    op, overload = op_name(str(raw["target"]))
    outputs: list[str] = []
    for out in raw.get("outputs") or []:
        name = tensor_ref(out)
        if name is not None:
            outputs.append(name)
        elif isinstance(out, dict) and isinstance(out.get("as_tensors"), list):
            outputs += [t["name"] for t in out["as_tensors"] if isinstance(t, dict) and isinstance(t.get("name"), str)]
    args = {a["name"]: a["arg"] for a in raw.get("inputs") or [] if isinstance(a, dict) and "name" in a}
    name = raw.get("name") or (outputs[0] if outputs else op)
    return Node(op, overload, args, outputs, module_path(raw.get("metadata")), str(name))


def _subgraphs(raw: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Graphs passed to a higher-order op (torch.cond branches, while_loop and map bodies)."""
    found = []
    for a in raw.get("inputs") or []:
        arg = a.get("arg") if isinstance(a, dict) else None
        sub = arg.get("as_graph") if isinstance(arg, dict) else None
        if isinstance(sub, dict) and isinstance(sub.get("graph"), dict):
            found.append((str(sub.get("name") or a.get("name")), sub["graph"]))
    return found


def _control_flow(g: Graph, hop: Node, label: str, graph: Mapping[str, Any], depth: int = 0) -> None:
    """Convs and matmuls inside a control-flow body: found, not counted (so `check` fails closed)."""
    if depth > 32:
        return
    for raw in graph.get("nodes") or []:
        inner = _node(raw)
        if inner.op in HANDLERS or multiplies(inner.op):
            g.uncounted.append(Uncounted(f"{hop.name}/{label}/{inner.name}", inner.op,
                                         f"inside {hop.op} ({label}): convcost does not count the control-flow "
                                         "bodies of a .pt2"))
        for sub_label, sub in _subgraphs(raw):
            _control_flow(g, hop, f"{label}/{inner.name}/{sub_label}", sub, depth + 1)
