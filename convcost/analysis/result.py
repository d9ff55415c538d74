"""What an analysis is made of: the settings it ran with, and per layer, per variant and in
total what the model costs. Plain data; `analyzer` fills it, renderers only format it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Any, Protocol

from convcost.cost import Cost
from convcost.ir.model import Conv, MatMul, Model, Node, Op, Uncounted
from convcost.latency.graph import WholeEstimate, WholePlan
from convcost.latency.roofline import Estimate
from convcost.variants import VARIANTS, Approx, Plan, VariantOptions


class Device(Protocol):
    """A device profile as the analysis needs it: a name and a latency estimate per op."""

    name: str

    def estimate(self, op: Op, dtype: str) -> Estimate: ...

    def plan_whole(self, nodes: Sequence[Node], dtype: str) -> WholePlan: ...

    def for_model(self, nodes: Sequence[Node], dtype: str, convs: Sequence[Conv] = (),
                  matmuls: Sequence[MatMul] = ()) -> Device:
        """The device as one model (all of `nodes`, with its `convs` and `matmuls`) sees it
        (latency.footprint)."""
        ...


#: Weight-based approximation error of a variant (SVD, see each `Variant.error`): a float, an
#: `Approx` carrying extra keys, or None.
ApproxFn = Callable[[str, Conv, VariantOptions], float | Approx | None]

#: Per-layer variant options (e.g. `--rank auto` picks the rank from the layer's weights) and the
#: keys that explain the choice; called before the variant is planned.
OptionsFn = Callable[[str, Conv, VariantOptions], tuple[VariantOptions, Mapping[str, Any]]]


@dataclass(frozen=True)
class Settings:
    """Everything the user chose that changes numbers (recorded in reports)."""

    #: The dtype of ops whose model does not fix one (see `analysis.dtypes.resolve_dtype`).
    dtype: str = "float32"
    #: Whether ops the model stores as float16 / bfloat16 are priced so (no explicit `--dtype`).
    dtype_from_model: bool = True
    variants: tuple[str, ...] = tuple(VARIANTS)
    options: VariantOptions = field(default_factory=VariantOptions)
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    #: Compute each variant's weight-based error where a layer has weights (`approx_error`).
    approx: bool = False
    #: With `approx`: also the grouped variant's error after the channel permutation heuristic
    #: (`approx_error_permuted`), off by default like `apply`'s `--permute`.
    permute: bool = False

    def selects(self, name: str) -> bool:
        """Whether a layer is to be factorized (--only / --skip globs)."""
        if self.only and not any(fnmatchcase(name, g) for g in self.only):
            return False
        return not any(fnmatchcase(name, g) for g in self.skip)


def relative_error(estimated: float, measured: float) -> float:
    """Relative error of an estimate: +0.25 means 25% too slow."""
    return estimated / measured - 1 if measured > 0 else math.inf


def ratio(original: int, variant: int) -> float:
    """original / variant: 8.7 means 8.7 times fewer. A free variant is infinitely cheaper."""
    return original / variant if variant else float("inf")


@dataclass(frozen=True, slots=True)
class Planned:
    """One variant of one conv geometry, priced: its plan, cost, latency and ratios.

    Everything here follows from the conv's shape alone, so the analysis builds it once per
    geometry and every layer with that geometry shares it (real models repeat a handful of
    geometries; a 10,000-conv chain has one). `conv` is the conv it was planned for: the plan's
    stages carry that conv's name.
    """

    conv: Conv
    plan: Plan
    cost: Cost | None = None
    latency: Mapping[str, Estimate] = field(default_factory=dict)
    mac_ratio: float | None = None
    param_ratio: float | None = None
    stage_costs: tuple[Cost, ...] = ()


#: The `extra` of a variant result without further keys (shared, read-only).
NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


@dataclass(slots=True)
class VariantResult:
    """One variant of one layer: the shared `Planned` of the layer's geometry, and what depends on the
    layer's own weights (`approx_error`, `extra`)."""

    name: str
    planned: Planned
    conv: Conv  # the layer's conv
    approx_error: float | None = None
    #: Further per-variant keys (approx_error_permuted, rank, break_even_rank...), JSON as is.
    extra: Mapping[str, Any] = field(default_factory=lambda: NO_EXTRA)

    @property
    def plan(self) -> Plan:
        """The replacement of this layer's conv, its stages named after it."""
        shared = self.planned
        if self.conv is shared.conv or not shared.plan.layers:
            return shared.plan
        return replace(shared.plan, layers=tuple(c.with_changes(name=n) for c, n in
                                                 zip(shared.plan.layers, self.stage_names, strict=True)))

    @property
    def stage_names(self) -> list[str]:
        """The names of this layer's replacement stages (the plan's, renamed to this layer)."""
        shared = self.planned
        names = [c.name for c in shared.plan.layers]
        if self.conv is shared.conv:
            return names
        cut = len(shared.conv.name)
        return [self.conv.name + n[cut:] for n in names]

    @property
    def reason(self) -> str | None:
        return self.planned.plan.reason

    @property
    def applicable(self) -> bool:
        return self.planned.plan.applicable

    @property
    def cost(self) -> Cost | None:
        return self.planned.cost

    @property
    def latency(self) -> Mapping[str, Estimate]:
        return self.planned.latency

    @property
    def mac_ratio(self) -> float | None:
        return self.planned.mac_ratio

    @property
    def param_ratio(self) -> float | None:
        return self.planned.param_ratio

    @property
    def stage_costs(self) -> tuple[Cost, ...]:
        return self.planned.stage_costs

    @property
    def intermediate_bytes(self) -> int:
        """Activations written by one stage and read by the next."""
        return sum(c.output_bytes for c in self.planned.stage_costs[:-1])


