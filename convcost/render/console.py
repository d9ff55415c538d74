"""Rich renderables to plain text: the one Console setup every table renderer shares."""

from __future__ import annotations

import io
from collections.abc import Iterable

from rich.console import Console, RenderableType


def to_text(renderables: Iterable[RenderableType], color: bool = False, width: int | None = None) -> str:
    """Print `renderables` in order to a string. No terminal detection (output may go to a file or
    a CI log), no automatic highlighting of numbers; colour only when asked for (`--color`, a tty)."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, no_color=not color, width=width or 250, highlight=False)
    for item in renderables:
        console.print(item)
    return buffer.getvalue()
