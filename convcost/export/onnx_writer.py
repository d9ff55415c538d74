"""Write an ONNX model with chosen convs replaced by their variants' stages, the rest untouched.

The graph is edited with onnx-ir (the ONNX project's graph library): each replaced conv node gives
way to one node per stage, named as analyze names the stages (`<conv>/spatial.0`, ...), carrying
the SVD weights as new initializers in the conv's weight dtype; the bias input moves to the last
stage, which takes over the conv's output tensor (its name, type and shape), so every consumer and
graph output is unchanged. The conv's old weight goes too where nothing else uses it.

Attributes: each stage's kernel, strides, dilations, group and pads are those of the plan's conv
(`variants.plan_variant`), which puts each axis's padding, stride and dilation on the stage that
runs along it. A conv with `auto_pad` SAME_UPPER / SAME_LOWER / VALID keeps it on every stage: the
padding of a SAME conv depends on each axis alone, so the stages pad exactly as the conv did at any
input size. A ConvTranspose with `output_shape` gets the explicit pads and output_padding the plan
computed for the model's input shapes.

External data is kept external: written beside OUT as `OUT.data`. A model with local functions is
inlined first, as the loader reads it, so its convs are the ones analyze lists.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convcost.analysis.replacing import Kept, Replacement
from convcost.ir.model import Conv
from convcost.util.errors import InputError, first_line

if TYPE_CHECKING:
    import numpy as np
    import onnx_ir as ir

#: The op types a replacement stands in for (the default ONNX domain).
REWRITTEN_OPS = ("Conv", "ConvTranspose")
#: Above this many bytes of tensors, the output's weights go to an external data file even when
#: the original's were inline (protobuf cannot serialize a message of 2 GiB).
INLINE_LIMIT = 1_800_000_000


def load_ir(path: Path) -> ir.Model:
    """The model as onnx-ir holds it, local functions inlined; external data read lazily from its folder."""
    import onnx
    import onnx_ir as ir

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # the protobuf and onnx parsers raise several types
        raise InputError(f"not a valid ONNX model: {first_line(exc)}", path) from None
    if proto.functions:
        import onnx.inliner

        try:
            proto = onnx.inliner.inline_local_functions(proto)
        except Exception as exc:
            raise InputError(f"cannot inline the model's local functions: {first_line(exc)}", path) from None
    model = ir.serde.deserialize_model(proto)
    ir.external_data.set_base_dir(model.graph, path.parent)
    return model


def external_tensors(model: ir.Model) -> list[Any]:
    """The model's tensors stored in external data files (every graph, every subgraph)."""
    import onnx_ir as ir

    found = []
    for graph in _graphs(model.graph):
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                found.append(value.const_value)
    return found


def check_external_data(model: ir.Model, path: Path) -> None:
    """Every external tensor's file is in the model's folder and holds its bytes; else bad input (exit 2),
    raised before anything is written."""
    folder = os.path.realpath(path.parent)
    sizes: dict[str, int] = {}
    for tensor in external_tensors(model):
        location = str(tensor.location)
        target = os.path.realpath(os.path.join(folder, location))
        if not location or os.path.isabs(location) or os.path.commonpath([folder, target]) != folder:
            raise InputError(f"weight {tensor.name!r}: external data location {location!r} is outside the model's "
                             "folder; refusing to read it", path)
        if target not in sizes:
            if not os.path.isfile(target):
                raise InputError(f"weight {tensor.name!r}: external data file {location!r} not found next to "
                                 "the model", path)
            sizes[target] = os.path.getsize(target)
        end = int(tensor.offset or 0) + int(tensor.length if tensor.length is not None else tensor.nbytes)
        if end > sizes[target]:
            raise InputError(f"weight {tensor.name!r}: external data file {location!r} is shorter than the "
                             f"{end} bytes the model says", path)


def _graphs(graph: ir.Graph) -> Iterable[ir.Graph]:
    yield graph
    for node in graph:
        for attr in node.attributes.values():
            sub = attr.value
            subs = sub if isinstance(sub, list) else [sub]
            for g in subs:
                if hasattr(g, "initializers") and hasattr(g, "outputs"):
                    yield from _graphs(g)


