"""Output formats: each command's result as text, through one dispatch.

`base.Format` is the interface: one method per kind of document (analysis, checks, bench,
devices). Each format is one subclass in its own module (table, jsonfmt, csvfmt, markdown,
report, github, junit) and renders the documents it overrides. `FORMATS` lists them in the
order users see; `formats_for` says which formats `--format` offers for a document; `render`
renders one or raises `FormatError`, and `render_chunks` gives the same text in pieces to write
as they come.

The helpers several formats share: rows (the per-conv columns), numbers (how a number and a
saving read), console (rich to text), checks and bench (what every format of those commands
shows alike), compare (several models in one output: the comparison of totals, the joins).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from convcost.render.base import DOCUMENTS, CheckReport, Document, Format, RenderedAnalysis, View
from convcost.render.csvfmt import CsvFormat
from convcost.render.github import GitHubFormat
from convcost.render.jsonfmt import JsonFormat
from convcost.render.junit import JUnitFormat
from convcost.render.markdown import MarkdownFormat
from convcost.render.report import ReportFormat
from convcost.render.table import TableFormat
from convcost.util.registry import Registry

if TYPE_CHECKING:
    from convcost.analysis.applied import ApplyResult
    from convcost.analysis.bench import BenchResult
    from convcost.analysis.ort_bench import OrtBenchResult
    from convcost.analysis.planner import PlanResult
    from convcost.analysis.result import Analysis
    from convcost.latency.devices import DeviceProfile

__all__ = ["DOCUMENTS", "FORMATS", "CheckReport", "Document", "Format", "FormatError", "RenderedAnalysis", "View",
           "formats_for", "render", "render_chunks"]

#: Every output format by name, in the order help texts and errors list them.
FORMATS: Registry[str, Format] = Registry("output format")
for _format in (TableFormat(), JsonFormat(), CsvFormat(), MarkdownFormat(), ReportFormat(), GitHubFormat(),
                JUnitFormat()):
    FORMATS.add(_format.name, _format)


class FormatError(ValueError):
    """A format that does not exist or does not render the document asked for (a programming error:
    the command line checks --format first)."""


def formats_for(document: str, choosable: bool = True) -> list[str]:
    """The formats that render `document`, in registry order; with `choosable`, only those `--format` offers."""
    if document not in DOCUMENTS:
        raise FormatError(f"no document {document!r}: choose one of {', '.join(DOCUMENTS)}")
    return [name for name, f in FORMATS.items() if f.supports(document) and (f.choosable or not choosable)]


def _chosen(document: Document, fmt: str) -> Format:
    chosen = FORMATS.get(fmt)
    if chosen is None or not chosen.supports(document):
        raise FormatError(f"no {document} output in format {fmt!r}: choose one of "
                          f"{', '.join(formats_for(document, choosable=False))}")
    return chosen


@overload
def render(document: Literal["analysis"], fmt: str, analysis: Analysis, view: View, /) -> str: ...
@overload
def render(document: Literal["checks"], fmt: str, report: CheckReport, /) -> str: ...
@overload
def render(document: Literal["bench"], fmt: str, result: BenchResult, /) -> str: ...
@overload
def render(document: Literal["ort_bench"], fmt: str, result: OrtBenchResult, /) -> str: ...
@overload
def render(document: Literal["devices"], fmt: str, profiles: Sequence[DeviceProfile], /) -> str: ...
@overload
def render(document: Literal["analyses"], fmt: str, parts: Sequence[RenderedAnalysis], view: View, /) -> str: ...
@overload
def render(document: Literal["check_reports"], fmt: str, reports: Sequence[CheckReport], /) -> str: ...
@overload
def render(document: Literal["apply"], fmt: str, result: ApplyResult, /) -> str: ...
@overload
def render(document: Literal["plan"], fmt: str, result: PlanResult, /) -> str: ...
def render(document: Document, fmt: str, *args: Any) -> str:
    """`document` in format `fmt`: the arguments are those of the `Format` method named `document`."""
    chosen = _chosen(document, fmt)
    method: Callable[..., str] = getattr(chosen, document)
    return method(*args)


def render_chunks(document: Document, fmt: str, *args: Any) -> Iterable[str]:
    """What `render` returns, in pieces to write as they come (see `Format.chunks`): a JSON or CSV
    analysis is never whole in memory."""
    return _chosen(document, fmt).chunks(document, *args)
