"""Output files are written whole or not at all (issue 9)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from convcost.util.errors import UsageError
from convcost.util.outfile import write_atomic
from tests.conftest import ROOT, invoke

SEED = str(ROOT / "tests" / "data" / "seed.yaml")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_kill_9_mid_write_leaves_the_old_file_intact(tmp_path):
    out = tmp_path / "report.json"
    out.write_text('{"old": true}')
    # The child writes the whole temp file, then blocks inside fsync until it is killed.
    child = textwrap.dedent(f"""
        import os, sys, time
        from convcost.util import outfile
        def stuck(fd):
            print("writing", flush=True)
            time.sleep(60)
        outfile.os.fsync = stuck
        outfile.write_atomic({str(out)!r}, "x" * 10_000_000)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert out.read_text() == '{"old": true}'
    # Only a hidden temp file may remain (a killed process cannot clean up); never the target.
    assert all(name == "report.json" or name.startswith(".report.json.") for name in leftovers(tmp_path))


def test_full_disk_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    out = tmp_path / "out.csv"
    out.write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("convcost.util.outfile.os.fsync", full)
    with pytest.raises(UsageError, match="No space left"):
        write_atomic(out, "new")
    assert out.read_text() == "old"
    assert leftovers(tmp_path) == ["out.csv"]


def test_failing_renderer_writes_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out.json"
    out.write_text("old")

    def broken(self, analysis, view):  # fails after its first piece: the output is written as it comes
        yield "{"
        raise RuntimeError("renderer bug")

    monkeypatch.setattr("convcost.render.jsonfmt.JsonFormat.analysis_chunks", broken)
    result = invoke("analyze", SEED, "-f", "json", "-o", str(out))
    assert result.code == 3 and "internal error" in result.err and "Traceback" not in result.err
    assert out.read_text() == "old" and leftovers(tmp_path) == ["out.json"]


def test_concurrent_writers_leave_one_complete_file(tmp_path):
    out = tmp_path / "same.json"
    procs = [
        subprocess.Popen([sys.executable, "-m", "convcost", "analyze", SEED, "-f", "json", "-o", str(out),
                          "--top", str(top)], cwd=ROOT, stderr=subprocess.PIPE)
        for top in (1, 2, 1, 2)
    ]
    for p in procs:
        assert p.wait(timeout=60) == 0
    data = json.loads(out.read_text())  # complete, parseable: one writer's whole output
    assert len(data["layers"]) in (1, 2)
    assert leftovers(tmp_path) == ["same.json"]


def test_permissions_of_existing_file_are_kept(tmp_path):
    out = tmp_path / "keep.md"
    out.write_text("old")
    os.chmod(out, 0o640)
    write_atomic(out, "new")
    assert out.read_text() == "new" and (out.stat().st_mode & 0o777) == 0o640
