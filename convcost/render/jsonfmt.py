"""`-f json`: every document as data for scripts, in the shape docs/json.md fixes (keys are only
ever added)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from convcost import __version__
from convcost.analysis.analyzer import shown_layers
from convcost.analysis.result import Analysis, LayerResult, Totals, VariantResult, ratio
from convcost.cost import MACS_CONVENTION, Cost, bytes_per_element, cost_of
from convcost.ir.model import Conv
from convcost.render import jsontext
from convcost.render.base import CheckReport, Format, RenderedAnalysis, View
from convcost.render.bench import bench_model
from convcost.render.numbers import json_float

if TYPE_CHECKING:
    from convcost.analysis.applied import ApplyResult
    from convcost.analysis.bench import BenchResult
    from convcost.analysis.budget import Check
    from convcost.analysis.ort_bench import OrtBenchResult
    from convcost.analysis.planner import PlanResult
    from convcost.latency.devices import DeviceProfile

#: A conv's fields other than its name and weight (what its JSON text depends on besides the name).
_geometry = attrgetter(*(f.name for f in fields(Conv) if f.compare and f.name != "name"))


def conv_dict(conv: Conv, cost: Cost) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": conv.name,
        "op": conv.op,
        "in_channels": conv.in_channels,
        "out_channels": conv.out_channels,
        "kernel": list(conv.kernel),
        "stride": list(conv.stride),
        "padding": list(conv.padding),
        "dilation": list(conv.dilation),
        "groups": conv.groups,
        "bias": conv.bias,
        "input_shape": list(conv.input_shape),
        "output_shape": list(conv.output_shape),
        "params": cost.params,
        "macs": cost.macs,
        "flops": cost.flops,
        "memory": cost.memory(),
    }
    if conv.op == "ConvTranspose":
        d["output_padding"] = list(conv.output_padding)
    if conv.dtype:
        d["dtype"] = conv.dtype
    return d


def _variant_shared(v: VariantResult) -> dict[str, Any]:
    """An applicable variant's keys after `layers` that its geometry decides alone (cost, latency, ratios)."""
    assert v.cost is not None
    return {
        "params": v.cost.params,
        "macs": v.cost.macs,
        "flops": v.cost.flops,
        "memory": {**v.cost.memory(), "intermediate_bytes": v.intermediate_bytes},
        "latency_ms": {dev: json_float(e.ms) for dev, e in v.latency.items()},
        "latency_bound": {dev: e.bound for dev, e in v.latency.items()},
        "mac_ratio": json_float(v.mac_ratio),
        "param_ratio": json_float(v.param_ratio),
    }


def _variant_own(v: VariantResult) -> dict[str, Any]:
    """An applicable variant's keys that come from the layer's own weights."""
    return {
        "approx_error": json_float(v.approx_error),
        **{key: json_float(value) if isinstance(value, float) else value for key, value in v.extra.items()},
    }


def _not_applicable(reason: str | None) -> dict[str, Any]:
    return {"applicable": False, "reason": reason, "layers": [], "params": None, "macs": None,
            "memory": None, "latency_ms": {}, "mac_ratio": None, "param_ratio": None, "approx_error": None}


def _stages(v: VariantResult) -> list[dict[str, Any]]:
    return [{**conv_dict(c, cost), "name": name}
            for c, cost, name in zip(v.planned.plan.layers, v.stage_costs, v.stage_names, strict=True)]


def _variant(v: VariantResult, dtype: str) -> dict[str, Any]:
    if v.cost is None:
        return _not_applicable(v.reason)
    return {"applicable": True, "reason": None, "layers": _stages(v), **_variant_shared(v), **_variant_own(v)}


def _slower(layer: LayerResult, name: str) -> dict[str, bool]:
    return {dev: layer.slower(name, dev) for dev in layer.variants[name].latency}


def _layer_latency(layer: LayerResult) -> dict[str, Any]:
    return {"latency_ms": {dev: json_float(e.ms) for dev, e in layer.latency.items()},
            "latency_bound": {dev: e.bound for dev, e in layer.latency.items()}}


def layer_dict(layer: LayerResult, dtype: str) -> dict[str, Any]:
    return {
        **conv_dict(layer.conv, layer.cost),
        **_layer_latency(layer),
        "factorized": layer.selected,
        "variants": {name: {**_variant(v, dtype), "slower": _slower(layer, name)}
                     for name, v in layer.variants.items()},
    }


#: Stands for a layer's name while its template is made (plain ASCII: its JSON text is itself).
_NAME = "<<convcost:layer-name>>"


