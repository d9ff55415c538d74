"""`convcost bench` with an onnxruntime profile: the whole model (and its factorized versions) run in
onnxruntime beside the estimates, and each kernel onnxruntime ran beside the nodes it computes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convcost import __version__
from convcost.render.bench import BUSY_WARNING, bench_model, pct, share
from convcost.render.numbers import json_float, ms

if TYPE_CHECKING:
    from convcost.analysis.ort_bench import OrtBenchResult, WholeBench

#: Kernels the table lists (the longest first); JSON lists them all.
TABLE_KERNELS = 40


def summary_lines(result: OrtBenchResult) -> list[str]:
    from convcost.analysis.ort_bench import NODE_FLOOR_MS

    s = result.summary()
    w = result.whole
    runtime = result.device.runtime or {}
    lines = [
        f"Whole model in onnxruntime {runtime.get('version', '')} ({result.threads} thread"
        f"{'s' if result.threads > 1 else ''}, median of {w.runs} runs over {result.seconds:g} s): measured "
        f"{ms(w.measured_ms)} ms, estimated {ms(w.estimated_ms)} ms ({pct(w.error)})"
        + (f"; time-proportional-to-MACs baseline {ms(w.baseline_ms)} ms ({pct(_err(w.baseline_ms, w))})"
           if w.baseline_ms else ""),
        f"Kernels of {NODE_FLOOR_MS * 1e3:g} us or more within 25%: "
        f"{share(s['kernels_within_25pct'], s['kernels_over_floor'])}; median |error| "
        f"{pct(s['median_abs_error']).lstrip('+')}",
    ]
    for name, v in result.variants.items():
        lines.append(f"Variant {name} (factorized model, run end to end in turns with the original): measured "
                     f"{ms(v.measured_ms)} ms, estimated {ms(v.estimated_ms)} ms ({pct(v.error)}); speed-up "
                     f"measured {result.speedup_measured(v):.2f}x, estimated {result.speedup_estimated(v):.2f}x: "
                     f"sign {'right' if result.sign_right(v) else 'WRONG'}")
    if result.inserted:
        total = sum(k.measured_ms for k in result.inserted)
        est = sum(k.estimated_ms for k in result.inserted)
        lines.append(f"Kernels onnxruntime inserted (layout reorders, no node of the model): {len(result.inserted)}, "
                     f"measured {ms(total)} ms, estimated {ms(est)} ms")
    others = "unknown" if result.others is None else f"{result.others:.0%}"
    lines.append(f"Device profile {result.device.name} ({result.device.path}); other processes used {others} of "
                 "the CPU while measuring")
    if result.others is not None and result.others > BUSY_WARNING:
        lines.append(f"warning: other processes used {result.others:.0%} of the CPU; times on a busy machine are "
                     "unreliable")
    lines.append("error = estimated / measured - 1; per kernel, the estimate is the sum of the model's nodes it "
                 "computes (a fused conv with its activation, batch norm or residual add)")
    return lines


def _err(value: float | None, w: WholeBench) -> float | None:
    return None if value is None else value / w.measured_ms - 1


def table(result: OrtBenchResult) -> str:
    from rich.table import Table
    from rich.text import Text

    from convcost.render.console import to_text

    table = Table(title=f"convcost bench: {result.model.name} in onnxruntime on {result.device.name}",
                  title_justify="left", header_style="bold")
    for header in ("kernel", "op", "model nodes", "measured ms", "estimated ms", "error"):
        table.add_column(header, justify="left" if header in ("kernel", "op", "model nodes") else "right")
    for k in sorted(result.kernels + result.inserted, key=lambda k: -k.measured_ms)[:TABLE_KERNELS]:
        nodes = ", ".join(k.nodes[:3]) + (f" +{len(k.nodes) - 3}" if len(k.nodes) > 3 else "") if k.nodes \
            else "(inserted by onnxruntime)"
        table.add_row(Text(k.name), Text(k.op), Text(nodes), Text(ms(k.measured_ms)), Text(ms(k.estimated_ms)),
                      Text(pct(k.error) if k.nodes else "n/a", style="red" if k.nodes and abs(k.error) > 0.25 else ""))
    shown = min(TABLE_KERNELS, len(result.kernels) + len(result.inserted))
    more = len(result.kernels) + len(result.inserted) - shown
    out: list[Any] = [table]
    if more:
        out.append(Text(f"... {more} shorter kernels (-f json lists them all)"))
    out += [Text(line) for line in summary_lines(result)]
    return to_text(out, width=200)


def _whole(w: WholeBench) -> dict[str, Any]:
    return {"measured_ms": json_float(w.measured_ms), "estimated_ms": json_float(w.estimated_ms),
            "error": json_float(w.error), "baseline_ms": json_float(w.baseline_ms), "runs": w.runs}


def ort_bench_dict(result: OrtBenchResult) -> dict[str, Any]:
    return {
        "convcost_version": __version__,
        "model": bench_model(result.model),
        "device": {"name": result.device.name, "profile": result.device.path, "runtime": result.device.runtime},
        "conditions": {"threads": result.threads, "seconds": result.seconds,
                       "other_processes_cpu": json_float(result.others)},
        "totals": _whole(result.whole),
        "variants": {name: {**_whole(v), "original_measured_ms": json_float(v.reference_ms),
                            "speedup_measured": json_float(result.speedup_measured(v)),
                            "speedup_estimated": json_float(result.speedup_estimated(v)),
                            "sign_right": result.sign_right(v)}
                     for name, v in result.variants.items()},
        "kernels": [{"name": k.name, "op": k.op, "nodes": k.nodes, "measured_ms": json_float(k.measured_ms),
                     "estimated_ms": json_float(k.estimated_ms), "error": json_float(k.error),
                     "baseline_ms": json_float(k.baseline_ms)} for k in result.kernels],
        "inserted_kernels": [{"name": k.name, "op": k.op, "measured_ms": json_float(k.measured_ms),
                              "estimated_ms": json_float(k.estimated_ms)}
                             for k in result.inserted],
        "summary": {k: json_float(v) if isinstance(v, float) else v for k, v in result.summary().items()},
    }
