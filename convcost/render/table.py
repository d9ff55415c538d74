"""`-f table`, the default: rich tables for a terminal or a CI log, each followed by its summary lines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from convcost.render.base import CheckReport, Format, RenderedAnalysis, View

if TYPE_CHECKING:
    from convcost.analysis.applied import ApplyResult
    from convcost.analysis.bench import BenchResult
    from convcost.analysis.ort_bench import OrtBenchResult
    from convcost.analysis.planner import PlanResult
    from convcost.analysis.result import Analysis
    from convcost.latency.devices import DeviceProfile


def _runtime(profile: DeviceProfile) -> str:
    """`onnxruntime 1.32.0, 1 thread` from a profile's `runtime:`, or `-` where it names none."""
    rt = profile.runtime or {}
    if not rt:
        return "-"
    threads = rt.get("threads")
    return " ".join(str(rt[k]) for k in ("name", "version") if rt.get(k)) + \
        (f", {threads} thread{'s' if threads > 1 else ''}" if threads else "")


class TableFormat(Format):
    name = "table"
    preload = ("rich.console", "rich.table", "rich.text")

    def analysis(self, analysis: Analysis, view: View) -> str:
        """One row per conv (sorted and cut as `view` says), the totals row, then the summary lines."""
        from rich.table import Table
        from rich.text import Text

        from convcost.analysis.analyzer import shown_layers
        from convcost.render.console import to_text
        from convcost.render.rows import columns, summary_lines, totals_row

        cols = columns(analysis)
        layers = shown_layers(analysis, view.sort, view.top)
        title = f"convcost: {analysis.model.name}"
        if view.top and view.top < len(analysis.layers):
            title += f" (top {view.top} of {len(analysis.layers)} convs by {view.sort})"
        table = Table(title=title, show_footer=False, header_style="bold", title_justify="left")
        for c in cols:
            table.add_column(c.header, justify="right" if c.numeric else "left", no_wrap=c.header == "layer")
        for layer in layers:
            cells = []
            for c in cols:
                value = c.value(layer)
                cells.append(Text("n/a", style="dim") if value is None else Text(c.fmt(value)))
            table.add_row(*cells)
        table.add_section()
        table.add_row(*(Text(cell, style="bold") for cell in totals_row(analysis, cols)))
        notes = [Text(line, style="dim" if line.startswith("dtype") else "") for line in summary_lines(analysis)]
        return to_text([table, *notes], view.color, view.width)

    def analyses(self, parts: Sequence[RenderedAnalysis], view: View) -> str:
        """Each model's table and summary lines, then one table comparing their totals."""
        from rich.table import Table
        from rich.text import Text

        from convcost.render.compare import comparison, comparison_title
        from convcost.render.console import to_text

        header, rows, numeric = comparison([p.totals for p in parts])
        table = Table(title=comparison_title([p.totals for p in parts]), header_style="bold", title_justify="left")
        for h, number in zip(header, numeric, strict=True):
            table.add_column(h, justify="right" if number else "left", no_wrap=h == "model")
        for row in rows:
            table.add_row(*map(Text, row))
        return "\n".join(p.text for p in parts) + "\n" + to_text([table], view.color, view.width)

    def check_reports(self, reports: Sequence[CheckReport]) -> str:
        """Each model's checks as `checks` prints them, then which models failed."""
        from convcost.render.compare import check_tally

        return "\n".join(self.checks(r) for r in reports) + "\n" + check_tally(reports) + "\n"

    def checks(self, report: CheckReport) -> str:
        """Every check, the layers changed since the baseline, the tally, one line per broken limit and
        per uncounted node, and the warnings (as `analyze` prints them)."""
        from rich.console import RenderableType
        from rich.table import Table
        from rich.text import Text

        from convcost.render.checks import (
            ALLOWED,
            CHECK_COLUMNS,
            DIFF_COLUMNS,
            allowed,
            check_rows,
            diff_rows,
            tally,
            violation_line,
        )
        from convcost.render.console import to_text

        table = Table(title=Text(f"convcost check: {report.model}"), title_justify="left")
        for col in CHECK_COLUMNS:
            table.add_column(col, justify="right" if col in ("value", "limit") else "left")
        for row in check_rows(report.checks, "[bold red]FAIL[/]"):
            table.add_row(*map(Text, row[:-1]), row[-1])  # names and reasons are data, not rich markup
        out: list[RenderableType] = [table]
        if report.diffs is not None:
            if report.diffs:
                diff = Table(title="layers changed since the baseline", title_justify="left")
                for col in DIFF_COLUMNS:
                    diff.add_column(col)
                for row in diff_rows(report.diffs):
                    diff.add_row(*map(Text, row))
                out.append(diff)
            else:
                out.append("no layer changed since the baseline")
        out.append(tally(report.checks))
        out += [Text(f"FAIL {violation_line(c)}") for c in report.checks if not c.ok]
        out += [Text(f"{ALLOWED}: {violation_line(c)}") for c in allowed(report.checks)]
        out += [Text(f"warning: {w}") for w in report.warnings]
        return to_text(out, width=200)

    def ort_bench(self, result: OrtBenchResult) -> str:
        from convcost.render.ort_bench import table

        return table(result)

    def bench(self, result: BenchResult) -> str:
        """Per layer: measured and estimated time, the error, and each variant's times and speed-up sign."""
        from rich.table import Table
        from rich.text import Text

        from convcost.render.bench import pct, summary_lines, variant_names
        from convcost.render.console import to_text
        from convcost.render.numbers import ms, si

        names = variant_names(result)
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
                     Text(ms(layer.estimated_ms)),
                     Text(pct(layer.error), style="red" if abs(layer.error) > 0.25 else ""), Text(layer.bound)]
            for name in names:
                v = layer.variants.get(name)
                if v is None:
                    cells += [Text("n/a", style="dim")] * 3
                    continue
                ok = layer.sign_right(name)
                cells += [Text(ms(v.measured_ms)), Text(ms(v.estimated_ms)),
                          Text("ok" if ok else "WRONG", style="" if ok else "red")]
            table.add_row(*cells)
        return to_text([table, *(Text(line) for line in summary_lines(result))])

    def devices(self, profiles: Sequence[DeviceProfile]) -> str:
        """One row per profile: peak, bandwidth, efficiency per op kind, overhead, how many figures are estimates."""
        from rich.table import Table

        from convcost.latency.devices import REQUIRED_KINDS
        from convcost.render.console import to_text

        table = Table(title="convcost device profiles", title_justify="left", header_style="bold")
        for header in ("name", "description", "peak GFLOP/s (GOP/s int8)", "GB/s"):
            table.add_column(header, justify="right" if header == "GB/s" else "left")
        for kind in REQUIRED_KINDS:
            table.add_column(f"eff {kind}", justify="right")
        table.add_column("overhead us", justify="right")
        table.add_column("runtime")
        table.add_column("estimated figures", justify="right")
        for p in profiles:
            roof = p.roofline
            peaks = ", ".join(f"{d} {v:g}" for d, v in roof.peak_gflops.items())
            figures = list(p.figures())
            estimated = sum(1 for _, _, source in figures if source.lower().startswith("estimate"))
            overheads = sorted(set(roof.overhead_us.values()))
            table.add_row(p.name, p.description, peaks, f"{roof.bandwidth_gbs:g}",
                          *(f"{roof.efficiency[k]:.2g}" for k in REQUIRED_KINDS),
                          "/".join(f"{v:.3g}" for v in overheads), _runtime(p), f"{estimated}/{len(figures)}")
        return to_text([table]) + (
            "Sources: convcost devices -f json. 'estimated figures' counts figures no datasheet or paper "
            "publishes; `convcost calibrate` on the device replaces them with measured ones.\n")

    def apply(self, result: ApplyResult) -> str:
        """Each replaced conv with its errors, then the proof (see `render.applied`)."""
        from convcost.render.applied import apply_table

        return apply_table(result)

    def plan(self, result: PlanResult) -> str:
        """The chosen layers with their savings and errors, then the totals reached (`render.planned`)."""
        from convcost.render.planned import plan_table

        return plan_table(result)