class _LayerText:
    """`layer_dict`'s JSON text, one layer at a time, for a layer inside the document's `layers`.

    What a conv's geometry decides (its fields and cost, its variants' plans, costs and latency)
    is encoded once per geometry and spliced in. A layer's whole text is a template made once per
    everything but its name (geometry, flags, weight-based errors): a chain of equal convs encodes
    one layer and splices 10,000 names. The analysis shares one `Planned` per geometry, which keys
    the caches.
    """

    LEVEL = 2  # the document, its `layers` list, then each layer

    def __init__(self) -> None:
        self.convs: dict[tuple[object, ...], str] = {}
        self.planned: dict[int, tuple[str, list[str]]] = {}
        self.na: dict[str | None, str] = {}
        #: template key -> the layer's text split where its name goes (`layer`)
        self.templates: dict[tuple[object, ...], list[str]] = {}

    def _conv_rest(self, conv: Conv, cost: Cost, level: int, extra: dict[str, Any] | None = None) -> str:
        """Items of `conv_dict` (and `extra`) after the name, cached per geometry and cost."""
        cache_key = (_geometry(conv), cost, level, None if extra is None else jsontext.encode(extra))
        found = self.convs.get(cache_key)
        if found is None:
            rest = conv_dict(conv, cost)
            del rest["name"]
            found = self.convs[cache_key] = jsontext.items({**rest, **(extra or {})}, level)
        return found

    def _named(self, name: str, rest: str, level: int) -> str:
        """A dict whose first item is "name": `name` is JSON text already, without its quotes."""
        return jsontext.wrap(jsontext.NEWLINE[level + 1] + '"name": "' + name + '",' + rest, level)

    def _shared(self, v: VariantResult, level: int) -> tuple[str, list[str]]:
        """The variant's geometry-decided items, and the text after the name of each stage."""
        found = self.planned.get(id(v.planned))
        if found is None:
            stages = [self._conv_rest(c, cost, level + 2)
                      for c, cost in zip(v.planned.plan.layers, v.stage_costs, strict=True)]
            found = self.planned[id(v.planned)] = (jsontext.items(_variant_shared(v), level), stages)
        return found

    def variant(self, layer: LayerResult, name: str, level: int, conv_name: str) -> str:
        v = layer.variants[name]
        if v.cost is None:
            found = self.na.get(v.reason)
            if found is None:  # no cost, no latency: nothing per layer
                found = self.na[v.reason] = jsontext.encode({**_not_applicable(v.reason), "slower": {}}, level)
            return found
        shared, stages = self._shared(v, level)
        nl = jsontext.NEWLINE[level + 1]
        cut = len(layer.conv.name)
        listed = ",".join(jsontext.NEWLINE[level + 2] + self._named(conv_name + _text(n[cut:]), rest, level + 2)
                          for n, rest in zip(v.stage_names, stages, strict=True))
        own = jsontext.items({**_variant_own(v), "slower": _slower(layer, name)}, level)
        return jsontext.wrap(f'{nl}"applicable": true,{nl}"reason": null,{nl}"layers": '
                             + (f"[{listed}{jsontext.NEWLINE[level + 1]}]" if listed else "[]")
                             + "," + shared + "," + own, level)

    def layer(self, layer: LayerResult) -> str:
        """The layer's text: made once per template key (all but the names), then the name spliced in."""
        name = layer.conv.name
        if _NAME in name:
            return self._layer(layer, _text(name))
        key = self._template_key(layer)
        segments = self.templates.get(key)
        if segments is None:
            made = self._layer(layer, _NAME)
            if not all(n.startswith(name) for v in layer.variants.values() if v.cost is not None
                       for n in v.stage_names):
                return made.replace(_NAME, _text(name))  # stages not named after the layer: no template
            segments = self.templates[key] = made.split(_NAME)
        return _text(name).join(segments)

    @staticmethod
    def _template_key(layer: LayerResult) -> tuple[object, ...]:
        """What a layer's text depends on besides its name. Stage names are the layer's name and a
        suffix its shared plan decides (`VariantResult.stage_names`), so the plan's identity covers them."""
        parts: list[object] = [_geometry(layer.conv), layer.cost, layer.selected]
        if layer.latency:
            parts.append(tuple(layer.latency.items()))
        for name, v in layer.variants.items():
            if v.cost is None:
                parts.append(v.reason)
            else:
                parts.append((id(v.planned), v.approx_error, tuple(v.extra.items()) if v.extra else (),
                              tuple(_slower(layer, name).items()) if v.latency else ()))
        return tuple(parts)

    def _layer(self, layer: LayerResult, name: str) -> str:
        level = self.LEVEL
        rest = self._conv_rest(layer.conv, layer.cost, level, _layer_latency(layer))
        nl = jsontext.NEWLINE[level + 1]
        variants = jsontext.wrap(",".join(jsontext.NEWLINE[level + 2] + jsontext.key(v) + ": "
                                          + self.variant(layer, v, level + 2, name) for v in layer.variants),
                                 level + 1)
        return self._named(name, rest + f',{nl}"factorized": ' + jsontext.encode(layer.selected)
                           + f',{nl}"variants": ' + variants, level)


