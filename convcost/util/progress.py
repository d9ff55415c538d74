"""Progress bars on stderr for slow work, shown only on a terminal (never in CI logs or pipes)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Tick = Callable[[int, int], None]

#: Set while one overall bar stands for several models (`quiet`): the bars of each model's own
#: work stay off, since two live bars garble a terminal and forked workers share their parent's.
_quiet = False


@contextmanager
def quiet() -> Iterator[None]:
    """Inside, `progress` shows nothing (processes forked inside inherit that)."""
    global _quiet
    before, _quiet = _quiet, True
    try:
        yield
    finally:
        _quiet = before


@contextmanager
def progress(description: str, enabled: bool | None = None) -> Iterator[Tick]:
    """Yield `tick(done, total)`; a transient rich bar appears only on an interactive stderr, and
    not inside `quiet`."""
    if enabled is None:
        enabled = sys.stderr.isatty() and not _quiet
    if not enabled:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True, redirect_stdout=False, redirect_stderr=False) as bar:
        task = bar.add_task(description, total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield tick
