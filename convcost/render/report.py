"""`convcost report`: a self-contained GitHub-flavoured Markdown report with Mermaid charts.

Charts are Mermaid `xychart-beta` blocks, which GitHub renders without images.
"""

from __future__ import annotations

from convcost import __version__
from convcost.analysis.analyzer import shown_layers
from convcost.analysis.result import Analysis, LayerResult
from convcost.cost import MACS_CONVENTION, bytes_per_element
from convcost.ir.inputs import show_value
from convcost.render.base import Format, View
from convcost.render.markdown import layer_tables, table_lines
from convcost.render.numbers import count, dims, ms, si, times

TOP = 10


def _quote(label: str) -> str:
    return '"' + label.replace('"', "'") + '"'


def _plain(v: float) -> str:
    """Mermaid accepts plain decimals only (no exponent)."""
    return f"{round(v, 3):f}".rstrip("0").rstrip(".") or "0"


def xychart(title: str, labels: list[str], y_label: str, series: list[tuple[str, list[float]]]) -> list[str]:
    """A Mermaid xychart-beta: the first series as bars, the others as lines."""
    top = max((v for _, values in series for v in values), default=0.0)
    lines = ["```mermaid", "xychart-beta", f"    title {_quote(title)}",
             f"    x-axis [{', '.join(_quote(label) for label in labels)}]",
             f"    y-axis {_quote(y_label)} 0 --> {_plain(top * 1.1 if top > 0 else 1)}"]
    for i, (_, values) in enumerate(series):
        kind = "bar" if i == 0 else "line"
        lines.append(f"    {kind} [{', '.join(_plain(v) for v in values)}]")
    lines.append("```")
    if len(series) > 1:
        lines.append("")
        lines.append("Bars: " + series[0][0] + "; lines: " + ", ".join(name for name, _ in series[1:]) + ".")
    return lines


def _totals(analysis: Analysis) -> list[str]:
    t = analysis.totals
    header = ["", "params", "MACs", "FLOPs", *[f"{d} ms" for d in analysis.devices], "MACs saved", "params saved"]
    rows = [["original", si(t.params), si(t.macs), si(2 * t.macs), *[ms(t.latency[d]) for d in analysis.devices],
             "", ""]]
    for name, vt in analysis.variant_totals.items():
        mr, pr = analysis.variant_ratios(name)
        rows.append([name, si(vt.params), si(vt.macs), si(2 * vt.macs), *[ms(vt.latency[d]) for d in analysis.devices],
                     times(mr), times(pr)])
    return table_lines(header, rows, [False] + [True] * (len(header) - 1))


def _reasons(analysis: Analysis) -> list[str]:
    from convcost.render.rows import na_reasons

    rows = []
    for name in analysis.settings.variants:
        rows += [[name, reason, str(n)] for reason, n in na_reasons(analysis, name).most_common()]
    if not rows:
        return ["Every variant applies to every conv."]
    return table_lines(["variant", "why not applicable", "convs"], rows, [False, False, True])


def _approx(analysis: Analysis) -> list[str]:
    with_weights = [layer for layer in analysis.layers
                    if any(v.approx_error is not None for v in layer.variants.values())]
    if not with_weights:
        return ["The model carries no weights (or `--no-approx` was given): no approximation errors."]
    names = list(analysis.settings.variants)
    rows = [[layer.conv.name, *[("n/a" if (e := layer.variants[n].approx_error) is None else f"{e:.3f}")
                                for n in names]] for layer in with_weights]
    return ["Relative Frobenius error ‖W − Ŵ‖/‖W‖ of the best kernel each variant can express (SVD):", "",
            *table_lines(["layer", *names], rows, [False] + [True] * len(names))]


def _latency_chart(analysis: Analysis) -> list[str]:
    if not analysis.devices:
        return ["No device profiles given (`-d NAME`): no latency estimates."]
    series = [("original", [analysis.totals.latency[d] for d in analysis.devices])]
    series += [(name, [vt.latency[d] for d in analysis.devices]) for name, vt in analysis.variant_totals.items()]
    return xychart("Model latency per device (ms)", analysis.devices, "ms", series)


def _top_by(analysis: Analysis, key: str, top: int) -> list[str]:
    return layer_tables(analysis, View(sort=key, top=top))