def _text(name: str) -> str:
    """A string's JSON text without its quotes (JSON escapes character by character, so the text of
    a concatenation is the concatenation of the texts)."""
    return jsontext.encode(name)[1:-1]


def _totals_latency(t: Totals) -> dict[str, float | None]:
    return {dev: json_float(value) for dev, value in t.latency.items()}


def analysis_dict(analysis: Analysis, view: View) -> dict[str, Any]:
    """The whole analysis as JSON-ready data."""
    s = analysis.settings
    return _document(analysis, view, [layer_dict(layer, s.dtype) for layer in shown_layers(analysis, view.sort,
                                                                                          view.top)])


def _document(analysis: Analysis, view: View, layers: list[dict[str, Any]]) -> dict[str, Any]:
    model, s = analysis.model, analysis.settings
    return {
        "convcost_version": __version__,
        "model": {
            "name": model.name,
            "format": model.format,
            "source": model.source,
            "inputs": {k: list(v) for k, v in model.inputs.items()},
            "values": dict(model.values),
        },
        "conventions": {"macs": MACS_CONVENTION, "dtype": s.dtype, "bytes_per_element": bytes_per_element(s.dtype)},
        "settings": {
            "variants": list(s.variants),
            "rank": "auto" if s.options.tol is not None else s.options.rank,
            **({"tol": s.options.tol} if s.options.tol is not None else {}),
            "depth_multiplier": s.options.depth_multiplier,
            "groups": s.options.groups,
            "only": list(s.only),
            "skip": list(s.skip),
            "devices": analysis.devices,
            "sort": view.sort,
            "top": view.top,
        },
        "layers": layers,
        "totals": {
            "params": analysis.totals.params,
            "macs": analysis.totals.macs,
            "flops": 2 * analysis.totals.macs,
            "conv_params": analysis.conv_cost.params,
            "conv_macs": analysis.conv_cost.macs,
            "conv_layers": len(analysis.layers),
            "matmul_macs": sum(cost_of(m, s.dtype).macs for m in model.matmuls),
            "latency_ms": _totals_latency(analysis.totals),
            "uncosted_ops": dict(model.uncosted),
            "unpriced_ops": analysis.unpriced(),
        },
        "op_types": {
            op: {"count": o.count, "bytes": o.bytes,
                 "latency_ms": {dev: json_float(v) for dev, v in o.latency.items()}, "priced": o.priced}
            for op, o in analysis.op_types().items()
        },
        "variant_totals": {
            name: {
                "params": t.params,
                "macs": t.macs,
                "latency_ms": _totals_latency(t),
                "mac_ratio": json_float(ratio(analysis.totals.macs, t.macs)),
                "param_ratio": json_float(ratio(analysis.totals.params, t.params)),
                "applicable_layers": sum(1 for layer in analysis.layers if layer.variants[name].applicable),
                "slower_layers": {dev: sum(1 for layer in analysis.layers if layer.slower(name, dev))
                                  for dev in analysis.devices},
            }
            for name, t in analysis.variant_totals.items()
        },
        "warnings": list(model.warnings),
    }


def analysis_chunks(analysis: Analysis, view: View) -> Iterator[str]:
    """`analysis_dict`'s JSON text (as `json.dumps(indent=2)` writes it) in pieces, one per layer, so
    the document is never whole in memory."""
    shown = shown_layers(analysis, view.sort, view.top)
    text = jsontext.encode(_document(analysis, view, [])) + "\n"
    if not shown:
        yield text
        return
    marker = jsontext.NEWLINE[1] + '"layers": []'
    cut = text.index(marker)  # top-level keys are unique and strings hold no raw newline
    yield text[:cut] + marker[:-1]
    writer = _LayerText()
    for i, layer in enumerate(shown):
        yield ("," if i else "") + jsontext.NEWLINE[2] + writer.layer(layer)
    yield jsontext.NEWLINE[1] + "]" + text[cut + len(marker):]


