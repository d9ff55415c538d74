"""Run the cost model, the variants and the latency estimates over a loaded model."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

from convcost.analysis.dtypes import resolve_dtype
from convcost.analysis.result import (
    NO_EXTRA,
    Analysis,
    ApproxFn,
    Device,
    LayerResult,
    OptionsFn,
    Planned,
    Settings,
    Totals,
    VariantResult,
    ratio,
)
from convcost.cost import Cost, cost_of, total_cost
from convcost.ir.model import INT64_MAX, Conv, Model
from convcost.latency.roofline import Estimate
from convcost.util.errors import InputError
from convcost.variants import Approx, Plan, VariantOptions, plan_variant

_EXCLUDED = Plan.na("excluded by --only/--skip")


#: A conv's fields other than its name and weight: convs equal in these cost the same and plan the same.
_geometry = attrgetter(*(f.name for f in fields(Conv) if f.compare and f.name != "name"))


class _Planner:
    """Prices convs and plans their variants once per conv geometry (per variant and options).

    Real models repeat a handful of geometries, so this turns the per-layer planning (about
    0.2 ms per layer and variant) into dictionary look-ups. A plan is shared only if its
    stages are named after the conv (`<conv name>/...`), so each layer can name its own.
    """

    def __init__(self, settings: Settings, devices: Sequence[Device]) -> None:
        self.dtype = settings.dtype
        self.devices = devices
        self.convs: dict[tuple[object, ...], tuple[Cost, dict[str, Estimate]]] = {}
        self.variants: dict[tuple[object, ...], Planned] = {}

    def conv(self, conv: Conv, key: tuple[object, ...]) -> tuple[Cost, dict[str, Estimate]]:
        found = self.convs.get(key)
        if found is None:
            found = self.convs[key] = (cost_of(conv, self.dtype),
                                       {d.name: d.estimate(conv, self.dtype) for d in self.devices})
        return found

    def variant(self, name: str, conv: Conv, key: tuple[object, ...], options: VariantOptions,
                original: Cost) -> Planned:
        memo = (name, key, options)
        found = self.variants.get(memo)
        if found is None:
            found = self._plan(name, conv, options, original)
            if all(c.name.startswith(conv.name) for c in found.plan.layers):
                self.variants[memo] = found
        return found

    def _plan(self, name: str, conv: Conv, options: VariantOptions, original: Cost) -> Planned:
        plan = plan_variant(name, conv, options)
        if not plan.applicable:
            return Planned(conv, plan)
        dtype = self.dtype
        stages = tuple(cost_of(c, dtype) for c in plan.layers)
        cost = sum(stages, Cost())
        latency: dict[str, Estimate] = {}
        for d in self.devices:
            parts = [d.estimate(c, dtype) for c in plan.layers]
            bound = max(parts, key=lambda e: e.ms).bound
            latency[d.name] = Estimate(sum(p.ms for p in parts), bound)
        return Planned(conv, plan, cost, latency, ratio(original.macs, cost.macs),
                       ratio(original.params, cost.params), stages)


def _variant(
    name: str, layer: Conv, key: tuple[object, ...], original: Cost, settings: Settings, planner: _Planner,
    approx: ApproxFn | None, options_for: OptionsFn | None = None,
) -> VariantResult:
    options, extra = options_for(name, layer, settings.options) if options_for else (settings.options, {})
    planned = planner.variant(name, layer, key, options, original)
    if not planned.plan.applicable:
        return VariantResult(name, planned, layer)
    found = approx(name, layer, options) if approx and layer.weight else None
    if isinstance(found, Approx):
        extra = {**extra, **found.extra}
        found = found.error
    return VariantResult(name, planned, layer, approx_error=found, extra=dict(extra) if extra else NO_EXTRA)


def analyze(
    model: Model,
    settings: Settings | None = None,
    devices: Sequence[Device] = (),
    approx: ApproxFn | None = None,
    progress: Callable[[int, int], None] | None = None,
    options_for: OptionsFn | None = None,
) -> Analysis:
    """Cost every conv and each selected variant of it; sum model and variant totals.

    `approx` adds each variant's weight-based error; `options_for` picks variant options per
    layer (`--rank auto`), otherwise `settings.options` apply to every layer.
    """
    model, settings = resolve_dtype(model, settings or Settings())
    dtype = settings.dtype
    devices = [d.for_model(model.nodes, dtype, model.convs, model.matmuls) for d in devices]
    planner = _Planner(settings, devices)
    layers: list[LayerResult] = []
    for i, conv in enumerate(model.convs):
        key = _geometry(conv)
        cost, latency = planner.conv(conv, key)
        selected = settings.selects(conv.name)
        variants: dict[str, VariantResult] = {}
        for name in settings.variants:
            if selected:
                variants[name] = _variant(name, conv, key, cost, settings, planner, approx, options_for)
            else:
                variants[name] = VariantResult(name, Planned(conv, _EXCLUDED), conv)
        layers.append(LayerResult(conv, cost, latency, variants, selected))
        if progress:
            progress(i + 1, len(model.convs))

    rest = total_cost(model.matmuls, dtype)
    matmul_ms = {d.name: [d.estimate(m, dtype).ms for m in model.matmuls] for d in devices}
    plans = {d.name: d.plan_whole(model.nodes, dtype) for d in devices}  # once: shared by every variant total
    conv_cost = sum((layer.cost for layer in layers), Cost())
    other_params = _other_params(model, conv_cost.params + rest.params)

    #: A layer as one total prices it: its cost, its estimate per device, and the stages that replace
    #: its conv (None: the conv itself).
    Pick = Callable[[LayerResult], tuple[Cost, Mapping[str, Estimate], Sequence[Conv] | None]]

    def totals(pick: Pick) -> Totals:
        """Counts summed over the layers as `pick` prices them; latency is the whole model per device,
        every node priced, with each conv's estimate (or its variant's stages, and the layout copies
        they add) in its place."""
        params, macs = rest.params + other_params, rest.macs
        conv_ms: dict[str, list[float]] = {d.name: [] for d in devices}
        swapped: dict[int, Sequence[Conv]] = {}
        for i, layer in enumerate(layers):
            cost, lat, stages = pick(layer)
            params += cost.params
            macs += cost.macs
            if stages:
                swapped[i] = stages
            for dev, est in lat.items():
                conv_ms[dev].append(est.ms)
        whole = {d.name: plans[d.name].estimate(conv_ms[d.name], matmul_ms[d.name], swapped) for d in devices}
        return Totals(params, macs, {dev: w.ms for dev, w in whole.items()}, whole)

    def with_variant(name: str) -> Pick:
        def pick(layer: LayerResult) -> tuple[Cost, Mapping[str, Estimate], Sequence[Conv] | None]:
            v = layer.variants[name]
            if v.cost is not None:
                return v.cost, v.latency, v.planned.plan.layers
            return layer.cost, layer.latency, None

        return pick

    analysis = Analysis(
        model=model,
        settings=settings,
        devices=[d.name for d in devices],
        layers=layers,
        totals=totals(lambda layer: (layer.cost, layer.latency, None)),
        conv_cost=conv_cost,
        variant_totals={name: totals(with_variant(name)) for name in settings.variants},
    )
    _check_int64(analysis, rest)
    return analysis


def _other_params(model: Model, priced: int) -> int:
    """Parameters outside the priced convs and matmuls: what the model declares beyond them, where it
    declares a total, else its own count of them."""
    if model.declared_params:
        return model.declared_params - priced
    return model.other_params


def _check_int64(analysis: Analysis, matmuls: Cost) -> None:
    """Refuse counts past int64: only absurd dims produce them, and JSON readers (jq, pandas, Go,
    a database column) would overflow or round them silently."""

    def too_big(cost: Cost) -> bool:
        return max(cost.flops, cost.params, cost.traffic_bytes) > INT64_MAX

    source = analysis.model.source
    for layer in analysis.layers:
        costs = [layer.cost, *(v.cost for v in layer.variants.values() if v.cost is not None)]
        if any(too_big(c) for c in costs):
            raise InputError(f"layer {layer.conv.name!r}: its FLOPs or bytes overflow 64-bit integers "
                             f"(input {list(layer.conv.input_shape)}, output {list(layer.conv.output_shape)})", source)
    totals = [analysis.totals, *analysis.variant_totals.values()]
    if too_big(matmuls) or any(max(2 * t.macs, t.params) > INT64_MAX for t in totals):
        raise InputError("the model's total FLOPs or params overflow 64-bit integers", source)


SORT_KEYS: dict[str, Callable[[LayerResult], Any]] = {
    "order": lambda layer: 0,
    "name": lambda layer: layer.conv.name,
    "macs": lambda layer: -layer.cost.macs,
    "params": lambda layer: -layer.cost.params,
    "bytes": lambda layer: -layer.cost.traffic_bytes,
    "latency": lambda layer: -max((e.ms for e in layer.latency.values()), default=0.0),
}


def shown_layers(analysis: Analysis, sort: str = "order", top: int | None = None) -> list[LayerResult]:
    """Layers to display: sorted (stable, model order breaks ties) and cut to the top N."""
    rows = sorted(analysis.layers, key=SORT_KEYS[sort]) if sort != "order" else list(analysis.layers)
    return rows[:top] if top else rows
