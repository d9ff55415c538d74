"""Several models in one call (`analyze A B ...`, `check A B ...`): the same options for each, the
work spread over worker processes (`util.parallel`), the output in argument order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from convcost.analysis.pipeline import Request
    from convcost.cli.options import Options
    from convcost.render import View

T = TypeVar("T")
R = TypeVar("R")


def run_all(fn: Callable[[T], R], items: Sequence[T], requests: Sequence[Request], fmt: str, jobs: int | None,
            description: str) -> list[R]:
    """`fn` over `items` (one per request), in `jobs` forked workers (default: `default_jobs`), after
    importing what loading, analyzing and rendering them in `fmt` needs, so that workers inherit it."""
    import importlib

    from convcost.analysis.pipeline import prepare
    from convcost.render import FORMATS
    from convcost.util.parallel import default_jobs, map_ordered

    prepare(requests)
    for module in FORMATS[fmt].preload:
        importlib.import_module(module)
    sizes = [_file_size(r.model) for r in requests]
    return map_ordered(fn, items, jobs or default_jobs(len(items)), description, sizes)


def _file_size(model: str) -> float:
    """A model's work, guessed from its file's size (weights dominate the SVD errors' cost)."""
    import os

    try:
        return float(os.path.getsize(model))
    except OSError:  # package.module:factory
        return 0.0


def analyze_models(models: Sequence[str], opts: Options, fmt: str, view: View, jobs: int | None) -> str:
    """Every model's analysis rendered in `fmt` exactly as a call with it alone renders it, then put
    together with the comparison of their totals (`Format.analyses`)."""
    from convcost.analysis.compare import model_totals
    from convcost.analysis.pipeline import run
    from convcost.render import RenderedAnalysis, render

    first = opts.request(models[0])  # options are checked once, before any model is read
    requests = [replace(first, model=m) for m in models]

    def one(request: Request) -> RenderedAnalysis:
        analysis = run(request)
        return RenderedAnalysis(render("analysis", fmt, analysis, view), model_totals(analysis))

    parts = run_all(one, requests, requests, fmt, jobs, f"analyzing {len(models)} models")
    return render("analyses", fmt, parts, view)
