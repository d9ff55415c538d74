"""The per-layer columns that the table, Markdown and CSV renderers share.

Each column has a raw value (CSV) and a human format (table, Markdown), so the three outputs
can never disagree about what a cell means.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from convcost.analysis.result import Analysis, LayerResult, VariantResult, not_costed_line, ratio
from convcost.cost import MACS_CONVENTION, cost_of
from convcost.ir.inputs import show_value
from convcost.render.numbers import compared, dims, err, ms, si, times


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[LayerResult], Any]
    fmt: Callable[[Any], str] = str
    numeric: bool = True
    key: str | None = None  # machine name (CSV header); default: header with '_' for spaces

    @property
    def csv_key(self) -> str:
        return self.key or self.header.replace(" ", "_")


def kernel_label(layer: LayerResult) -> str:
    c = layer.conv
    parts = [dims(c.kernel)]
    if any(s != 1 for s in c.stride):
        parts.append(f"s{dims(c.stride)}")
    if any(d != 1 for d in c.dilation):
        parts.append(f"d{dims(c.dilation)}")
    if c.groups != 1:
        parts.append("dw" if c.is_depthwise else f"g{c.groups}")
    return "/".join(parts)


def op_label(layer: LayerResult) -> str:
    c = layer.conv
    return f"{'ConvT' if c.op == 'ConvTranspose' else 'Conv'}{c.rank}d"


def _variant_value(name: str, field: str) -> Callable[[LayerResult], Any]:
    def get(layer: LayerResult) -> Any:
        v = layer.variants[name]
        return getattr(v, field) if v.cost is not None else None

    return get


def _reason(name: str) -> Callable[[LayerResult], Any]:
    return lambda layer: layer.variants[name].reason or ""


def _variant_macs(name: str) -> Callable[[LayerResult], Any]:
    def get(layer: LayerResult) -> Any:
        v = layer.variants[name]
        return v.cost.macs if v.cost is not None else None

    return get


def _variant_extra(name: str, key: str) -> Callable[[LayerResult], Any]:
    def get(layer: LayerResult) -> Any:
        v = layer.variants[name]
        return v.extra.get(key) if v.cost is not None else None

    return get


def _any(analysis: Analysis, name: str, test: Callable[[VariantResult], bool]) -> bool:
    return any(test(layer.variants[name]) for layer in analysis.layers)


def _has(key: str) -> Callable[[VariantResult], bool]:
    return lambda v: v.extra.get(key) is not None


def approx_columns(analysis: Analysis, name: str, raw: bool) -> list[Column]:
    """Weight-based columns of one variant, present only when some layer has their values."""
    cols: list[Column] = []
    if not raw and _any(analysis, name, lambda v: v.approx_error is not None):
        cols.append(Column(f"{name} err", _variant_value(name, "approx_error"), err))
    for key, short, fmt in (("approx_error_permuted", "err perm", err),
                            ("approx_error_lower_bound", "err >=", err),
                            ("rank", "rank", str), ("break_even_rank", "break-even", str)):
        if _any(analysis, name, _has(key)):
            cols.append(Column(f"{name} {key if raw else short}", _variant_extra(name, key), fmt))
    return cols


def _lat(device: str) -> Callable[[LayerResult], Any]:
    return lambda layer: layer.latency[device].ms


class FlaggedMs(float):
    """A variant's latency that knows whether to carry the "fewer MACs but slower" flag."""

    slower: bool = False


SLOWER_MARK = "!"
SLOWER_LEGEND = (f"{SLOWER_MARK} after a variant's time: it has fewer MACs than the original conv but is "
                 "estimated slower on that device")


def _bound(device: str) -> Callable[[LayerResult], Any]:
    return lambda layer: layer.latency[device].bound


def _variant_lat(name: str, device: str) -> Callable[[LayerResult], Any]:
    def get(layer: LayerResult) -> Any:
        v = layer.variants[name]
        if v.cost is None:
            return None
        value = FlaggedMs(v.latency[device].ms)
        value.slower = layer.slower(name, device)
        return value

    return get


def _variant_slower(name: str, device: str) -> Callable[[LayerResult], Any]:
    return lambda layer: layer.slower(name, device) if layer.variants[name].cost is not None else None


def flagged_ms(value: Any) -> str:
    return ms(value) + (f" {SLOWER_MARK}" if getattr(value, "slower", False) else "")


def columns(analysis: Analysis, raw: bool = False) -> list[Column]:
    """Columns for one row per conv. `raw` adds the machine-readable ones CSV wants."""
    cols = [
        Column("layer", lambda r: r.conv.name, numeric=False),
        Column("op", op_label, numeric=False),
        Column("input", lambda r: dims(r.conv.input_shape[1:]), numeric=False),
        Column("output", lambda r: dims(r.conv.output_shape[1:]), numeric=False),
        Column("kernel", kernel_label, numeric=False),
        Column("params", lambda r: r.cost.params, si),
        Column("MACs", lambda r: r.cost.macs, si),
    ]
    if raw:
        cols += [Column("flops", lambda r: r.cost.flops), Column("weight_bytes", lambda r: r.cost.weight_bytes),
                 Column("input_bytes", lambda r: r.cost.input_bytes),
                 Column("output_bytes", lambda r: r.cost.output_bytes)]
    cols += [Column(f"{d} ms", _lat(d), ms) for d in analysis.devices]
    if raw:
        cols += [Column(f"{d} bound", _bound(d), numeric=False) for d in analysis.devices]
    for name in analysis.settings.variants:
        cols.append(Column(f"{name} MACs", _variant_macs(name), si))
        cols.append(Column(f"{name} x", _variant_value(name, "mac_ratio"), times, key=f"{name}_mac_ratio"))
        cols += approx_columns(analysis, name, raw)
        if raw:
            cols.append(Column(f"{name} param ratio", _variant_value(name, "param_ratio")))
            cols.append(Column(f"{name} approx_error", _variant_value(name, "approx_error")))
            cols.append(Column(f"{name} reason", _reason(name), numeric=False))
        cols += [Column(f"{name} {d} ms", _variant_lat(name, d), flagged_ms) for d in analysis.devices]
        if raw:
            cols += [Column(f"{name} {d} slower", _variant_slower(name, d)) for d in analysis.devices]
    return cols


