"""Run the cost model, the variants and the latency estimates over a loaded model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from convcost.analysis.dtypes import resolve_dtype
from convcost.analysis.result import (
    Analysis,
    ApproxFn,
    Device,
    LayerResult,
    OptionsFn,
    Settings,
    Totals,
    VariantResult,
    ratio,
)
from convcost.cost import Cost, cost_of, total_cost
from convcost.ir.model import INT64_MAX, Conv, Model, Op
from convcost.latency.roofline import Estimate
from convcost.util.errors import InputError
from convcost.variants import Approx, Plan, plan_variant


def _latency(op: Op, dtype: str, devices: Sequence[Device]) -> dict[str, Estimate]:
    return {d.name: d.estimate(op, dtype) for d in devices}


def _variant(
    name: str, layer: Conv, original: Cost, settings: Settings, devices: Sequence[Device],
    approx: ApproxFn | None, options_for: OptionsFn | None = None,
) -> VariantResult:
    options, extra = options_for(name, layer, settings.options) if options_for else (settings.options, {})
    plan = plan_variant(name, layer, options)
    if not plan.applicable:
        return VariantResult(name, plan)
    stages = [cost_of(c, settings.dtype) for c in plan.layers]
    cost = sum(stages, Cost())
    latency: dict[str, Estimate] = {}
    for d in devices:
        parts = [d.estimate(c, settings.dtype) for c in plan.layers]
        bound = max(parts, key=lambda e: e.ms).bound
        latency[d.name] = Estimate(sum(p.ms for p in parts), bound)
    found = approx(name, layer, options) if approx and layer.weight else None
    if isinstance(found, Approx):
        extra = {**extra, **found.extra}
        found = found.error
    return VariantResult(
        name, plan, cost, latency,
        approx_error=found,
        mac_ratio=ratio(original.macs, cost.macs),
        param_ratio=ratio(original.params, cost.params),
        stage_costs=stages,
        extra=dict(extra),
    )


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
    layers: list[LayerResult] = []
    for i, conv in enumerate(model.convs):
        cost = cost_of(conv, dtype)
        selected = settings.selects(conv.name)
        variants: dict[str, VariantResult] = {}
        for name in settings.variants:
            if selected:
                variants[name] = _variant(name, conv, cost, settings, devices, approx, options_for)
            else:
                variants[name] = VariantResult(name, Plan.na("excluded by --only/--skip"))
        layers.append(LayerResult(conv, cost, _latency(conv, dtype, devices), variants, selected))
        if progress:
            progress(i + 1, len(model.convs))

    rest = total_cost(model.matmuls, dtype)
    rest_latency = {d.name: sum(d.estimate(m, dtype).ms for m in model.matmuls) for d in devices}
    conv_cost = sum((layer.cost for layer in layers), Cost())
    other_params = _other_params(model, conv_cost.params + rest.params)

    def totals(pick: Callable[[LayerResult], tuple[Cost, dict[str, Estimate]]]) -> Totals:
        params, macs = rest.params + other_params, rest.macs
        latency = dict(rest_latency)
        for layer in layers:
            cost, lat = pick(layer)
            params += cost.params
            macs += cost.macs
            for dev, est in lat.items():
                latency[dev] += est.ms
        return Totals(params, macs, latency)

    def with_variant(name: str) -> Callable[[LayerResult], tuple[Cost, dict[str, Estimate]]]:
        def pick(layer: LayerResult) -> tuple[Cost, dict[str, Estimate]]:
            v = layer.variants[name]
            if v.cost is not None:
                return v.cost, v.latency
            return layer.cost, layer.latency

        return pick

    analysis = Analysis(
        model=model,
        settings=settings,
        devices=[d.name for d in devices],
        layers=layers,
        totals=totals(lambda layer: (layer.cost, layer.latency)),
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
