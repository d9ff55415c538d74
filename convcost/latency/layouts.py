"""onnxruntime's blocked NCHWc layout on x86 CPUs: which nodes run on blocked tensors, and the layout
reorders the runtime inserts where a blocked tensor meets a node that reads plain NCHW (or back).

onnxruntime's NCHWc transformer (AVX2 / AVX-512 builds) runs a 2-D float conv on tensors whose
channels are split into blocks of `BLOCK`, padding the last block, when
- it has one group: always; a conv reading fewer than `BLOCK` channels reads the NCHW tensor as it
  is (a stem conv), any other first reorders its input;
- it is depthwise: always;
- it is grouped otherwise: only where each group's input and output channels fill whole blocks
  (ResNeXt's 4 channels per group, ShuffleNet v1's 3-group 1x1 convs on 24 channels do not).
Pooling over a blocked input whose channels fill whole blocks, and per-element ops, batch norm,
same-shape adds and muls, concats of blocked inputs, stay blocked. Everything else (a broadcast Mul of a
squeeze-excite gate, a reshape of a channel shuffle, a flatten before the classifier) reads NCHW.

Each tensor that passes from a blocked node to a reader of NCHW (or out of the model) gets one
ReorderOutput, and each tensor that passes from an NCHW node to a blocked conv one ReorderInput:
a copy of the tensor, priced as a data-movement op. On this machine (AVX-512) MobileNetV3-small
spends 9% of its time in them, ShuffleNet v1 13%, EfficientNet-B0 9.5%.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from convcost.cost.nodes import node_family
from convcost.ir.model import Node, Shape
from convcost.latency.fusions import Fate

#: Channels per block (AVX-512: 16 floats in a register).
BLOCK = 16

#: The op types of the copies `reorders` adds.
ADDED_OPS = frozenset({"ReorderInput", "ReorderOutput"})
#: Ops that keep a blocked input blocked (per-element ops, batch norm), as onnxruntime rewrites them.
_FOLLOW = frozenset({"relu", "clip", "sigmoid", "hardsigmoid", "hardswish", "leakyrelu", "tanh", "batchnormalization",
                     "quickgelu", "identity", "dropout"})
#: Pooling ops that run blocked when their input is blocked and its channels fill whole blocks.
_POOLING = frozenset({"maxpool", "averagepool", "globalaveragepool", "globalmaxpool"})
#: Ops with several inputs that stay blocked when every activation input is blocked (same shapes: a
#: broadcast Mul, as a squeeze-excite gate, reads NCHW).
_JOIN = frozenset({"add", "sum", "mul", "concat"})
#: Resizes of a blocked tensor stay blocked (nearest and linear over the spatial axes).
_RESIZE = frozenset({"resize", "upsample"})


def _op(node: Node) -> str:
    return node.op.rsplit("::", 1)[-1].lower()


def _shape(shapes: tuple[Shape | None, ...], i: int) -> Shape | None:
    return shapes[i] if i < len(shapes) else None


def _channels_fill_blocks(shape: Shape | None) -> bool:
    return shape is not None and len(shape) == 4 and shape[1] % BLOCK == 0


def conv_layout(node: Node) -> tuple[bool, bool]:
    """(runs blocked, reads its input blocked) for a conv node, from its input and weight shapes."""
    x, w = _shape(node.input_shapes, 0), _shape(node.input_shapes, 1)
    if _op(node) != "conv" or x is None or w is None or len(x) != 4 or len(w) != 4 \
            or node.dtype not in (None, "float32") or 1 not in node.constant:
        return False, False
    c_in, out, per_group = x[1], w[0], w[1]
    groups = c_in // per_group if per_group else 1
    if groups == 1:
        return True, c_in >= BLOCK
    if groups == c_in and out == c_in:  # depthwise
        return True, True
    if per_group % BLOCK == 0 and (out // groups) % BLOCK == 0:
        return True, True
    return False, False


def reorders(nodes: Sequence[Node], fates: Mapping[str, Fate]) -> list[Node]:
    """The ReorderInput and ReorderOutput nodes onnxruntime adds to `nodes` (fused as `fates` says)."""
    blocked: set[str] = set()  # tensors held blocked
    plain: set[str] = set()  # tensors some node reads as NCHW (or that leave the model)
    into_blocked: dict[str, Shape | None] = {}  # NCHW tensors a blocked conv reads
    shapes: dict[str, Shape | None] = {}
    readers: set[str] = set()
    folded: set[str] = set()  # tensors computed when the session is made
    for node in nodes:
        fate = fates.get(node.name, Fate())
        for t, s in zip(node.outputs, node.output_shapes, strict=False):
            shapes[t] = s
        acts = [t for i, t in enumerate(node.inputs) if t and i not in node.constant and t not in folded]
        if not fate.runs:  # absorbed into a conv, folded or removed: the layout passes through
            if fate.host is not None or fate.by == "eliminate_identity":
                readers.update(acts)
                if any(t in blocked for t in acts):
                    blocked.update(node.outputs)
            else:
                folded.update(node.outputs)
            continue
        if node_family(node) == "shape":  # reads only the shape, in any layout
            continue
        readers.update(acts)
        op = _op(node)
        if node.counted is not None and node.counted[0] == "conv":
            runs, reads = conv_layout(node)
            if runs:
                blocked.update(node.outputs[:1])
                for t in acts[:1]:
                    if reads and t not in blocked:
                        into_blocked[t] = shapes.get(t, _shape(node.input_shapes, 0))
                    elif not reads:
                        plain.add(t)
                continue
        elif acts and all(t in blocked for t in acts) and (
                op in _FOLLOW or op in _RESIZE or (op in _JOIN and _joinable(node))
                or (op in _POOLING and _channels_fill_blocks(_shape(node.input_shapes, 0)))):
            blocked.update(node.outputs[:1])
            continue
        plain.update(acts)
    plain.update(t for t in blocked if t not in readers)  # model outputs
    out = []
    for t in sorted(blocked & plain):
        out.append(_copy("ReorderOutput", t, shapes.get(t)))
    for t, s in sorted(into_blocked.items()):
        if t not in blocked:
            out.append(_copy("ReorderInput", t, s))
    return out


def _joinable(node: Node) -> bool:
    """A join onnxruntime keeps blocked: a same-shape add, sum or mul, or a concat along channels of
    inputs that each fill whole blocks."""
    shapes = [s for s in node.input_shapes if s is not None]
    if _op(node) == "concat":
        return node.attrs.get("axis", 1) in (1, -3) and all(_channels_fill_blocks(s) for s in shapes)
    return len(set(shapes)) == 1 and len(shapes) == len(node.inputs)


def _copy(op: str, tensor: str, shape: Shape | None) -> Node:
    return Node(f"{tensor}/{op}", op, (tensor,), (f"{tensor}/{op.lower()}",), (shape,), (shape,))
