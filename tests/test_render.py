"""Output formats: one dispatch (the registry refuses a duplicate: test_registry), and savings that read
as words."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from convcost.render import CheckReport, FormatError, formats_for, render
from convcost.render.numbers import compared, times
from tests.conftest import ROOT, assert_one_line_error, run_cli

SEED = str(ROOT / "tests" / "data" / "seed.yaml")


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


@pytest.mark.parametrize("original,variant,words", [
    (8_700, 1_000, "8.7x fewer"),
    (1_000, 1_050, "1.05x more"),
    (4_096, 4_096, "same"),
    (4_096, 0, "costs nothing"),
    (0, 0, "same"),
    (0, 10, "up from none"),
    (10_000, 9_997, "1.0003x fewer"),  # not '1x fewer': as many digits as tell it from 1
    (200_000, 1_000, "200x fewer"),
    (10_000_000, 9_999_999, "about the same"),
])
def test_a_saving_reads_as_words(original, variant, words):
    assert compared(original, variant) == words


def test_a_ratio_cell_never_says_inf():
    assert [times(r) for r in (8.694, 0.952, 1.0, 150.2, float("inf"), None)] == \
        ["8.69x", "0.952x", "1x", "150x", "free", "n/a"]


def test_the_summary_says_fewer_more_and_same():
    """The seed's 5x5 conv on 3 channels: spatial costs more, depthwise-separable fewer, grouped applies
    to no conv (the same)."""
    out = run_cli("analyze", SEED).out
    assert "With spatial where it applies: 335.9K params (13.8x more), 21.44M MACs (15.6x more)" in out
    assert "With depthwise where it applies: 5.973K params (4.07x fewer), 204.0K MACs (6.76x fewer)" in out
    assert "With grouped where it applies: 24.33K params (same), 1.379M MACs (same)" in out
    assert not re.search(r"\((0\.\d+|1)x fewer\)|\binf\b", out)
    md = run_cli("analyze", SEED, "-f", "markdown").out
    assert "- With spatial where it applies: 335.9K params (13.8x more), 21.44M MACs (15.6x more)" in md


def test_start_up_imports_no_renderer_dependency():
    """`convcost --help` lists every format's documents yet imports neither rich nor the numeric stack."""
    probe = ("import sys\nimport convcost.cli.app\n"
             "print(sorted(m for m in ('rich', 'numpy', 'torch', 'csv', 'xml.etree.ElementTree', 'statistics') "
             "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
