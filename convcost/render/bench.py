"""Text and JSON for `convcost bench`: measured beside estimated, per layer and per variant."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from convcost import __version__
from convcost.render.console import to_text
from convcost.render.numbers import count, json_float, ms, si
from convcost.variants import VARIANTS

if TYPE_CHECKING:
    from convcost.analysis.bench import BenchResult


#: Share of the CPU taken by other processes above which timings get a warning.
BUSY_WARNING = 0.2




def pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) or math.isinf(x) else f"{x:+.0%}"


def _share(num: int | float | None, den: int | float | None) -> str:
    if not den or num is None:
        return "n/a"
    return f"{num}/{den} ({num / den:.0%})"


def summary_lines(result: BenchResult) -> list[str]:
    s = result.summary()
    lines = [
        f"Whole model ({count(len(result.model.convs), 'conv')} and "
        f"{count(len(result.model.matmuls), 'matrix multiply', 'matrix multiplies')} run back to "
        f"back): measured {ms(result.whole_measured_ms)} ms, estimated {ms(result.whole_estimated_ms)} ms "
        f"({pct(result.whole_error)})",
        f"Layers within 25%: {_share(s['layers_within_25pct'], s['layers'])}; median |error| "
        f"{pct(s['median_abs_error']).lstrip('+')}",
        f"Variant speed-up sign right: {_share(s['signs_right'], s['variant_pairs'])}",
    ]
    b = result.summary(baseline=True)
    if b:
        lines.append(
            f"Baseline 'time proportional to MACs' (fitted on the same calibration): whole model "
            f"{pct(b['whole_model_error'])}, layers within 25% {_share(b['layers_within_25pct'], b['layers'])}, "
            f"signs right {_share(b['signs_right'], b['variant_pairs'])}")
    others = "unknown" if result.others is None else f"{result.others:.0%}"
    lines.append(
        f"Device profile {result.device.name} ({result.device.path}); torch threads {result.threads}, "
        f"{result.clock} clock; other processes used {others} of the CPU while measuring"
        + (f", {result.rounds_retaken} busy rounds retaken" if result.rounds_retaken else ""))
    if result.clock == "wall" and result.others is not None and result.others > BUSY_WARNING:
        lines.append(f"warning: other processes used {result.others:.0%} of the CPU; wall-clock times on a busy "
                     "machine are unreliable (calibrate --threads 1 --clock thread measures CPU time instead)")
    lines.append("error = estimated / measured - 1; a variant's sign is right when the estimate calls it faster "
                 "than the original exactly when the measurement does")
    return lines


def render_bench_table(result: BenchResult, width: int | None = None, color: bool = False) -> str:
    order = list(VARIANTS)
    names = sorted({name for layer in result.layers for name in layer.variants},
                   key=lambda n: order.index(n) if n in order else len(order))
    table = Table(title=f"convcost bench: {result.model.name} on {result.device.name}", title_justify="left",
                  header_style="bold")
    for header in ("layer", "kind", "MACs", "measured ms", "estimated ms", "error", "bound"):
        table.add_column(header, justify="left" if header in ("layer", "kind", "bound") else "right")
    for name in names:
        table.add_column(f"{name} measured", justify="right")
        table.add_column(f"{name} estimated", justify="right")
        table.add_column(f"{name} sign", justify="center")
    for layer in result.layers:
        cells = [Text(layer.name), Text(layer.kind), Text(si(layer.macs)), Text(ms(layer.measured_ms)),
                 Text(ms(layer.estimated_ms)), Text(pct(layer.error), style="red" if abs(layer.error) > 0.25 else ""),
                 Text(layer.bound)]
        for name in names:
            v = layer.variants.get(name)
            if v is None:
                cells += [Text("n/a", style="dim")] * 3
                continue
            ok = layer.sign_right(name)
            cells += [Text(ms(v.measured_ms)), Text(ms(v.estimated_ms)),
                      Text("ok" if ok else "WRONG", style="" if ok else "red")]
        table.add_row(*cells)
    return to_text([table, *(Text(line) for line in summary_lines(result))], color, width)


def bench_dict(result: BenchResult) -> dict[str, Any]:
    model = result.model
    return {
        "convcost_version": __version__,
        "model": {"name": model.name, "format": model.format, "source": model.source,
                  "inputs": {k: list(v) for k, v in model.inputs.items()}},
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


def render_bench_json(result: BenchResult) -> str:
    return json.dumps(bench_dict(result), indent=2) + "\n"
