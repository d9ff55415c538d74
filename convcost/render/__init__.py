"""Renderers turn an `Analysis` into text. Registered by format name, imported lazily."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from convcost.analysis.result import Analysis


@dataclass(frozen=True)
class View:
    """What to show: layer order and how many (totals always cover the whole model)."""

    sort: str = "order"
    top: int | None = None
    command: str | None = None  # the command line that reproduces the output, for reports
    color: bool = False  # ANSI colours (only when writing to a terminal)
    width: int | None = None  # terminal width; None = wide enough for logs


Renderer = Callable[[Analysis, View], str]

#: format name -> "module:function"
RENDERERS: dict[str, str] = {
    "table": "convcost.render.table:render_table",
    "json": "convcost.render.jsonfmt:render_json",
    "csv": "convcost.render.csvfmt:render_csv",
    "markdown": "convcost.render.markdown:render_markdown",
    "report": "convcost.render.report:render_report",
}


def renderer(fmt: str) -> Renderer:
    module, func = RENDERERS[fmt].split(":")
    fn: Renderer = getattr(importlib.import_module(module), func)
    return fn