class _Names:
    """Value names not used anywhere in the model yet."""

    def __init__(self, model: ir.Model) -> None:
        self.used: set[str] = set()
        for graph in _graphs(model.graph):
            self.used.update(v.name for v in graph.inputs if v.name)
            self.used.update(graph.initializers)
            for node in graph:
                self.used.update(v.name for v in node.outputs if v.name)

    def take(self, base: str) -> str:
        name, k = base, 2
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name


def rewrite(model: ir.Model, replacements: Sequence[Replacement]) -> tuple[list[Replacement], list[Kept]]:
    """Replace each conv node in place; those whose node cannot be rewritten are returned as Kept."""
    import onnx_ir as ir

    by_output: dict[str, ir.Node] = {}
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.outputs and node.outputs[0].name:
            by_output[node.outputs[0].name] = node
    names = _Names(model)
    done: list[Replacement] = []
    kept: list[Kept] = []
    pending = {id(n) for r in replacements if (n := by_output.get(r.conv.origin or "")) is not None}
    for r in replacements:
        found = by_output.get(r.conv.origin or "")
        why = _why_not(found, r.conv)
        if why or found is None:
            kept.append(Kept(r.conv, r.variant, why or "its node was not found in the graph"))
            continue
        pending.discard(id(found))
        _replace(found, r, names, pending)
        done.append(r)
    return done, kept


def _why_not(node: ir.Node | None, conv: Conv) -> str | None:
    if node is None:
        return "its node was not found in the graph"
    if node.domain not in ("", "ai.onnx") or node.op_type not in REWRITTEN_OPS:
        return f"{node.op_type} nodes are not rewritten (only Conv and ConvTranspose)"
    if len(node.inputs) < 2 or node.inputs[1] is None:
        return "the node has no weight input"
    return None


def _auto_pad(node: ir.Node) -> str | None:
    """The conv's auto_pad where the stages can keep it (see the module docstring), else None."""
    attr = node.attributes.get("auto_pad")
    mode = attr.value if attr is not None else "NOTSET"
    if mode in ("SAME_UPPER", "SAME_LOWER", "VALID") and "output_shape" not in node.attributes:
        return str(mode)
    return None


def stage_attributes(stage: Conv, auto_pad: str | None) -> list[ir.Attr]:
    """The ONNX attributes of one stage: its geometry as the plan computed it."""
    import onnx_ir as ir

    attrs = [ir.AttrInt64s("kernel_shape", list(stage.kernel)), ir.AttrInt64s("strides", list(stage.stride)),
             ir.AttrInt64s("dilations", list(stage.dilation)), ir.AttrInt64("group", stage.groups)]
    if auto_pad:
        attrs.append(ir.AttrString("auto_pad", auto_pad))
    else:
        attrs.append(ir.AttrInt64s("pads", list(stage.padding)))
    if stage.op == "ConvTranspose" and any(stage.output_padding):
        attrs.append(ir.AttrInt64s("output_padding", list(stage.output_padding)))
    return attrs


def _constant(graph: ir.Graph, names: _Names, base: str, values: np.ndarray) -> ir.Value:
    """A new initializer holding `values`."""
    import numpy as np
    import onnx_ir as ir

    name = names.take(base)
    tensor = ir.tensor(np.ascontiguousarray(values), name=name)
    value = ir.Value(name=name, shape=ir.Shape(values.shape), type=ir.TensorType(tensor.dtype), const_value=tensor)
    graph.register_initializer(value)
    return value


def _gather(graph: ir.Graph, names: _Names, name: str, x: ir.Value, order: np.ndarray, axis: int) -> ir.Node:
    """A Gather node taking `x`'s entries along `axis` in `order`."""
    import numpy as np
    import onnx_ir as ir

    indices = _constant(graph, names, f"{name}.indices", np.asarray(order, dtype=np.int64))
    return ir.Node("", "Gather", [x, indices], [ir.AttrInt64("axis", axis)],
                   outputs=[ir.Value(name=names.take(f"{name}.output"))], name=name)