def _factorize(analysis: Analysis, view: View) -> list[str]:
    """The decision: per device, which convs to factorize (the fastest choice within the error cap)."""
    from convcost.render.planned import choice_of

    if not analysis.devices:
        return ["Give a device (`-d NAME`, see `convcost devices`) to see which convs are worth factorizing "
                "on it: a variant that saves MACs can still be slower there."]
    if not view.plans:
        return ["The model carries no weights (or `--no-approx` was given): the errors that decide what to "
                "factorize are unknown."]
    cap = view.plan_error
    source = analysis.model.source
    lines = [f"Per conv, the fastest variant whose weight error is at most {cap:g} and that is estimated faster "
             "than the conv on the device (`convcost plan` with `--max-error`; the error is analyze's "
             "approx_error, not accuracy: fine-tune after factorizing).", ""]
    devices = analysis.devices
    for plan in view.plans:
        chosen = [c for c in plan.layers if c.replaced]
        lines += [f"### On {plan.device}", ""]
        if not chosen:
            lines += [f"No conv can be factorized within weight error {cap:g} and run faster on {plan.device}. "
                      f"A latency target (`convcost plan {source} -d {plan.device} --target-ms MS`) finds the "
                      "least lossy plan that reaches it.", ""]
            continue
        header = ["layer", "choice", "MACs", "MACs after", *[f"saved on {d} (ms)" for d in devices], "weight error"]
        rows = [[c.conv.name, choice_of(c.chosen), si(c.keep.macs), si(c.chosen.macs),
                 *[ms(c.keep.ms[d] - c.chosen.ms[d]) for d in devices], f"{c.chosen.error:.3f}"] for c in chosen]
        lines += table_lines(header, rows, [False, False, True, True, *[True] * len(devices), True])
        b, a = plan.before, plan.after
        totals = "; ".join(f"{d} {ms(b.latency[d])} -> {ms(a.latency[d])} ms" for d in devices)
        lines += ["", f"{len(chosen)} of {count(len(plan.layers), 'conv')}: MACs {si(b.macs)} -> {si(a.macs)}, "
                      f"params {si(b.params)} -> {si(a.params)}; estimated {totals}.", "",
                  "Write and verify it:", "", "```bash",
                  f"convcost plan {source} -d {plan.device} --max-error {cap:g} -o plan.yaml",
                  f"convcost apply {source} --plan plan.yaml -o factorized.onnx --bench", "```", ""]
    return lines


class ReportFormat(Format):
    """The report: totals, the top layers, why variants do not apply, approximation errors, every conv."""

    name = "report"
    choosable = False  # the `report` command's format, not an `analyze --format`

    def analysis(self, analysis: Analysis, view: View) -> str:
        model, s = analysis.model, analysis.settings
        top = view.top or TOP
        biggest: list[LayerResult] = shown_layers(analysis, "macs", top)
        inputs = ", ".join([*(f"`{k}` {dims(v)}" for k, v in model.inputs.items()),
                            *(f"`{k}={show_value(v)}`" for k, v in model.values.items())])
        lines = [
            f"# convcost report: `{model.name}`", "",
            f"- Model: `{model.source}` ({model.format}), input {inputs}",
            f"- {count(len(analysis.layers), 'convolution')}, "
            f"{count(len(model.matmuls), 'matrix multiply', 'matrix multiplies')}",
            f"- Variants: {', '.join(s.variants) or 'none'} (rank {s.options.rank or 'C_out'}, "
            f"depth multiplier {s.options.depth_multiplier}, groups {s.options.groups})"
            + (f"; not factorized: {', '.join(s.skip)}" if s.skip else "")
            + (f"; factorized only: {', '.join(s.only)}" if s.only else ""),
            f"- Devices: {', '.join(analysis.devices) or 'none'}",
            f"- Conventions: {MACS_CONVENTION}. Bytes: {s.dtype} ({bytes_per_element(s.dtype)} bytes per element).",
        ]
        if model.uncosted:
            lines.append("- Not costed: " + ", ".join(f"{op} ×{n}" for op, n in sorted(model.uncosted.items())))
        lines += ["", "## Totals", "", *_totals(analysis), "",
                  "## What to factorize", "", *_factorize(analysis, view),
                  f"## Top {len(biggest)} convolutions by MACs", "", *_top_by(analysis, "macs", top), "",
                  *xychart(f"MACs per layer, top {len(biggest)} (millions)", [layer.conv.name for layer in biggest],
                           "MMACs", [("original", [layer.cost.macs / 1e6 for layer in biggest])]
                           + [(name, [(v.cost.macs if (v := layer.variants[name]).cost else layer.cost.macs) / 1e6
                                      for layer in biggest]) for name in s.variants]),
                  ""]
        if analysis.devices:
            lines += [f"## Top {top} convolutions by latency", "", *_top_by(analysis, "latency", top), ""]
        lines += ["## Latency per device", "", *_latency_chart(analysis), "",
                  "## Why a variant does not apply", "", *_reasons(analysis), "",
                  "## Approximation error of each variant", "", *_approx(analysis), "",
                  "## Every convolution", "", *layer_tables(analysis, View()), "",
                  "---", "",
                  f"Generated by convcost {__version__}. Reproduce with:", "", "```bash",
                  view.command or f"convcost report {model.source} -o report.md", "```"]
        return "\n".join(lines) + "\n"