def checks_dict(report: CheckReport) -> dict[str, Any]:
    from convcost.render.checks import violation_line

    def num(x: float | None) -> float | None:
        return None if x is None or math.isinf(x) else x

    def check(c: Check) -> dict[str, Any]:
        entry = {"rule": c.rule, "scope": c.scope, "metric": c.metric, "value": num(c.value), "limit": c.limit,
                 "ok": c.ok}
        return entry if c.why is None else {**entry, "why": c.why}

    return {
        "model": report.model,
        "passed": all(c.ok for c in report.checks),
        "checks": [check(c) for c in report.checks],
        "violations": [violation_line(c) for c in report.checks if not c.ok],
        "layer_diff": None if report.diffs is None else [
            {"name": d.name, "change": d.change, "old_macs": d.old_macs, "new_macs": d.new_macs, "delta": d.delta}
            for d in report.diffs],
        "warnings": list(report.warnings),
    }


def bench_dict(result: BenchResult) -> dict[str, Any]:
    return {
        "convcost_version": __version__,
        "model": bench_model(result.model),
        "device": {"name": result.device.name, "profile": result.device.path},
        "conditions": {"threads": result.threads, "clock": result.clock,
                       "other_processes_cpu": json_float(result.others), "rounds_retaken": result.rounds_retaken},
        "layers": [
            {"name": layer.name, "kind": layer.kind, "macs": layer.macs, "measured_ms": json_float(layer.measured_ms),
             "estimated_ms": json_float(layer.estimated_ms), "error": json_float(layer.error), "bound": layer.bound,
             "baseline_ms": json_float(layer.baseline_ms),
             "variants": {name: {"measured_ms": json_float(v.measured_ms), "estimated_ms": json_float(v.estimated_ms),
                                 "error": json_float(v.error), "baseline_ms": json_float(v.baseline_ms),
                                 "speedup_measured": json_float(layer.measured_ms / v.measured_ms),
                                 "speedup_estimated": json_float(layer.estimated_ms / v.estimated_ms),
                                 "sign_right": layer.sign_right(name)}
                          for name, v in layer.variants.items()}}
            for layer in result.layers],
        "totals": {"measured_ms": json_float(result.whole_measured_ms),
                   "estimated_ms": json_float(result.whole_estimated_ms),
                   "error": json_float(result.whole_error), "baseline_ms": json_float(result.whole_baseline_ms)},
        "summary": {k: json_float(v) if isinstance(v, float) else v for k, v in result.summary().items()},
        "baseline_summary": {k: json_float(v) if isinstance(v, float) else v
                             for k, v in result.summary(baseline=True).items()} or None,
    }


def devices_dict(profiles: Sequence[DeviceProfile]) -> dict[str, Any]:
    """Every figure of every profile with its source, and the file it comes from."""
    from convcost.latency.devices import profile_document

    return {"devices": [{**profile_document(p), "file": p.path} for p in profiles]}


def _dumps(data: dict[str, Any] | list[Any]) -> str:
    import json

    return json.dumps(data, indent=2) + "\n"


class JsonFormat(Format):
    name = "json"
    preload = ("convcost.latency.devices",)  # (`profile_document`)

    def analysis(self, analysis: Analysis, view: View) -> str:
        return "".join(analysis_chunks(analysis, view))

    def analysis_chunks(self, analysis: Analysis, view: View) -> Iterator[str]:
        return analysis_chunks(analysis, view)

    def checks(self, report: CheckReport) -> str:
        return _dumps(checks_dict(report))

    def ort_bench(self, result: OrtBenchResult) -> str:
        from convcost.render.ort_bench import ort_bench_dict

        return _dumps(ort_bench_dict(result))

    def bench(self, result: BenchResult) -> str:
        return _dumps(bench_dict(result))

    def analyses(self, parts: Sequence[RenderedAnalysis], view: View) -> str:
        from convcost.render.compare import json_list

        return json_list([p.text for p in parts])

    def check_reports(self, reports: Sequence[CheckReport]) -> str:
        return _dumps([checks_dict(r) for r in reports])

    def devices(self, profiles: Sequence[DeviceProfile]) -> str:
        return _dumps(devices_dict(profiles))

    def apply(self, result: ApplyResult) -> str:
        from convcost.render.applied import apply_dict

        return _dumps(apply_dict(result))

    def plan(self, result: PlanResult) -> str:
        from convcost.render.planned import plan_dict

        return _dumps(plan_dict(result))
