"""`-f markdown`: a GitHub-flavoured table that pastes into an issue or pull request.

`table_lines` also builds the tables of the report and of the GitHub step summary; `layer_tables`
the report's per-conv tables (one for the convs, one per variant).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def layer_tables(analysis: Analysis, view: View, heading: str = "####") -> list[str]:
    """`layer_table` cut to a width that reads on a GitHub page: one table of the convs themselves
    (shape, params, MACs, latency per device), then one per variant (its MACs, saving, errors,
    latency), each with the layer names and the totals row."""
    from convcost.analysis.analyzer import shown_layers
    from convcost.render.rows import columns, totals_row

    cols = columns(analysis)
    shown = shown_layers(analysis, view.sort, view.top)
    totals = dict(zip((c.header for c in cols), totals_row(analysis, cols), strict=True))

    def table(picked: list, label: Callable[[str], str]) -> list[str]:
        rows = [[("n/a" if (v := c.value(layer)) is None else c.fmt(v)) for c in picked] for layer in shown]
        rows.append([f"**{totals[c.header]}**" if totals[c.header] else "" for c in picked])
        return table_lines([label(c.header) for c in picked], rows, [c.numeric for c in picked])

    variants = list(analysis.settings.variants)
    own = [c for c in cols if not any(c.header.startswith(f"{v} ") for v in variants)]
    lines = table(own, str)
    for name in variants:
        picked = [cols[0], *(c for c in cols if c.header.startswith(f"{name} "))]
        lines += ["", f"{heading} {name}", "", *table(picked, _label(name))]
    return lines


def _label(variant: str) -> Callable[[str], str]:
    return lambda header: header if header == "layer" else _short(header.removeprefix(f"{variant} "))


def _short(header: str) -> str:
    """A variant column's header inside that variant's own table."""
    return {"x": "MACs saved", "err": "weight error", "err perm": "error permuted",
            "err >=": "error lower bound"}.get(header, header)


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
