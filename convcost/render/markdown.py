"""`-f markdown`: a GitHub-flavoured table that pastes into an issue or pull request.

`table_lines` also builds the tables of the report and of the GitHub step summary; `layer_table`
the report's per-conv tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from convcost.render.base import Format, RenderedAnalysis, View

if TYPE_CHECKING:
    from convcost.analysis.result import Analysis


def escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def table_lines(header: list[str], rows: list[list[str]], numeric: list[bool]) -> list[str]:
    """A GFM table; every row has as many cells as the header."""
    lines = ["| " + " | ".join(escape(h) for h in header) + " |",
             "|" + "|".join("---:" if n else ":---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return lines


def layer_table(analysis: Analysis, view: View) -> list[str]:
    """One row per conv (sorted and cut as `view` says) and the totals row in bold."""
    from convcost.analysis.analyzer import shown_layers
    from convcost.render.rows import columns, totals_row

    cols = columns(analysis)
    rows = [[("n/a" if (v := c.value(layer)) is None else c.fmt(v)) for c in cols]
            for layer in shown_layers(analysis, view.sort, view.top)]
    rows.append([f"**{cell}**" if cell else "" for cell in totals_row(analysis, cols)])
    return table_lines([c.header for c in cols], rows, [c.numeric for c in cols])


class MarkdownFormat(Format):
    name = "markdown"

    def analysis(self, analysis: Analysis, view: View) -> str:
        from convcost.render.rows import summary_lines

        lines = [f"### convcost: `{analysis.model.name}`", ""]
        lines += layer_table(analysis, view)
        lines.append("")
        lines += [f"- {line}" for line in summary_lines(analysis)]
        return "\n".join(lines) + "\n"

    def analyses(self, parts: Sequence[RenderedAnalysis], view: View) -> str:
        """Each model's section, then a table comparing their totals."""
        from convcost.render.compare import comparison, comparison_title

        header, rows, numeric = comparison([p.totals for p in parts])
        lines = [f"### {comparison_title([p.totals for p in parts])}", "", *table_lines(header, rows, numeric)]
        return "\n".join(p.text for p in parts) + "\n" + "\n".join(lines) + "\n"
