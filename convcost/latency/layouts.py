"""onnxruntime's blocked NCHWc layout on x86 CPUs: which nodes run on blocked tensors, and the layout
reorders the runtime inserts where a blocked tensor meets a node that reads plain NCHW (or back).

onnxruntime's NCHWc transformer (AVX2 / AVX-512 builds) runs a 2-D float conv on tensors whose
channels are split into blocks of `BLOCK`, padding the last block, when
- it has one group: a conv reading fewer than `BLOCK` channels reads the NCHW tensor as it is (a
  stem conv); one reading more takes a blocked input (reordered first where it is not) when its
  channel count is a multiple of `ALIGN`, and otherwise runs in NCHW (im2col + GEMM; the odd ranks
  of a spatially separable conv's stages);
- it is depthwise with a depth multiplier of 1: always (at m > 1 it is a grouped conv in NCHW);
- it is grouped otherwise: only where each group's input and output channels fill whole blocks
  (ResNeXt's 4 channels per group, ShuffleNet v1's 3-group 1x1 convs on 24 channels do not).
Pooling over a blocked input whose channels fill whole blocks, and per-element ops, batch norm,
same-shape adds and muls, concats of blocked inputs, stay blocked. Everything else (a broadcast Mul of a
squeeze-excite gate, a reshape of a channel shuffle, a flatten before the classifier) reads NCHW.

Each tensor that passes from a blocked node to a reader of NCHW (or out of the model) gets one
ReorderOutput, and each tensor that passes from an NCHW node to a blocked conv one ReorderInput:
a copy of the tensor, priced as a data-movement op. On this machine (AVX-512) MobileNetV3-small
spends 9% of its time in them, ShuffleNet v1 13%, EfficientNet-B0 9.5%.

A factorized conv is a chain of stages, each with its own layout: `reorders` takes the replaced
convs by the layouts at the ends of their chains, and `inner_copies` gives the copies inside one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from convcost.cost.nodes import node_family
from convcost.ir.model import Conv, Node, Shape
from convcost.latency.fusions import Fate
from convcost.latency.kinds import ALIGN, BLOCK

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


def blocked_layout(c_in: int, c_out: int, groups: int) -> tuple[bool, bool]:
    """(runs blocked, reads its input blocked) for a 2-D float conv with a constant weight."""
    per_group = c_in // groups if groups else c_in
    if groups == 1:
        if c_in < BLOCK:
            return True, False
        return (True, True) if c_in % ALIGN == 0 else (False, False)
    if per_group == 1 and c_out == c_in:  # depthwise
        return True, True
    if per_group % BLOCK == 0 and (c_out // groups) % BLOCK == 0:
        return True, True
    return False, False


def conv_layout(node: Node) -> tuple[bool, bool]:
    """(runs blocked, reads its input blocked) for a conv node, from its input and weight shapes."""
    x, w = _shape(node.input_shapes, 0), _shape(node.input_shapes, 1)
    if _op(node) != "conv" or x is None or w is None or len(x) != 4 or len(w) != 4 \
            or node.dtype not in (None, "float32") or 1 not in node.constant:
        return False, False
    c_in, per_group = x[1], w[1]
    return blocked_layout(c_in, w[0], c_in // per_group if per_group else 1)


def op_layout(conv: Conv) -> tuple[bool, bool]:
    """`conv_layout` for an IR conv (a variant's stage, whose weights are constants)."""
    if conv.op != "Conv" or conv.rank != 2 or conv.dtype not in (None, "float32"):
        return False, False
    return blocked_layout(conv.in_channels, conv.out_channels, conv.groups)


#: How a replaced conv meets the layout around it: its first stage's (runs blocked, reads blocked),
#: and whether its last stage runs blocked.
Ends = tuple[tuple[bool, bool], bool]


def stage_ends(stages: Sequence[Conv]) -> Ends:
    """The `Ends` of a chain of stages that replaces a conv."""
    return op_layout(stages[0]), op_layout(stages[-1])[0]


def inner_copies(stages: Sequence[Conv]) -> list[Shape]:
    """The tensors copied between layouts inside a chain of stages: before each stage whose layout
    is not the one the stage before it wrote."""
    out: list[Shape] = []
    held = op_layout(stages[0])[0] if stages else False
    for stage in stages[1:]:
        runs, reads = op_layout(stage)
        if held != (runs and reads):
            out.append(stage.input_shape)
        held = runs
    return out


@dataclass
class _Walk:
    """The layout of every tensor, walking the nodes in order as onnxruntime's transformer does."""

    blocked: set[str] = field(default_factory=set)  # tensors held blocked
    plain: set[str] = field(default_factory=set)  # tensors some node reads as NCHW (or that leave the model)
    into_blocked: dict[str, Shape | None] = field(default_factory=dict)  # NCHW tensors a blocked conv reads
    shapes: dict[str, Shape | None] = field(default_factory=dict)


def _walk(nodes: Sequence[Node], fates: Mapping[str, Fate], swapped: Mapping[int, Ends]) -> _Walk:
    """Every tensor's layout; a conv whose index is in `swapped` is a chain of stages with those ends."""
    w = _Walk()
    readers: set[str] = set()
    folded: set[str] = set()  # tensors computed when the session is made
    hosts: dict[str, bool] = {}  # conv node name -> whether its (last stage's) output is blocked
    for node in nodes:
        fate = fates.get(node.name, Fate())
        for t, s in zip(node.outputs, node.output_shapes, strict=False):
            w.shapes[t] = s
        acts = [t for i, t in enumerate(node.inputs) if t and i not in node.constant and t not in folded]
        if not fate.runs:  # absorbed into a conv, folded or removed: the layout passes through
            if fate.host in hosts:  # fused into a conv: it takes the conv's layout (a residual too)
                readers.update(acts)
                if hosts[fate.host]:
                    w.blocked.update(node.outputs)
                    w.into_blocked.update((t, w.shapes.get(t)) for t in acts if t not in w.blocked)
                else:
                    w.plain.update(acts)
            elif fate.host is not None or fate.by == "eliminate_identity":
                readers.update(acts)
                if any(t in w.blocked for t in acts):
                    w.blocked.update(node.outputs)
            else:
                folded.update(node.outputs)
            continue
        if node_family(node) == "shape":  # reads only the shape, in any layout
            continue
        readers.update(acts)
        op = _op(node)
        if node.counted is not None and node.counted[0] == "conv":
            (runs, reads), last = swapped.get(node.counted[1]) or (conv_layout(node), None)
            hosts[node.name] = runs if last is None else last
            if hosts[node.name]:
                w.blocked.update(node.outputs[:1])
            for t in acts[:1]:
                if runs and reads and t not in w.blocked:
                    w.into_blocked[t] = w.shapes.get(t, _shape(node.input_shapes, 0))
                elif not (runs and reads):
                    w.plain.add(t)
            if not runs:
                w.plain.update(acts)
            continue
        if acts and all(t in w.blocked for t in acts) and (
                op in _FOLLOW or op in _RESIZE or (op in _JOIN and _joinable(node))
                or (op in _POOLING and _channels_fill_blocks(_shape(node.input_shapes, 0)))):
            w.blocked.update(node.outputs[:1])
            continue
        w.plain.update(acts)
    w.plain.update(t for t in w.blocked if t not in readers)  # model outputs
    return w


def reorders(nodes: Sequence[Node], fates: Mapping[str, Fate], swapped: Mapping[int, Ends] | None = None) -> list[Node]:
    """The ReorderInput and ReorderOutput nodes onnxruntime adds to `nodes` (fused as `fates` says),
    with the convs in `swapped` replaced by chains of stages with those ends (their inner copies
    are `inner_copies`)."""
    w = _walk(nodes, fates, swapped or {})
    out = [_copy("ReorderOutput", t, w.shapes.get(t)) for t in sorted(w.blocked & w.plain)]
    out += [_copy("ReorderInput", t, s) for t, s in sorted(w.into_blocked.items()) if t not in w.blocked]
    return out


def _joinable(node: Node) -> bool:
    """A join onnxruntime keeps blocked: a same-shape add, sum or mul, or a concat along channels of
    inputs that each fill whole blocks."""
    shapes = [s for s in node.input_shapes if s is not None]
    if _op(node) == "concat":
        return node.attrs.get("axis", 1) in (1, -3) and all(_channels_fill_blocks(s) for s in shapes)
    return len(set(shapes)) == 1 and len(shapes) == len(node.inputs)


def layout_copy(shape: Shape | None) -> Node:
    """One copy of a tensor of `shape` between layouts, as `reorders` adds them."""
    return _copy("ReorderInput", "x", shape)


def _copy(op: str, tensor: str, shape: Shape | None) -> Node:
    return Node(f"{tensor}/{op}", op, (tensor,), (f"{tensor}/{op.lower()}",), (shape,), (shape,))
