"""`-f csv`: one row per conv with raw numbers, for spreadsheets and pandas.

The analysis's warnings (what the numbers may leave out) are rows too: the last column, `warning`,
is empty on a conv's row and holds the sentence on a warning's row, whose other cells are empty.
Plain rows after the convs, not `#` comments or a trailer in another shape, so every CSV reader
(csv.DictReader, pandas.read_csv, a spreadsheet) parses the file with its defaults, and a reader
that picks columns by position or by name finds the conv columns where they always were.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from convcost.render.base import Format, RenderedAnalysis, View

if TYPE_CHECKING:
    from convcost.analysis.result import Analysis

#: The last column: empty on a conv's row, the sentence on a warning's row.
WARNING = "warning"


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
        writer.writerow([c.csv_key for c in cols] + [WARNING])
        for i, layer in enumerate(shown_layers(analysis, view.sort, view.top), 1):
            writer.writerow(["" if (v := c.value(layer)) is None else v for c in cols] + [""])
            if i % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        for line in analysis.warnings:
            writer.writerow([""] * len(cols) + [line])
        yield buffer.getvalue()

    def analyses(self, parts: Sequence[RenderedAnalysis], view: View) -> str:
        from convcost.render.compare import csv_table

        return csv_table(parts, WARNING)
