"""Several models in one output (`analyze A B ...`, `check A B ...`): the comparison of their
totals, and how each format joins the per-model texts that `analysis` and `checks` render.

Each model's text is exactly what a call with that model alone prints; these helpers only put
them together (a JSON list, one CSV table with a `model` column first) and add the comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from convcost.render.numbers import ms, si, times

if TYPE_CHECKING:
    from convcost.analysis.compare import ModelTotals
    from convcost.render.base import CheckReport, RenderedAnalysis

#: The first column of `analyze A B ... -f csv`: the model's name (JSON `model.name`).
MODEL = "model"


def comparison(models: Sequence[ModelTotals]) -> tuple[list[str], list[list[str]], list[bool]]:
    """The comparison table of totals: (header, one row per model in argument order, which
    columns are numbers). Latency per device and the variants' savings where every model was
    analyzed with them (the same options apply to each, so that is all of them)."""
    devices = list(dict.fromkeys(d for m in models for d in m.devices))
    variants = list(dict.fromkeys(v for m in models for v in m.variant_totals))
    header = ["model", "format", "convs", "params", "MACs", "FLOPs", "conv share",
              *(f"{d} ms" for d in devices)]
    for v in variants:
        header += [f"{v} MACs x", f"{v} params x"]
    rows = []
    for m in models:
        t = m.totals
        share = m.conv_share
        row = [m.name, m.format, str(m.conv_layers), si(t.params), si(t.macs), si(2 * t.macs),
               "n/a" if share is None else f"{share:.1%}", *(ms(t.latency.get(d)) for d in devices)]
        for v in variants:
            if v in m.variant_totals:
                mac_ratio, param_ratio = m.variant_ratios(v)
                row += [times(mac_ratio), times(param_ratio)]
            else:
                row += ["n/a", "n/a"]
        rows.append(row)
    return header, rows, [False, False, *([True] * (len(header) - 2))]


def comparison_title(models: Sequence[ModelTotals]) -> str:
    ratios = any(m.variant_totals for m in models)
    return f"convcost: {len(models)} models compared (totals" + (
        "; variant ratios are original / with the variant where it applies)" if ratios else ")")


def json_list(texts: Sequence[str]) -> str:
    """Documents that `json.dumps(doc, indent=2)` wrote, as the list `json.dumps(docs, indent=2)`
    would write: the same bytes, without parsing them again (indented JSON has a newline only
    between tokens, never inside a string)."""
    if not texts:
        return "[]\n"
    items = ",\n".join("  " + text.rstrip("\n").replace("\n", "\n  ") for text in texts)
    return "[\n" + items + "\n]\n"


def csv_table(parts: Sequence[RenderedAnalysis], warning: str) -> str:
    """One CSV table of every model's rows, `model` first. Columns are the union of the models'
    in first-seen order (a column only some models have, say an SVD error where only some carry
    weights, is empty for the others); the `warning` column stays last, as in a one-model CSV."""
    import csv
    import io

    tables = [(p.totals.name, list(csv.reader(io.StringIO(p.text)))) for p in parts]
    keys: dict[str, None] = {}
    for _, rows in tables:
        keys.update((k, None) for k in rows[0] if k != warning)
    header = [MODEL, *keys, warning]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for name, rows in tables:
        for row in rows[1:]:
            cells = dict(zip(rows[0], row, strict=False))
            writer.writerow([name, *(cells.get(k, "") for k in header[1:])])
    return buffer.getvalue()


def failed_models(reports: Sequence[CheckReport]) -> list[CheckReport]:
    return [r for r in reports if not all(c.ok for c in r.checks)]


def check_tally(reports: Sequence[CheckReport]) -> str:
    """The line after every model's checks: how many models passed, and which failed."""
    failed = failed_models(reports)
    line = f"convcost check: {len(reports)} models, {len(reports) - len(failed)} within budget, {len(failed)} failed"
    return line + (": " + ", ".join(r.source for r in failed) if failed else "")
