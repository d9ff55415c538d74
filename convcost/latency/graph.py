"""Whole-model latency: every op of the model priced, after the runtime's fusions.

    whole = run overhead + sum over nodes that run of their time
    conv / matmul node: its roofline estimate (convcost.latency.roofline), plus the traffic of
                        what it absorbed (a fused Add's other operand) at the copy bandwidth
    any other node:     steps x overhead[family] + max(bytes / (bandwidth x memory_efficiency[family]),
                                                       2 x MACs / (peak x efficiency.pointwise))

`family` is the op's family (convcost.cost.nodes.FAMILIES: elementwise, pooling, resize, ...);
`bytes` and MACs are its work (`node_work`); `steps` is 1, or the time steps x directions of a
recurrent op, each of which is a kernel call of its own. A node absorbed by a fusion or folded
away (convcost.latency.fusions) costs no call, or the overhead of the one call the rewrite leaves
in its place (`Fate.leaves`: the reshape after a Gemm that took a MatMul of a 3-D input). An
activation fused into a conv that the runtime's kernels do not apply as they store each output
(`Runtime.pass_activations`: in onnxruntime, all but Relu) reads and writes the conv's output once
more, at the share of the bandwidth a profile's `activation_pass` figures give (calibrate measures
it on a conv with HardSwish fused; a profile without them prices no pass), with no call of its own. A node
whose op has no family is listed as unpriced with its name: the estimate says what it leaves out,
never a silent zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache

from convcost.cost.nodes import FAMILIES, element_bytes, lineage, node_family, node_work, traffic_bytes
from convcost.ir.model import Conv, Node, Shape
from convcost.latency.fusions import ACTIVATION_FUSIONS, NCHWC, Fate, fuse
from convcost.latency.layouts import Ends, inner_copies, layout_copy, reorders, stage_ends
from convcost.latency.roofline import Roofline, peak_for

#: Figures of the whole run rather than of one op family (`ops.run` in a profile).
RUN = "run"
#: Figures of the pass a fused activation makes over its conv's output (`ops.activation_pass`).
ACTIVATION_PASS = "activation_pass"


@dataclass(frozen=True)
class FamilyFigures:
    """A profile's figures for one op family: per-call overhead and share of the copy bandwidth."""

    overhead_us: float
    memory_efficiency: float = 1.0


@dataclass(frozen=True)
class NodeEstimate:
    """One node's share of the whole-model estimate."""

    node: Node
    ms: float
    #: "conv" or "matmul" for counted ops, the family of any other, None where unpriced.
    family: str | None
    fate: Fate
    bytes: int = 0


@dataclass
class WholeEstimate:
    """A model's estimated time on one device, node by node."""

    ms: float
    run_ms: float
    nodes: list[NodeEstimate] = field(default_factory=list)

    def unpriced(self) -> dict[str, list[str]]:
        """Op type -> names of the nodes that run but have no latency formula."""
        out: dict[str, list[str]] = {}
        for e in self.nodes:
            if e.family is None and e.fate.runs:
                out.setdefault(e.node.op, []).append(e.node.name)
        return out


def node_ms(roof: Roofline, figures: Mapping[str, FamilyFigures], node: Node, dtype: str) -> tuple[float, int]:
    """Milliseconds and bytes of a node that is neither conv nor matmul (see the module docstring)."""
    family = node_family(node)
    work = node_work(node, dtype)
    if family is None or work is None:
        return 0.0, 0
    fig = _figures(roof, figures, family)
    memory = work.bytes / (roof.bandwidth_gbs * 1e9 * fig.memory_efficiency)
    compute = 0.0
    if work.macs:
        rate = peak_for(roof, dtype) * 1e9 * roof.efficiency["pointwise"]
        compute = 2 * work.macs / rate
    return (work.steps * fig.overhead_us * 1e-6 + max(memory, compute)) * 1e3, work.bytes


def _figures(roof: Roofline, figures: Mapping[str, FamilyFigures], family: str) -> FamilyFigures:
    """A family's figures: the profile's, its parent family's, or `default_figures`."""
    return next((figures[f] for f in lineage(family) if f in figures), None) or default_figures(roof)


def default_figures(roof: Roofline) -> FamilyFigures:
    """What a profile without `ops` figures implies for an op family: the smallest per-call overhead
    of its conv kinds and the full copy bandwidth."""
    return FamilyFigures(min(roof.overhead_us.values()), 1.0)


