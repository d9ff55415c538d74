"""Output glue the commands share: the view (order, top, terminal), and text -> stdout or file."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable

from convcost.analysis.analyzer import SORT_KEYS
from convcost.render import View, formats_for
from convcost.util.errors import UsageError


def make_view(sort: str, top: int | None, output: str | None, command: str | None = None) -> View:
    if sort not in SORT_KEYS:
        raise UsageError(f"--sort {sort!r}: choose one of {', '.join(SORT_KEYS)}")
    tty = output is None and sys.stdout.isatty()
    return View(sort=sort, top=top, command=command, color=tty,
                width=shutil.get_terminal_size().columns if tty else None)


def choose_format(document: str, fmt: str) -> str:
    """`fmt` when --format may choose it for `document` (see `render.formats_for`); else exit 2."""
    choices = formats_for(document)
    if fmt not in choices:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(choices)}")
    return fmt


def emit(text: str | Iterable[str], output: str | None) -> None:
    """Print to stdout, or write `output` whole (atomically); `text` may come in pieces
    (`render_chunks`), each written as it is made."""
    if output is None:
        for piece in (text,) if isinstance(text, str) else text:
            sys.stdout.write(piece)
        sys.stdout.flush()
        return
    from convcost.util.outfile import write_atomic

    write_atomic(output, text)
    print(f"wrote {output}", file=sys.stderr)


def command_line() -> str:
    """The command as typed, for reports that say how to reproduce them."""
    import shlex

    return "convcost " + " ".join(shlex.quote(a) for a in sys.argv[1:])
