"""`-f markdown`: a GitHub-flavoured table that pastes into an issue or pull request."""

from __future__ import annotations

from convcost.analysis.analyzer import shown_layers
from convcost.analysis.result import Analysis
from convcost.render import View
from convcost.render.rows import Column, columns, summary_lines, totals_row


def escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def table_lines(header: list[str], rows: list[list[str]], numeric: list[bool]) -> list[str]:
    """A GFM table; every row has as many cells as the header."""
    lines = ["| " + " | ".join(escape(h) for h in header) + " |",
             "|" + "|".join("---:" if n else ":---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return lines


def layer_table(analysis: Analysis, view: View, cols: list[Column] | None = None) -> list[str]:
    cols = cols or columns(analysis)
    rows = [[("n/a" if (v := c.value(layer)) is None else c.fmt(v)) for c in cols]
            for layer in shown_layers(analysis, view.sort, view.top)]
    rows.append([f"**{cell}**" if cell else "" for cell in totals_row(analysis, cols)])
    return table_lines([c.header for c in cols], rows, [c.numeric for c in cols])


def render_markdown(analysis: Analysis, view: View) -> str:
    lines = [f"### convcost: `{analysis.model.name}`", ""]
    lines += layer_table(analysis, view)
    lines.append("")
    lines += [f"- {line}" for line in summary_lines(analysis)]
    return "\n".join(lines) + "\n"