@dataclass
class WholePlan:
    """The part of a whole-model estimate that does not depend on the convs' and matmuls' own
    estimates (the fusions, every other node's time, the traffic a conv absorbs): worked out once per
    model and device, then `estimate` prices the model, and each of its variants, from their convs."""

    run_ms: float
    #: Every node in order; a counted one carries only the traffic of what it absorbed in `ms`.
    nodes: list[NodeEstimate] = field(default_factory=list)
    #: Where the runtime runs convs on a blocked layout (convcost.latency.layouts): what the layout
    #: copies take with some convs replaced by chains of stages, less what the model's own take; and
    #: one copy of a tensor of a shape.
    relayout: Callable[[Mapping[int, Ends]], float] | None = field(default=None, repr=False)
    copy_ms: Callable[[Shape | None], float] | None = field(default=None, repr=False)
    _alone: dict[tuple[int, Ends], float] = field(default_factory=dict, repr=False)

    def swap_ms(self, i: int, stages: Sequence[Conv]) -> float:
        """The layout copies that `stages` add (or save, if negative) where they alone replace
        Model.convs[i]: a stage the blocked kernels do not take (a grouped 1x1 whose groups do not
        fill blocks, a stage reading an odd rank) runs between two copies."""
        if self.relayout is None or self.copy_ms is None or not stages:
            return 0.0
        ends = stage_ends(stages)
        if (i, ends) not in self._alone:
            self._alone[i, ends] = self.relayout({i: ends})
        return sum(map(self.copy_ms, inner_copies(stages))) + self._alone[i, ends]

    def relayout_ms(self, swapped: Mapping[int, Sequence[Conv]]) -> float:
        """The layout copies that the chains of stages in `swapped` add together, where they replace
        those convs (neighbouring replacements share or spare copies: not the sum of `swap_ms`)."""
        if self.relayout is None or self.copy_ms is None or not swapped:
            return 0.0
        inner = sum(self.copy_ms(s) for stages in swapped.values() for s in inner_copies(stages))
        return inner + self.relayout({i: stage_ends(stages) for i, stages in swapped.items() if stages})

    def estimate(self, conv_ms: Sequence[float], matmul_ms: Sequence[float],
                 swapped: Mapping[int, Sequence[Conv]] | None = None) -> WholeEstimate:
        """The whole model's time: `conv_ms[i]` and `matmul_ms[i]` are the estimates of Model.convs[i]
        and Model.matmuls[i] (the original op, or a variant's stages in its place: those in `swapped`,
        whose layout copies are added)."""
        if not self.nodes:  # a loader that records no nodes: the counted ops alone
            return WholeEstimate(self.run_ms + sum(conv_ms) + sum(matmul_ms), self.run_ms)
        relaid = self.relayout_ms(swapped) if swapped else 0.0
        out = []
        for e in self.nodes:
            if e.fate.runs and e.node.counted is not None:
                kind, i = e.node.counted
                e = replace(e, ms=e.ms + (conv_ms[i] if kind == "conv" else matmul_ms[i]))
            out.append(e)
        return WholeEstimate(self.run_ms + sum(e.ms for e in out) + relaid, self.run_ms, out)


def plan_whole(nodes: Sequence[Node], roof: Roofline, figures: Mapping[str, FamilyFigures],
               fusions: Sequence[str], dtype: str, pass_activations: frozenset[str] = frozenset()) -> WholePlan:
    """Fuse the nodes and price every one that is neither a conv nor a matmul (see the module docstring);
    `pass_activations`: the runtime's (convcost.latency.fusions.Runtime)."""
    run = figures[RUN].overhead_us * 1e-3 if RUN in figures else 0.0
    if not nodes:
        return WholePlan(run)
    fates = fuse(nodes, fusions)
    bandwidth = roof.bandwidth_gbs * 1e9
    extra: dict[str, int] = {}
    for node in nodes:
        fate = fates[node.name]
        if fate.host is not None and fate.extra_bytes:
            extra[fate.host] = extra.get(fate.host, 0) + fate.extra_bytes * element_bytes(node.dtype, dtype)
    out: list[NodeEstimate] = []
    for node in nodes:
        fate = fates[node.name]
        if not fate.runs:
            left = _figures(roof, figures, fate.leaves).overhead_us * 1e-3 if fate.leaves else 0.0
            if fate.by in ACTIVATION_FUSIONS and node.op in pass_activations and ACTIVATION_PASS in figures:
                left += _activation_pass_ms(roof, figures[ACTIVATION_PASS], node, dtype)
            out.append(NodeEstimate(node, left, node_family(node), fate))
        elif node.counted is not None:
            added = extra.get(node.name, 0)
            out.append(NodeEstimate(node, added / bandwidth * 1e3, node.counted[0], fate,
                                    traffic_bytes(node, dtype) + added))
        else:
            runs = replace(node, op=fate.runs_as) if fate.runs_as else node
            ms, moved = node_ms(roof, figures, runs, dtype)
            out.append(NodeEstimate(node, ms, node_family(runs), fate, moved))
    if NCHWC not in fusions:
        return WholePlan(run, out)

    @cache
    def copy_ms(shape: Shape | None) -> float:
        return node_ms(roof, figures, layout_copy(shape), dtype)[0]

    def copies_ms(swapped: Mapping[int, Ends]) -> float:
        return sum(copy_ms(n.input_shapes[0]) for n in reorders(nodes, fates, swapped))

    base = 0.0  # the model's own copies, priced as copy_ms prices them
    for node in reorders(nodes, fates):
        ms, moved = node_ms(roof, figures, node, dtype)
        out.append(NodeEstimate(node, ms, node_family(node), Fate(), moved))
        base += ms
    return WholePlan(run, out, lambda swapped: copies_ms(swapped) - base, copy_ms)


def _activation_pass_ms(roof: Roofline, figures: FamilyFigures, node: Node, dtype: str) -> float:
    """A fused activation's pass over its conv's output: its bytes in and out at the pass's share of
    the bandwidth; the conv's call already paid any overhead."""
    work = node_work(node, dtype)
    return 0.0 if work is None else work.bytes / (roof.bandwidth_gbs * 1e9 * figures.memory_efficiency) * 1e3


def whole_model(
    nodes: Sequence[Node], roof: Roofline, figures: Mapping[str, FamilyFigures], fusions: Sequence[str],
    dtype: str, conv_ms: Sequence[float], matmul_ms: Sequence[float], pass_activations: frozenset[str] = frozenset(),
) -> WholeEstimate:
    """The whole model's time in one call (`plan_whole`, then `WholePlan.estimate`)."""
    return plan_whole(nodes, roof, figures, fusions, dtype, pass_activations).estimate(conv_ms, matmul_ms)


def family_names() -> list[str]:
    """Every op family a profile's `ops` may give figures for, `run` and `activation_pass`."""
    return [RUN, ACTIVATION_PASS, *FAMILIES]
