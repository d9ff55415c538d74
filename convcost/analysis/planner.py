"""`convcost plan`: per conv, the variant and rank (or keep) that reach a target with the least error.

Each selected conv gets candidates: every variant at a grid of its sizing option (spatial rank R,
depth multiplier m, groups G), each priced on the device (the same estimate `analyze -d` gives)
and scored by its optimal weight error (the same `approx_error`). A candidate is kept only where it
is faster than the conv on that device (and, for a MAC target, also has fewer MACs): keep is the
choice wherever a variant would be slower there.

Choosing is a knapsack: gain (ms or MACs saved) against cost, the squared relative error (the
share of the layer's kernel energy lost; squared errors of independent layers add). As AIMET's
greedy compression-ratio selection does for MACs, each layer's candidates are reduced to their
upper convex hull in (cost, gain), and the steps of all layers are taken in order of gain per cost
until the target is met: the Lagrangian-optimal path, driven here by the device's latency estimate.
`--max-error E` instead takes, per layer, the fastest candidate within E.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from convcost.analysis.result import Analysis, Device, Settings, Totals
from convcost.cost import cost_of
from convcost.ir.model import Conv, Model
from convcost.latency.graph import WholePlan
from convcost.latency.kinds import ALIGN
from convcost.variants import VARIANTS, VariantOptions, plan_variant

#: What a plan aims at: total estimated ms on the device, total MACs, or a per-layer error ceiling.
TargetKind = Literal["latency_ms", "macs", "max_error"]
#: Sizes tried per variant and layer (a geometric grid up to the size that stops saving).
GRID = 16


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    value: float

    def describe(self, device: str) -> str:
        if self.kind == "latency_ms":
            return f"{self.value:g} ms on {device}"
        if self.kind == "macs":
            return f"{self.value:.4g} MACs"
        return f"weight error <= {self.value:g} per layer"


@dataclass(frozen=True)
class Candidate:
    """One way to build a conv: keep it (variant None) or a variant with one option set."""

    variant: str | None
    options: VariantOptions
    key: str | None
    value: int | None
    #: Estimated ms per device (the plan's device first).
    ms: dict[str, float]
    macs: int
    params: int
    error: float
    #: The stages (none for keep), and what of `ms` is layout copies they would add on their own.
    stages: tuple[Conv, ...] = field(default=(), compare=False, repr=False)
    layout_ms: dict[str, float] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class LayerChoice:
    conv: Conv
    keep: Candidate
    chosen: Candidate
    #: Why the layer has no candidate (excluded, no weights, every variant slower...), or None.
    why_keep: str | None = None

    @property
    def replaced(self) -> bool:
        return self.chosen.variant is not None


@dataclass
class PlanResult:
    model: Model
    device: str
    devices: list[str]
    target: Target
    tol: float | None
    layers: list[LayerChoice]
    before: Totals
    after: Totals
    met: bool
    variants: tuple[str, ...] = field(default_factory=tuple)

    def reached(self) -> float:
        """The plan's value of the target's quantity (ms on the device, MACs, or its largest layer error)."""
        if self.target.kind == "latency_ms":
            return self.after.latency[self.device]
        if self.target.kind == "macs":
            return float(self.after.macs)
        return max((c.chosen.error for c in self.layers), default=0.0)

    def start(self) -> float:
        if self.target.kind == "latency_ms":
            return self.before.latency[self.device]
        if self.target.kind == "macs":
            return float(self.before.macs)
        return 0.0


# --- candidates ------------------------------------------------------------------------------------

def _grid(top: int, n: int = GRID) -> list[int]:
    """About 2n integers from 1 to top: n geometrically spaced (fine at small sizes, where trained
    kernels keep most of their energy) and n evenly spaced (fine near the top). All when top <= 2n."""
    if top < 1:
        return []
    if top <= 2 * n:
        return list(range(1, top + 1))
    values = {round(top ** (i / (n - 1))) for i in range(n)} | {round(top * (i + 1) / n) for i in range(n)}
    return sorted(v for v in values if 1 <= v <= top)


def option_grid(variant: str, conv: Conv, base: VariantOptions,
                also: Callable[[], Sequence[int]] = tuple) -> list[VariantOptions]:
    """The sizes of `variant` worth pricing for `conv`: up to the break-even size (beyond it the
    variant has more MACs than the conv) and no further than where its error is 0; `also` adds
    sizes (the smallest within an error cap) when they are in that range."""
    from convcost.variants.autorank import break_even_rank

    v = VARIANTS[variant]
    if v.rank_field is None:  # grouped: every valid G above the current groups
        g = conv.groups
        top = math.gcd(conv.in_channels, conv.out_channels)
        return [replace(base, groups=n) for n in range(2 * g, top + 1, g) if top % n == 0]
    probe = replace(base, **{v.rank_field: v.rank_step(conv)})
    if not plan_variant(variant, conv, probe).applicable:
        return []
    step = v.rank_step(conv)
    top = break_even_rank(variant, conv, probe) // step
    full = _full_rank(variant, conv) // step if variant in ("spatial", "depthwise") else top
    limit = min(top, max(full, 1))
    grid = set(_grid(limit))
    # Each size also rounded down to a multiple of ALIGN: a stage reading that many channels runs on
    # blocked vector kernels, where an odd count may not (onnxruntime's NCHWc convs: kinds.ALIGN).
    grid |= {n * step // ALIGN * ALIGN // step for n in grid if n * step > ALIGN}
    sizes = sorted(v for v in grid | {a // step for a in also() if 1 <= a // step <= limit} if v >= 1)
    return [replace(base, **{v.rank_field: n * step}) for n in sizes]


def _full_rank(variant: str, conv: Conv) -> int:
    """The size from which the variant is exact for any kernel (error 0)."""
    g = conv.groups
    ci, co = conv.in_channels // g, conv.out_channels // g
    if variant == "depthwise":
        return min(co, math.prod(conv.kernel))
    ks = [k for k in conv.kernel if k > 1]
    if len(ks) == 2:
        return min(ci * ks[0], co * ks[1]) * g
    if len(ks) == 3:
        return max(min(ci * ks[0], ks[1] * ks[2] * co), min(ci * ks[0] * ks[1], ks[2] * co)) * g
    return conv.out_channels


def candidates(conv: Conv, variants: Sequence[str], base: VariantOptions, devices: Sequence[Device], dtype: str,
               error_of: Callable[[str, VariantOptions], float | None],
               also: Callable[[str], Sequence[int]] = lambda variant: (),
               swap_ms: Callable[[str, Sequence[Conv]], float] = lambda device, stages: 0.0) -> list[Candidate]:
    """Every variant of `conv` at every size of its grid (plus `also(variant)`), priced on `devices`
    (the stages, and what `swap_ms` says replacing the conv by them adds on a device: layout copies)
    and scored by `error_of`."""
    from convcost.analysis.replacing import parameter_key

    found: list[Candidate] = []
    for variant in variants:
        key = parameter_key(variant)
        for options in option_grid(variant, conv, base, _bind(also, variant)):
            plan = plan_variant(variant, conv, options)
            if not plan.applicable:
                continue
            error = error_of(variant, options)
            if error is None:
                continue
            costs = [cost_of(c, dtype) for c in plan.layers]
            layout = {d.name: swap_ms(d.name, plan.layers) for d in devices}
            ms = {d.name: sum(d.estimate(c, dtype).ms for c in plan.layers) + layout[d.name] for d in devices}
            value = getattr(options, key) or conv.out_channels
            found.append(Candidate(variant, options, key, int(value), ms, sum(c.macs for c in costs),
                                   sum(c.params for c in costs), error, plan.layers, layout))
    return found


def _bind(f: Callable[[str], Sequence[int]], variant: str) -> Callable[[], Sequence[int]]:
    return lambda: f(variant)


# --- choosing -------------------------------------------------------------------------------------------

def error_cost(error: float) -> float:
    """What a layer's weight error costs the plan: -log(1 - error²), the log of the share of the
    kernel's energy it loses. If each replaced layer passes on (1 - error²) of its signal, the
    model keeps their product, so these costs add; for small errors it is error² itself, and it
    grows without bound as a layer loses everything (so the plan spreads its errors)."""
    return -math.log(max(1.0 - error * error, 1e-12))


def _hull(points: list[tuple[float, float, Candidate]]) -> list[tuple[float, float, Candidate]]:
    """The upper convex hull in (cost, gain) from (0, 0), of the points better than any cheaper one."""
    pareto: list[tuple[float, float, Candidate]] = []
    for cost, gain, cand in sorted(points, key=lambda p: (p[0], -p[1])):
        if gain > 0 and (not pareto or gain > pareto[-1][1]):
            pareto.append((cost, gain, cand))
    hull: list[tuple[float, float, Candidate]] = []
    for p in pareto:
        while hull:
            a = hull[-2] if len(hull) >= 2 else (0.0, 0.0, None)
            b = hull[-1]
            # drop b when a -> p is at least as steep as a -> b (b lies on or under the chord)
            if (b[1] - a[1]) * (p[0] - a[0]) <= (p[1] - a[1]) * (b[0] - a[0]):
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def choose(layers: list[LayerChoice], pool: dict[int, list[Candidate]], gain_of: Callable[[LayerChoice, Candidate],
           float], need: float) -> float:
    """Greedy over all layers' hull steps, best gain per unit of error first, until `need` is
    gained; sets each layer's `chosen`. Returns the gain reached."""
    hulls = {i: _hull([(error_cost(c.error), gain_of(layers[i], c), c) for c in cands]) for i, cands in pool.items()}
    position = dict.fromkeys(hulls, -1)
    heap: list[tuple[float, int, int]] = []

    def push(i: int) -> None:
        h, at = hulls[i], position[i]
        if at + 1 >= len(h):
            return
        c0, g0 = (h[at][0], h[at][1]) if at >= 0 else (0.0, 0.0)
        c1, g1 = h[at + 1][0], h[at + 1][1]
        ratio = (g1 - g0) / (c1 - c0) if c1 > c0 else math.inf
        heapq.heappush(heap, (-ratio, i, at + 1))

    for i in hulls:
        push(i)
    gained = 0.0
    while heap and gained < need:
        _, i, step = heapq.heappop(heap)
        h = hulls[i]
        before = h[position[i]][1] if position[i] >= 0 else 0.0
        gained += h[step][1] - before
        position[i] = step
        layers[i].chosen = h[step][2]
        push(i)
    if gained >= need:
        gained = _back_off(layers, pool, gain_of, need, gained)
    return gained