@dataclass(slots=True)
class LayerResult:
    conv: Conv
    cost: Cost
    latency: Mapping[str, Estimate]
    variants: dict[str, VariantResult]
    selected: bool

    def slower(self, variant: str, device: str) -> bool:
        """The variant saves MACs yet is estimated slower than the original on `device`."""
        v = self.variants[variant].planned
        if v.cost is None or device not in v.latency:
            return False
        return v.cost.macs < self.cost.macs and v.latency[device].ms > self.latency[device].ms


@dataclass
class Totals:
    params: int
    macs: int
    latency: dict[str, float]
    #: Per device: the whole-model estimate node by node (every op, after the runtime's fusions).
    whole: dict[str, WholeEstimate] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class OpTypeSummary:
    """One op type of the model: how many nodes, the bytes they move, their estimated time per device."""

    count: int
    bytes: int
    latency: dict[str, float]
    #: Whether convcost has a latency formula for this op type (False: named as unpriced).
    priced: bool = True


@dataclass
class Analysis:
    model: Model
    settings: Settings
    devices: list[str]
    layers: list[LayerResult]
    totals: Totals
    conv_cost: Cost
    variant_totals: dict[str, Totals]

    def op_types(self) -> dict[str, OpTypeSummary]:
        """Per op type (as the model names it): node count, bytes it reads and writes, and estimated ms per
        device from the whole-model estimates (fused and folded nodes count 0 ms). Slowest first."""
        from convcost.cost.nodes import node_work, traffic_bytes
        from convcost.latency.layouts import ADDED_OPS

        counts: dict[str, int] = {}
        moved: dict[str, int] = {}
        priced: dict[str, bool] = {}
        # with the copies a runtime's layout adds (convcost.latency.layouts), which are no node of the model
        added = {e.node.name: e.node for whole in self.totals.whole.values() for e in whole.nodes
                 if e.node.op in ADDED_OPS}
        for node in [*self.model.nodes, *added.values()]:
            counts[node.op] = counts.get(node.op, 0) + 1
            work = None if node.counted is not None else node_work(node, self.settings.dtype)
            moved[node.op] = moved.get(node.op, 0) + (work.bytes if work else traffic_bytes(node, self.settings.dtype))
            known = node.counted is not None or work is not None
            priced[node.op] = priced.get(node.op, True) and known
        ms: dict[str, dict[str, float]] = {}
        for device, whole in self.totals.whole.items():
            for e in whole.nodes:
                per = ms.setdefault(e.node.op, {})
                per[device] = per.get(device, 0.0) + e.ms
        return {op: OpTypeSummary(counts[op], moved[op], ms.get(op, {}), priced[op])
                for op in sorted(counts, key=lambda o: (-max(ms.get(o, {}).values(), default=0.0), o))}

    def unpriced(self) -> dict[str, list[str]]:
        """Op types that run but have no latency formula, with their node names (first device's estimate)."""
        for whole in self.totals.whole.values():
            return whole.unpriced()
        return {}

    def variant_ratios(self, name: str) -> tuple[float, float]:
        vt = self.variant_totals[name]
        return ratio(self.totals.macs, vt.macs), ratio(self.totals.params, vt.params)

    @property
    def uncounted(self) -> list[Uncounted]:
        """The convs and matmuls the model has but the totals leave out (`check` fails on them)."""
        return self.model.uncounted

    @property
    def warnings(self) -> list[str]:
        """What the numbers may leave out, one sentence each: the loader's warnings, then the op
        types not costed. Every output of `check` and `analyze -f csv` carries these."""
        lines = list(self.model.warnings)
        if self.model.uncosted:
            lines.append(not_costed_line(self.model.uncosted))
        unpriced = self.unpriced()
        if unpriced:
            lines.append(unpriced_line(unpriced))
        return lines


def unpriced_line(unpriced: Mapping[str, list[str]]) -> str:
    """The op types that run but have no latency formula, as one sentence naming a node of each."""
    ops = ", ".join(f"{op} x{len(names)} ({names[0]}{', ...' if len(names) > 1 else ''})"
                    for op, names in sorted(unpriced.items()))
    return f"No latency formula (not in the whole-model estimates): {ops}"


def not_costed_line(uncosted: Mapping[str, int]) -> str:
    """The op types seen but not costed, with their counts, as one sentence."""
    ops = ", ".join(f"{op} x{n}" for op, n in sorted(uncosted.items()))
    return f"Not costed (no MACs counted): {ops}"


