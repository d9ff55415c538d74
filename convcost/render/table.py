"""The default terminal output: a rich table, one row per conv, then model totals."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from convcost.analysis.analyzer import shown_layers
from convcost.analysis.result import Analysis
from convcost.render import View
from convcost.render.console import to_text
from convcost.render.rows import columns, summary_lines, totals_row


def render_table(analysis: Analysis, view: View) -> str:
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
