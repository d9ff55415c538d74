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
    sizes = [_work_guess(r) for r in requests]
    return map_ordered(fn, items, jobs or default_jobs(len(items)), description, sizes)


#: The spatial variant's error of a conv costs one eigenproblem of side min(C_in·k, C_out·k)
#: (`variants.spatial_svd`), about 0.1 s on one core at side 1536 (512 channels, 3x3), as much
#: as reading and analysing some 30 MB of conv weights: `_work_guess`'s price of a side's cube.
BYTES_PER_CUBE = 30e6 / 1536**3


def _work_guess(request: Request) -> float:
    """A model's work in bytes: those of its conv weights (reading them and the variants' cheap
    spectra), plus with SVD errors on the cubes of the spatial spectra's sides. Both come from the
    stored weights' shapes where the format tells them without a load; else the file's size.
    (ResNet-18's three 512-channel 3x3 convs cost more than all of ResNeXt-50's weights, twice as
    many bytes; ConvNeXt's bytes are mostly its linear layers', which cost little.)"""
    import math
    import os

    from convcost.loaders import stored_weight_dims

    convs = [d for d in stored_weight_dims(request.model) if len(d) >= 3]
    if not convs:
        try:
            return float(os.path.getsize(request.model))
        except OSError:  # package.module:factory
            return 0.0
    work = 4.0 * sum(math.prod(d) for d in convs)
    if request.settings.approx and "spatial" in request.settings.variants:
        sides = (min(d[1] * d[2], d[0] * d[3]) for d in convs if len(d) == 4 and d[2] > 1 and d[3] > 1)
        work += BYTES_PER_CUBE * sum(float(n) ** 3 for n in sides)
    return work


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
