"""Output files that come in a set (a model and its external data): all written, or none.

The set is written into a hidden temporary folder beside the destination, checked there, and only
then renamed into place, the main file last: a failed run leaves no file and never clobbers an
existing one (the same rule as `outfile.write_atomic`, for several files).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from convcost.util.errors import UsageError
from convcost.util.outfile import give_mode


class Staging:
    """A temporary folder beside `path`; `commit` moves its files next to `path`, `path`'s own last."""

    def __init__(self, path: str | Path) -> None:
        self.target = Path(path)
        folder = self.target.parent if str(self.target.parent) else Path(".")
        if not folder.is_dir():
            raise UsageError(f"output folder {folder} does not exist", path)
        if self.target.is_dir():
            raise UsageError("is a directory", path)
        self.folder = folder
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", dir=folder))
        except OSError as exc:
            raise UsageError(f"cannot write output: {exc.strerror or exc}", path) from None

    @property
    def main(self) -> Path:
        """Where the main file is written before it is committed."""
        return self.dir / self.target.name

    def commit(self) -> list[Path]:
        """Rename every staged file into the destination folder (the main file last); their paths."""
        moved: list[Path] = []
        files = sorted(p for p in self.dir.iterdir() if p.is_file() and p.name != self.target.name)
        try:
            for f in [*files, self.main]:
                dest = self.folder / f.name
                give_mode(f, dest)
                os.replace(f, dest)
                moved.append(dest)
        except OSError as exc:
            raise UsageError(f"cannot write output: {exc.strerror or exc}", self.target) from None
        return moved

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def staging(path: str | Path) -> Iterator[Staging]:
    """A `Staging` for `path` whose temporary folder is removed however the block ends."""
    stage = Staging(path)
    try:
        yield stage
    finally:
        stage.close()
