"""Shared fixtures: run the CLI in-process or as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "configs" / "models"


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    """Run `python -m convcost ARGS` in a subprocess, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "convcost", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: Result, *fragments: str, code: int = 2) -> None:
    """Exit `code`, exactly one line on stderr starting 'convcost: error:', no traceback."""
    assert result.code == code, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("convcost: error: "), lines[0]
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


#: Fuzz cases per test: CI runs the default; benchmarks/fuzz.py sets CONVCOST_FUZZ_SCALE for long runs.
FUZZ_SCALE = float(os.environ.get("CONVCOST_FUZZ_SCALE", "1"))


def fuzz_examples(n: int) -> int:
    return max(1, int(n * FUZZ_SCALE))


@pytest.fixture
def cli():
    return run_cli


def invoke(*args: str) -> Result:
    """Run the CLI in this process (fast, for fuzzing): exit code, stdout, stderr."""
    import contextlib
    import io

    from convcost.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())


def assert_clean_outcome(result: Result) -> None:
    """The fuzzing property: success, or exit 2 with exactly one 'convcost: error:' line."""
    if result.code == 0:
        assert "Traceback" not in result.err, result.err
        return
    assert_one_line_error(result)