def totals_row(analysis: Analysis, cols: list[Column]) -> list[str]:
    """The 'all convs' row: conv-only sums, variants summed with n/a layers at original cost."""
    conv = analysis.conv_cost
    rest = sum(cost_of(m, analysis.settings.dtype).macs for m in analysis.model.matmuls)
    cells: dict[str, str] = {
        "layer": f"all {len(analysis.layers)} convs",
        "params": si(conv.params),
        "MACs": si(conv.macs),
    }
    for d in analysis.devices:
        cells[f"{d} ms"] = ms(sum(layer.latency[d].ms for layer in analysis.layers))
    for name, t in analysis.variant_totals.items():
        macs = t.macs - rest
        cells[f"{name} MACs"] = si(macs)
        cells[f"{name} x"] = times(ratio(conv.macs, macs))
        for d in analysis.devices:
            cells[f"{name} {d} ms"] = ms(
                sum((v.latency[d].ms if (v := layer.variants[name]).cost else layer.latency[d].ms)
                    for layer in analysis.layers)
            )
    return [cells.get(c.header, "") for c in cols]


def na_reasons(analysis: Analysis, name: str) -> Counter[str]:
    """How many convs variant `name` does not apply to, per reason."""
    return Counter(layer.variants[name].reason or "" for layer in analysis.layers
                   if not layer.variants[name].applicable)


def summary_lines(analysis: Analysis) -> list[str]:
    """Model totals, per-variant model savings, conventions and the ops not costed."""
    t, model = analysis.totals, analysis.model
    inputs = ", ".join([*(dims(v) if len(model.inputs) == 1 else f"{k} {dims(v)}" for k, v in model.inputs.items()),
                        *(f"{k}={show_value(v)}" for k, v in model.values.items())])
    lines = [
        f"Model {model.name} ({model.format}; input {inputs}): {si(t.params)} params, {si(t.macs)} MACs "
        f"({si(2 * t.macs)} FLOPs), of which convs {si(analysis.conv_cost.macs)} MACs in {len(analysis.layers)} layers"
        + "".join(f"; {d} {ms(v)} ms" for d, v in t.latency.items()),
    ]
    for name, vt in analysis.variant_totals.items():
        lines.append(
            f"With {name} where it applies: {si(vt.params)} params ({compared(t.params, vt.params)}), "
            f"{si(vt.macs)} MACs ({compared(t.macs, vt.macs)})"
            + "".join(f"; {d} {ms(v)} ms" for d, v in vt.latency.items())
        )
    for name in analysis.settings.variants:
        reasons = na_reasons(analysis, name)
        if reasons:
            listed = "; ".join(f"{reason} ({n})" for reason, n in reasons.most_common(4))
            lines.append(f"{name} n/a: {listed}")
    lines += approx_lines(analysis)
    slower = []
    for name in analysis.settings.variants:
        for d in analysis.devices:
            n = sum(1 for layer in analysis.layers if layer.slower(name, d))
            if n:
                slower.append(f"{name} on {d} ({n} layer{'s' if n > 1 else ''})")
    if slower:
        lines.append("Fewer MACs but slower (" + SLOWER_MARK + "): " + "; ".join(slower))
    if model.uncosted:
        lines.append(not_costed_line(model.uncosted))
    lines.append(f"dtype {analysis.settings.dtype}. {MACS_CONVENTION}.")
    lines.extend(f"warning: {w}" for w in model.warnings)
    return lines


def approx_lines(analysis: Analysis) -> list[str]:
    """Median weight-based error per variant, and what --rank auto did (nothing without weights)."""
    parts = []
    for name in analysis.settings.variants:
        found = [v for layer in analysis.layers if (v := layer.variants[name]).approx_error is not None]
        if found:
            text = f"{name} {err(statistics.median([v.approx_error for v in found if v.approx_error is not None]))}"
            permuted = [v.extra["approx_error_permuted"] for v in found if "approx_error_permuted" in v.extra]
            if permuted:
                text += f" (channels permuted {err(statistics.median(permuted))})"
            parts.append(f"{text} over {len(found)} layers")
    if not parts:
        return []
    lines = ["Approximation error ||W - W'||/||W|| of the best kernel each variant can express (SVD), "
             "median: " + "; ".join(parts)]
    tol = analysis.settings.options.tol
    if tol is not None:
        lines.append(f"--rank auto --tol {tol:g}: spatial rank and depth multiplier are per layer the "
                     "smallest with error <= tol; break-even = the largest rank that still saves MACs")
    return lines
