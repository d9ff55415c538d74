"""Output files are written whole or not at all: temp file in the same folder, fsync, rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from convcost.util.errors import UsageError


def write_atomic(path: str | Path, text: str | Iterable[str]) -> None:
    """Replace `path` with `text` atomically; on any failure the old file is left intact.

    `text` may be an iterable of pieces: each is written to the temp file as it comes, so a large
    document need never be whole in memory (an exception while making it leaves the old file too).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"output folder {folder} does not exist", path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise UsageError(f"cannot write output: {exc.strerror or exc}", path) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            for piece in (text,) if isinstance(text, str) else text:
                fh.write(piece)
            fh.flush()
            os.fsync(fh.fileno())
        give_mode(tmp, path)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write output: {exc.strerror or exc}", path) from None
        raise


def give_mode(new: str | Path, dest: Path) -> None:
    """Give a file about to replace `dest` the mode `dest` has, or, where `dest` does not exist,
    the mode a newly created file gets (0o666 less the umask): temp files are created 0o600."""
    if dest.exists():
        os.chmod(new, dest.stat().st_mode & 0o777)
    else:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(new, 0o666 & ~umask)
