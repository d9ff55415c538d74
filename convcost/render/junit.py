"""JUnit XML for `check --junit FILE`: CI systems show each budget rule as a test that passes or fails.

One <testsuite> per model (`check A B ...` writes one for each, in argument order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from convcost.render.base import CheckReport, Format

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET


class JUnitFormat(Format):
    name = "junit"
    choosable = False  # written with `check --junit FILE`, beside the --format output

    def checks(self, report: CheckReport) -> str:
        return _document([report])

    def check_reports(self, reports: Sequence[CheckReport]) -> str:
        return _document(reports)


def _document(reports: Sequence[CheckReport]) -> str:
    import xml.etree.ElementTree as ET

    suites = [_suite(report) for report in reports]
    root = ET.Element("testsuites", tests=str(sum(int(s.get("tests", "0")) for s in suites)),
                      failures=str(sum(int(s.get("failures", "0")) for s in suites)))
    root.extend(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite(report: CheckReport) -> ET.Element:
    """One <testcase> per rule checked (in order); each broken limit under it is a <failure>, each
    node not counted a line of the `uncounted` case's failure (or, with --allow-uncounted, of its
    <system-out>). The warnings are the suite's <system-err>, one per line."""
    import xml.etree.ElementTree as ET

    from convcost.analysis.budget import UNCOUNTED, Check, rule_of
    from convcost.render.checks import ALLOWED, violation_line

    by_rule: dict[str, list[Check]] = {rule: [] for rule in report.rules}
    for c in report.checks:
        by_rule.setdefault(rule_of(c), []).append(c)
    failures = sum(1 for cs in by_rule.values() if any(not c.ok for c in cs))
    suite = ET.Element("testsuite", name=f"convcost budget {report.model}", tests=str(len(by_rule)),
                       failures=str(failures), errors="0", skipped="0")
    for rule, cs in by_rule.items():
        case = ET.SubElement(suite, "testcase", classname=f"convcost.{report.model}", name=rule)
        bad = [c for c in cs if not c.ok]
        if bad and rule == UNCOUNTED:
            failure = ET.SubElement(case, "failure", message=f"{len(bad)} conv/matmul node(s) not counted",
                                    type="Uncounted")
            failure.text = "\n".join(violation_line(c) for c in bad)
        elif bad:
            failure = ET.SubElement(case, "failure", message=f"{len(bad)} limit(s) exceeded",
                                    type="BudgetExceeded")
            failure.text = "\n".join(violation_line(c) for c in bad)
        elif rule == UNCOUNTED:
            ET.SubElement(case, "system-out").text = "\n".join(f"{violation_line(c)} ({ALLOWED})" for c in cs)
        elif not cs:
            ET.SubElement(case, "system-out").text = "rule matched no layer"
    if report.warnings:
        ET.SubElement(suite, "system-err").text = "\n".join(f"warning: {w}" for w in report.warnings)
    return suite
