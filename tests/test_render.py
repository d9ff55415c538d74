"""Output formats: one registry, one dispatch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from convcost.render import FORMATS, CheckReport, FormatError, formats_for, render
from convcost.render.csvfmt import CsvFormat
from convcost.render.jsonfmt import JsonFormat
from convcost.util.registry import DuplicateRegistration
from tests.conftest import ROOT, assert_one_line_error, run_cli

SEED = str(ROOT / "tests" / "data" / "seed.yaml")


def test_a_format_name_registers_once():
    before = list(FORMATS)
    with pytest.raises(DuplicateRegistration, match="'json' is registered twice"):
        FORMATS.add("json", CsvFormat())
    assert list(FORMATS) == before and isinstance(FORMATS["json"], JsonFormat)


def test_each_document_lists_the_formats_that_override_it():
    assert formats_for("analysis") == ["table", "json", "csv", "markdown"]
    assert formats_for("checks") == ["table", "json", "github"]
    assert formats_for("bench") == formats_for("devices") == ["table", "json"]
    # report and junit render through their own command and option, not --format
    assert formats_for("analysis", choosable=False) == ["table", "json", "csv", "markdown", "report"]
    assert formats_for("checks", choosable=False) == ["table", "json", "github", "junit"]
    with pytest.raises(FormatError, match="no document 'summary'"):
        formats_for("summary")


def test_render_refuses_a_format_without_the_document():
    report = CheckReport("m", "m.onnx", [], None, [])
    assert render("checks", "json", report).startswith('{\n  "model": "m"')
    with pytest.raises(FormatError, match="no checks output in format 'csv': choose one of table, json, github, junit"):
        render("checks", "csv", report)
    with pytest.raises(FormatError, match="format 'xml'"):
        render("devices", "xml", [])


@pytest.mark.parametrize("args,choices", [
    (["analyze", SEED, "-f", "junit"], "table, json, csv, markdown"),
    (["check", SEED, "-b", "budget.yaml", "-f", "csv"], "table, json, github"),
    (["bench", SEED, "-f", "csv"], "table, json"),
    (["devices", "-f", "markdown"], "table, json"),
])
def test_every_command_refuses_a_format_in_the_same_words(args, choices):
    fmt = args[-1]
    assert_one_line_error(run_cli(*args), f"--format {fmt!r}: choose one of {choices}")


def test_start_up_imports_no_renderer_dependency():
    """`convcost --help` lists every format's documents yet imports neither rich nor the numeric stack."""
    probe = ("import sys\nimport convcost.cli.app\n"
             "print(sorted(m for m in ('rich', 'numpy', 'torch', 'csv', 'xml.etree.ElementTree', 'statistics') "
             "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