def _replace(node: ir.Node, r: Replacement, names: _Names, pending: set[int]) -> None:
    import numpy as np
    import onnx_ir as ir

    graph = node.graph
    assert isinstance(graph, ir.Graph)
    x, weight = node.inputs[0], node.inputs[1]
    assert x is not None
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    auto_pad = _auto_pad(node)
    dtype = np.dtype(r.weight_dtype) if r.weight_dtype is not None else np.dtype(np.float32)
    current = x
    new_nodes: list[ir.Node] = []
    fold_out: list[tuple[ir.Node, int]] | None = None
    if r.perm_in is not None and r.perm_out is not None:
        folded = _fold_into_producer(x, r.perm_in, pending)
        if folded:
            r.permutation["input"] = f"folded into {folded}"
        else:
            gather = _gather(graph, names, f"{r.conv.name}/grouped.permute_in", x, r.perm_in, 1)
            new_nodes.append(gather)
            current = gather.outputs[0]
            r.permutation["input"] = "Gather"
        fold_out = _output_folds(node.outputs[0], pending)
        if bias is not None:
            bias = _permuted_bias(graph, names, r, bias, new_nodes)
    for j, (stage, values) in enumerate(zip(r.plan.layers, r.stages, strict=True)):
        last = j == len(r.plan.layers) - 1
        w_value = _constant(graph, names, f"{stage.name}.weight", values.astype(dtype))
        inputs = [current, w_value] + ([bias] if last and bias is not None else [])
        out = ir.Value(name=names.take(f"{stage.name}.output"))
        new_nodes.append(ir.Node("", stage.op, inputs, stage_attributes(stage, auto_pad), outputs=[out],
                                 name=stage.name, doc_string=node.doc_string,
                                 metadata_props=dict(node.metadata_props)))
        current = out
    if r.perm_out is not None:
        if fold_out is not None:
            for consumer, axis in fold_out:
                _permute_weight(consumer.inputs[1], r.perm_out, axis)
            r.permutation["output"] = "folded into " + ", ".join(sorted({c.name or c.op_type for c, _ in fold_out}))
        else:
            gather = _gather(graph, names, f"{r.conv.name}/grouped.permute_out", current,
                             np.argsort(r.perm_out), 1)
            new_nodes.append(gather)
            current = gather.outputs[0]
            r.permutation["output"] = "Gather"
    ir.convenience.replace_nodes_and_values(graph, node, [node], new_nodes, [node.outputs[0]], [current])
    _drop_if_unused(weight)


#: Ops that act on each element alone: a channel permutation passes through them unchanged.
ELEMENTWISE = frozenset({"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish", "Elu",
                         "Selu", "Celu", "Softplus", "Softsign", "Gelu", "Mish", "Identity", "Neg", "Abs", "Erf"})


def _own_constant(value: ir.Value | None) -> bool:
    """A constant initializer that only one node reads (so it may be rewritten in place)."""
    return (value is not None and value.is_initializer() and value.const_value is not None
            and len(value.uses()) == 1 and not value.is_graph_input() and not value.is_graph_output())


def _foldable_conv(node: ir.Node) -> bool:
    group = node.attributes.get("group")
    return (node.domain in ("", "ai.onnx") and node.op_type in REWRITTEN_OPS and (group is None or group.value == 1)
            and len(node.inputs) > 1 and _own_constant(node.inputs[1])
            and (len(node.inputs) < 3 or node.inputs[2] is None or _own_constant(node.inputs[2])))


