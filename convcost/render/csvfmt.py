"""`-f csv`: one row per conv with raw numbers, for spreadsheets and pandas."""

from __future__ import annotations

from typing import TYPE_CHECKING

from convcost.render.base import Format, View

if TYPE_CHECKING:
    from convcost.analysis.result import Analysis


class CsvFormat(Format):
    name = "csv"

    def analysis(self, analysis: Analysis, view: View) -> str:
        import csv
        import io

        from convcost.analysis.analyzer import shown_layers
        from convcost.render.rows import columns

        cols = columns(analysis, raw=True)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([c.csv_key for c in cols])
        for layer in shown_layers(analysis, view.sort, view.top):
            writer.writerow(["" if (v := c.value(layer)) is None else v for c in cols])
        return buffer.getvalue()
