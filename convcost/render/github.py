"""`check -f github`: workflow commands that annotate the pull request, and the job's step summary.

GitHub reads `::error` and `::warning` lines from a step's output; the step summary is Markdown
that the command appends to the file GITHUB_STEP_SUMMARY names.
"""

from __future__ import annotations

from convcost.render.base import CheckReport, Format


def _escape_data(text: str) -> str:
    """GitHub workflow-command escaping for a message: a newline would end the command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_annotation(text: str) -> str:
    """GitHub workflow-command escaping for a property (file=, title=): also ':' and ','."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


class GitHubFormat(Format):
    name = "github"

    def checks(self, report: CheckReport) -> str:
        """An error per broken limit (on the model file), a warning per layer added or grown, the tally."""
        from convcost.render.checks import tally, violation_line

        lines = []
        for c in report.checks:
            if not c.ok:
                title = f"convcost budget: {c.metric}"
                lines.append(f"::error file={_escape_annotation(report.source)},title={_escape_annotation(title)}::"
                             f"{_escape_data(violation_line(c))}")
        for d in report.diffs or []:
            if d.change != "changed" or d.delta > 0:
                lines.append(f"::warning title={_escape_annotation(f'convcost layer {d.change}')}::"
                             f"{_escape_data(f'{d.name}: MACs {d.delta:+,} since the baseline')}")
        lines.append(f"convcost check {report.model}: {tally(report.checks)}")
        return "\n".join(lines) + "\n"

    def step_summary(self, report: CheckReport) -> str:
        """The job summary in Markdown: the tally, every check, and the layers changed since the baseline."""
        from convcost.render.checks import CHECK_COLUMNS, DIFF_COLUMNS, check_rows, diff_rows, tally
        from convcost.render.markdown import table_lines

        mark = "✅" if all(c.ok for c in report.checks) else "❌"
        lines = [f"### convcost check: `{report.model}` — {mark} {tally(report.checks)}", "",
                 *table_lines(list(CHECK_COLUMNS), check_rows(report.checks, "**FAIL**"),
                              [False, False, False, True, True, False])]
        if report.diffs:
            lines += ["", "#### Layers changed since the baseline", "",
                      *table_lines(list(DIFF_COLUMNS), diff_rows(report.diffs), [False, False, True, True, True])]
        return "\n".join(lines) + "\n"
