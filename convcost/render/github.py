"""`check -f github`: workflow commands that annotate the pull request, and the job's step summary.

GitHub reads `::error` and `::warning` lines from a step's output; the step summary is Markdown
that the command appends to the file GITHUB_STEP_SUMMARY names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from convcost.render.base import CheckReport, Format

if TYPE_CHECKING:
    from convcost.analysis.budget import Check


def _escape_data(text: str) -> str:
    """GitHub workflow-command escaping for a message: a newline would end the command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_annotation(text: str) -> str:
    """GitHub workflow-command escaping for a property (file=, title=): also ':' and ','."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


class GitHubFormat(Format):
    name = "github"

    def checks(self, report: CheckReport) -> str:
        """An error per broken limit and per uncounted node (on the model file), a warning per node
        `--allow-uncounted` passed, per layer added or grown and per analysis warning, the tally."""
        from convcost.render.checks import ALLOWED, allowed, tally, violation_line

        file = f"file={_escape_annotation(report.source)},"
        lines = []
        for c in report.checks:
            if not c.ok:
                lines.append(f"::error {file}title={_escape_annotation(_title(c))}::{_escape_data(violation_line(c))}")
        for c in allowed(report.checks):
            lines.append(f"::warning {file}title={_escape_annotation(_title(c))}::"
                         f"{_escape_data(f'{violation_line(c)} ({ALLOWED})')}")
        for d in report.diffs or []:
            if d.change != "changed" or d.delta > 0:
                lines.append(f"::warning title={_escape_annotation(f'convcost layer {d.change}')}::"
                             f"{_escape_data(f'{d.name}: MACs {d.delta:+,} since the baseline')}")
        for w in report.warnings:
            lines.append(f"::warning {file}title=convcost::{_escape_data(w)}")
        lines.append(f"convcost check {report.model}: {tally(report.checks)}")
        return "\n".join(lines) + "\n"

    def check_reports(self, reports: Sequence[CheckReport]) -> str:
        """Each model's annotations (on its own file) and tally, then which models failed."""
        from convcost.render.compare import check_tally

        return "".join(self.checks(r) for r in reports) + check_tally(reports) + "\n"

    def step_summaries(self, reports: Sequence[CheckReport]) -> str:
        """The job summary of several models: which failed, then each model's summary."""
        from convcost.render.compare import check_tally

        mark = "✅" if all(c.ok for r in reports for c in r.checks) else "❌"
        return f"## {mark} {check_tally(reports)}\n\n" + "\n".join(self.step_summary(r) for r in reports)

    def step_summary(self, report: CheckReport) -> str:
        """The job summary in Markdown: the tally, every check, the nodes not counted, the layers
        changed since the baseline and the warnings."""
        from convcost.analysis.budget import UNCOUNTED
        from convcost.render.checks import ALLOWED, CHECK_COLUMNS, DIFF_COLUMNS, check_rows, diff_rows, tally
        from convcost.render.markdown import escape, table_lines

        mark = "✅" if all(c.ok for c in report.checks) else "❌"
        lines = [f"### convcost check: `{report.model}` — {mark} {tally(report.checks)}", "",
                 *table_lines(list(CHECK_COLUMNS), check_rows(report.checks, "**FAIL**"),
                              [False, False, False, True, True, False])]
        uncounted = [c for c in report.checks if c.rule == UNCOUNTED]
        if uncounted:
            head = "Not counted" + (f" ({ALLOWED})" if all(c.ok for c in uncounted) else "")
            lines += ["", f"#### {head}", "",
                      *(f"- {escape(c.metric)} `{c.scope}`: {escape(c.why or '')}" for c in uncounted)]
        if report.diffs:
            lines += ["", "#### Layers changed since the baseline", "",
                      *table_lines(list(DIFF_COLUMNS), diff_rows(report.diffs), [False, False, True, True, True])]
        if report.warnings:
            lines += ["", "#### Warnings", "", *(f"- {escape(w)}" for w in report.warnings)]
        return "\n".join(lines) + "\n"


def _title(c: Check) -> str:
    """An annotation's title: the rule and what it limits."""
    from convcost.analysis.budget import UNCOUNTED

    return f"convcost {UNCOUNTED}: {c.metric}" if c.rule == UNCOUNTED else f"convcost budget: {c.metric}"
