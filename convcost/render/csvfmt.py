"""`-f csv`: one row per conv with raw numbers, for spreadsheets and pandas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from convcost.render.base import Format, View

if TYPE_CHECKING:
    from convcost.analysis.result import Analysis


class CsvFormat(Format):
    name = "csv"

    def analysis(self, analysis: Analysis, view: View) -> str:
        return "".join(self.analysis_chunks(analysis, view))

    def analysis_chunks(self, analysis: Analysis, view: View) -> Iterator[str]:
        """The CSV text in pieces of a few hundred rows, so a large model's is never whole in memory."""
        import csv
        import io

        from convcost.analysis.analyzer import shown_layers
        from convcost.render.rows import columns

        cols = columns(analysis, raw=True)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([c.csv_key for c in cols])
        for i, layer in enumerate(shown_layers(analysis, view.sort, view.top), 1):
            writer.writerow(["" if (v := c.value(layer)) is None else v for c in cols])
            if i % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()