def _fold_into_producer(x: ir.Value, order: np.ndarray, pending: set[int]) -> str | None:
    """Reorder the output channels of the conv that makes `x` (through elementwise ops that nothing
    else reads), so that `x` arrives as `x[:, order]`; its name, or None where the graph does not allow it."""
    value = x
    for _ in range(16):
        if len(value.uses()) != 1 or value.is_graph_output() or value.is_graph_input():
            return None
        producer = value.producer()
        if producer is None:
            return None
        if producer.op_type in ELEMENTWISE and producer.domain in ("", "ai.onnx") and producer.inputs[0] is not None:
            value = producer.inputs[0]
            continue
        if id(producer) in pending or not _foldable_conv(producer):
            return None
        _permute_weight(producer.inputs[1], order, 0 if producer.op_type == "Conv" else 1)
        if len(producer.inputs) > 2 and producer.inputs[2] is not None:
            _permute_weight(producer.inputs[2], order, 0)
        return producer.name or producer.op_type
    return None


def _output_folds(y: ir.Value, pending: set[int]) -> list[tuple[ir.Node, int]] | None:
    """The convs reading `y` (through elementwise ops) whose input channels can take the permutation,
    each with its weight's input-channel axis; None unless every reader is such a conv."""
    found: list[tuple[ir.Node, int]] = []
    todo = [y]
    while todo:
        value = todo.pop()
        if value.is_graph_output() or not value.uses():
            return None
        for use in value.uses():
            consumer, index = use.node, use.idx
            if consumer.op_type in ELEMENTWISE and consumer.domain in ("", "ai.onnx") and index == 0:
                todo.extend(consumer.outputs)
                continue
            if index != 0 or id(consumer) in pending or not _foldable_conv(consumer):
                return None
            found.append((consumer, 1 if consumer.op_type == "Conv" else 0))
        if len(found) > 64:
            return None
    return found


def _permute_weight(value: ir.Value | None, order: np.ndarray, axis: int) -> None:
    """Rewrite a constant in place with its entries along `axis` taken in `order`."""
    import numpy as np
    import onnx_ir as ir

    assert value is not None and value.const_value is not None
    array = np.take(value.const_value.numpy(), order, axis=axis)
    value.const_value = ir.tensor(np.ascontiguousarray(array), name=value.name)


def _permuted_bias(graph: ir.Graph, names: _Names, r: Replacement, bias: ir.Value, new_nodes: list[ir.Node]) \
        -> ir.Value:
    """The bias in the stages' output order: a reordered copy of a constant, else a Gather."""
    import numpy as np

    assert r.perm_out is not None
    if bias.const_value is not None:
        return _constant(graph, names, f"{r.conv.name}/grouped.bias", bias.const_value.numpy()[r.perm_out])
    gather = _gather(graph, names, f"{r.conv.name}/grouped.permute_bias", bias, np.asarray(r.perm_out), 0)
    new_nodes.append(gather)
    return gather.outputs[0]


def _drop_if_unused(value: ir.Value | None, depth: int = 0) -> None:
    """Remove a replaced conv's weight (and the Identity / Cast / ... chain that made it) once nothing
    uses it; a weight another node still reads stays."""
    if value is None or depth > 16 or value.uses() or value.is_graph_output() or value.is_graph_input():
        return
    if value.is_initializer():
        owner = value.graph
        if owner is not None and value.name is not None and value.name in owner.initializers:
            owner.initializers.pop(value.name)
        return
    producer = value.producer()
    if producer is None or producer.graph is None:
        return
    if any(o.uses() or o.is_graph_output() for o in producer.outputs):
        return
    inputs = list(producer.inputs)
    producer.graph.remove(producer, safe=True)
    for v in inputs:
        _drop_if_unused(v, depth + 1)


def save(model: ir.Model, dest: Path, external: bool) -> str | None:
    """Write the model to `dest`; with `external` (or too big to inline) the tensors go to
    `dest.name + '.data'` beside it. Returns that file's name, or None."""
    import onnx_ir as ir

    total = sum(v.const_value.nbytes for g in _graphs(model.graph) for v in g.initializers.values()
                if v.const_value is not None)
    if external or total > INLINE_LIMIT:
        data = f"{dest.name}.data"
        ir.save(model, dest, external_data=data)
        return data
    ir.save(model, dest)
    return None


def checker_error(path: Path) -> str | None:
    """onnx.checker's full check (with shape inference) of a written model: None, or its first line."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # ValidationError, InferenceError and what the C++ side throws
        return first_line(exc)
    return None
