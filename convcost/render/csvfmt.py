"""`-f csv`: one row per conv with raw numbers, for spreadsheets and pandas."""

from __future__ import annotations

import csv
import io

from convcost.analysis.analyzer import shown_layers
from convcost.analysis.result import Analysis
from convcost.render import View
from convcost.render.rows import columns


def render_csv(analysis: Analysis, view: View) -> str:
    cols = columns(analysis, raw=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.csv_key for c in cols])
    for layer in shown_layers(analysis, view.sort, view.top):
        writer.writerow(["" if (v := c.value(layer)) is None else v for c in cols])
    return buffer.getvalue()
