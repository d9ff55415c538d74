"""`Format`, the interface every output format implements, and what its methods are given.

A format is one class with one method per kind of document: `analysis` (analyze, report),
`checks` (check), `bench` (bench), `devices` (devices), `apply` (apply) and `plan` (plan);
`analyses` and `check_reports` are those of several models in one call (`analyze A B ...`,
`check A B ...`). Each method returns the whole text; the command decides where it goes. A format
supports exactly the documents whose method it overrides, so adding a document to a format is
writing that one method. A format may also stream a document: `<document>_chunks` yields the same
text in pieces (`chunks` picks it), so a large analysis is written layer by layer.

This module imports nothing heavy: the command line reads every format's name and documents at
start-up (for --help), so rich, csv and the like are imported inside the methods that use them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

if TYPE_CHECKING:
    from convcost.analysis.applied import ApplyResult
    from convcost.analysis.bench import BenchResult
    from convcost.analysis.budget import Check, LayerDiff
    from convcost.analysis.compare import ModelTotals
    from convcost.analysis.ort_bench import OrtBenchResult
    from convcost.analysis.planner import PlanResult
    from convcost.analysis.result import Analysis
    from convcost.latency.devices import DeviceProfile

#: The kinds of document a format can render; each is the name of a `Format` method.
Document = Literal["analysis", "checks", "bench", "ort_bench", "devices", "analyses", "check_reports", "apply", "plan"]
DOCUMENTS: tuple[Document, ...] = get_args(Document)


@dataclass(frozen=True)
class View:
    """What to show: layer order and how many (totals always cover the whole model)."""

    sort: str = "order"
    top: int | None = None
    command: str | None = None  # the command line that reproduces the output, for reports
    color: bool = False  # ANSI colours (only when writing to a terminal)
    width: int | None = None  # terminal width; None = wide enough for logs
    #: The report's "What to factorize": one `analysis.planner.PlanResult` per device (the plan
    #: made for that device first), and the error cap they were made with.
    plans: tuple[Any, ...] = ()
    plan_error: float | None = None


@dataclass(frozen=True)
class CheckReport:
    """What `convcost check` found, and what its outputs name."""

    model: str  # the model's name
    source: str  # the model file as given (GitHub annotations point at it)
    checks: list[Check]
    diffs: list[LayerDiff] | None  # layers changed since the baseline; None without --baseline
    rules: list[str]  # every rule checked, in order (one JUnit test case each)
    #: The analysis's and the budget's warnings (`Analysis.warnings`, `budget.warnings`).
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RenderedAnalysis:
    """One model of several (`analyze A B ...`): its text, exactly as `analysis` renders it alone,
    and its totals for the comparison. Both come back from a worker process, so both are small."""

    text: str
    totals: ModelTotals


class Format:
    """One output format. Subclasses set `name` and override the methods of the documents they render."""

    name: ClassVar[str]
    #: Whether `--format` offers this format. The report format is the `report` command's and
    #: JUnit is written with `check --junit FILE`, so neither is a `--format` choice.
    choosable: ClassVar[bool] = True
    #: Modules the methods import: imported once before the workers of several models fork.
    preload: ClassVar[tuple[str, ...]] = ()

    def analysis(self, analysis: Analysis, view: View) -> str:
        """The costs of every conv and of its variants (`analyze`, `report`)."""
        raise NotImplementedError

    def checks(self, report: CheckReport) -> str:
        """A model against its budget (`check`)."""
        raise NotImplementedError

    def bench(self, result: BenchResult) -> str:
        """Measured beside estimated latency (`bench`)."""
        raise NotImplementedError

    def ort_bench(self, result: OrtBenchResult) -> str:
        """The model run in onnxruntime beside its estimates (`bench` with an onnxruntime profile)."""
        raise NotImplementedError

    def devices(self, profiles: Sequence[DeviceProfile]) -> str:
        """The shipped device profiles (`devices`)."""
        raise NotImplementedError

    def analyses(self, parts: Sequence[RenderedAnalysis], view: View) -> str:
        """Several models' analyses, each rendered alone in this format, put together (`analyze A B ...`)."""
        raise NotImplementedError

    def check_reports(self, reports: Sequence[CheckReport]) -> str:
        """Several models against their budgets (`check A B ...`)."""
        raise NotImplementedError

    def chunks(self, document: Document, *args: Any) -> Iterable[str]:
        """The text of `document` in pieces, to be written as they come: the format's
        `<document>_chunks` method where it has one (JSON and CSV stream an analysis per layer),
        else the whole text as one piece."""
        stream = getattr(self, f"{document}_chunks", None)
        return stream(*args) if stream is not None else (getattr(self, document)(*args),)

    def apply(self, result: ApplyResult) -> str:
        """The rewritten model and its proof (`apply`)."""
        raise NotImplementedError

    def plan(self, result: PlanResult) -> str:
        """The chosen replacement per conv and the totals it reaches (`plan`)."""
        raise NotImplementedError

    def supports(self, document: str) -> bool:
        """Whether this format renders `document`: whether it overrides that method."""
        return document in DOCUMENTS and getattr(type(self), document) is not getattr(Format, document)