def _back_off(layers: list[LayerChoice], pool: dict[int, list[Candidate]],
              gain_of: Callable[[LayerChoice, Candidate], float], need: float, gained: float) -> float:
    """Spend what the last greedy step overshot: while some layer can move to a choice with less
    error (or keep) and the target still holds, make the move that saves the most error."""
    for _ in range(4 * len(pool) + 1):
        best: tuple[float, int, Candidate, float] | None = None
        for i, cands in pool.items():
            layer = layers[i]
            now_cost, now_gain = error_cost(layer.chosen.error), gain_of(layer, layer.chosen)
            for c in [layer.keep, *cands]:
                saved = now_cost - error_cost(c.error)
                delta = gain_of(layer, c) - now_gain
                if saved > 1e-12 and gained + delta >= need and (best is None or saved > best[0]):
                    best = (saved, i, c, delta)
        if best is None:
            break
        _, i, c, delta = best
        layers[i].chosen = c
        gained += delta
    return gained


def make_plan(model: Model, analysis: Analysis, devices: Sequence[Device], target: Target, tol: float | None,
              settings: Settings, tick: Callable[[int, int], None] | None = None) -> PlanResult:
    """The plan: candidates per selected conv, then the greedy (or, for max_error, per layer the
    fastest within the error). `analysis` is the model's own (no variants), on `devices`."""
    from convcost.variants.spectra import LayerSpectra, group_major

    device = devices[0].name
    dtype = analysis.settings.dtype
    devices = [d.for_model(model.nodes, dtype, model.convs, model.matmuls) for d in devices]
    cap = target.value if target.kind == "max_error" else tol
    layers: list[LayerChoice] = []
    pool: dict[int, list[Candidate]] = {}
    wholes = {d.name: d.plan_whole(model.nodes, dtype) for d in devices}
    for i, result in enumerate(analysis.layers):
        conv = result.conv
        keep = Candidate(None, settings.options, None, None, {d: e.ms for d, e in result.latency.items()},
                         result.cost.macs, result.cost.params, 0.0)
        layer = LayerChoice(conv, keep, keep)
        layers.append(layer)
        if not settings.selects(conv.name):
            layer.why_keep = "excluded by --only/--skip"
        elif conv.weight is None:
            layer.why_keep = "no weights to factorize"
        elif conv.dtype == "int8":
            layer.why_keep = "a quantized (int8) conv"
        else:
            spectra = LayerSpectra(conv, group_major(conv, conv.weight()))

            def error_of(variant: str, options: VariantOptions, s: LayerSpectra = spectra) -> float | None:
                return VARIANTS[variant].error(s, options, False).error

            def within_cap(variant: str, s: LayerSpectra = spectra) -> list[int]:
                """The smallest size within the error cap: the fastest choice there is exact."""
                v = VARIANTS[variant]
                return [v.smallest_rank(s, cap)] if cap is not None and v.rank_field else []

            def swap_ms(device: str, stages: Sequence[Conv], i: int = i) -> float:
                return wholes[device].swap_ms(i, stages)

            found = [c for c in candidates(conv, settings.variants, settings.options, devices, dtype, error_of,
                                           within_cap, swap_ms)
                     if c.ms[device] < keep.ms[device] and (cap is None or c.error <= cap + 1e-12)
                     and (target.kind != "macs" or c.macs < keep.macs)]
            if found:
                pool[i] = found
            else:
                layer.why_keep = f"no variant is faster on {device}" + (
                    f" within error {cap:g}" if cap is not None and cap < 1 else "")
        if tick:
            tick(i + 1, len(analysis.layers))
    before = analysis.totals
    if target.kind == "max_error":
        for i, cands in pool.items():
            layers[i].chosen = min(cands, key=lambda c: (c.ms[device], c.error))
        met = True
    elif target.kind == "latency_ms":
        # Each layer's candidates count the layout copies they would add alone; neighbours replaced
        # together share or spare some, so the plan's total is worked out whole, and where it falls
        # short the greedy goes on for the shortfall.
        need = before.latency[device] - target.value
        for _ in range(8):
            for layer in layers:
                layer.chosen = layer.keep
            got = choose(layers, pool, lambda layer, c: layer.keep.ms[device] - c.ms[device], need)
            short = _totals(before, layers, wholes).latency[device] - target.value
            if short <= 1e-9 * target.value or got < need - 1e-12:
                break
            need += short
        met = short <= 1e-9 * target.value
    else:
        need = before.macs - target.value
        got = choose(layers, pool, lambda layer, c: float(layer.keep.macs - c.macs), need)
        met = got >= need
    for i in pool:
        if not layers[i].replaced:
            layers[i].why_keep = "not needed to reach the target"
    after = _totals(before, layers, wholes)
    return PlanResult(model, device, [d.name for d in devices], target, tol, layers, before, after, met,
                      tuple(settings.variants))


def _totals(before: Totals, layers: Sequence[LayerChoice], wholes: Mapping[str, WholePlan]) -> Totals:
    """The model's totals with each layer as chosen: the layout copies of all replaced layers together."""
    params, macs = before.params, before.macs
    latency = dict(before.latency)
    swapped = {i: layer.chosen.stages for i, layer in enumerate(layers) if layer.replaced}
    for layer in layers:
        if not layer.replaced:
            continue
        params += layer.chosen.params - layer.keep.params
        macs += layer.chosen.macs - layer.keep.macs
        for dev in latency:
            latency[dev] += layer.chosen.ms[dev] - layer.chosen.layout_ms.get(dev, 0.0) - layer.keep.ms[dev]
    for dev in latency:
        latency[dev] += wholes[dev].relayout_ms(swapped)
    return Totals(params, macs, latency)
