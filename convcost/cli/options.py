"""Options shared by the analysis commands (analyze, report, check, bench), declared once."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from convcost.analysis.analyzer import SORT_KEYS

if TYPE_CHECKING:
    from convcost.analysis.pipeline import Request

ModelArg = Annotated[
    str,
    typer.Argument(metavar="MODEL", help="Model: .onnx file, TorchScript archive (.pt), YAML layer spec, "
                              "or package.module:factory."),
]
Inputs = Annotated[
    list[str] | None,
    typer.Option("--input", "-i", metavar="SHAPE",
                 help="Input shape, e.g. 1x3x224x224, or NAME=1x3x224x224 for one of several inputs (repeatable). "
                      "Needed for symbolic ONNX dims and for TorchScript."),
]
Variants = Annotated[
    list[str] | None,
    typer.Option("--variants", "-V", metavar="LIST",
                 help="Variants to simulate: spatial,depthwise,grouped (default all), or none."),
]
Devices = Annotated[
    list[str] | None,
    typer.Option("--device", "-d", metavar="DEVICE",
                 help="Device profile for latency estimates: a shipped name (see `convcost devices`) "
                      "or a profile.yaml path (repeatable)."),
]
Dtype = Annotated[
    str, typer.Option("--dtype", help="Element type for bytes: float32, float16, bfloat16 or int8.")
]
Only = Annotated[
    list[str] | None,
    typer.Option("--only", metavar="GLOB", help="Factorize only layers whose name matches (repeatable)."),
]
Skip = Annotated[
    list[str] | None,
    typer.Option("--skip", metavar="GLOB",
                 help="Do not factorize layers matching GLOB; they keep their original cost in variant totals."),
]
Rank = Annotated[
    str | None,
    typer.Option("--rank", metavar="R",
                 help="Channels between the stages of the spatial variant (default C_out), or 'auto': "
                      "per layer, the smallest spatial rank and depth multiplier whose weight error is "
                      "within --tol."),
]
Tol = Annotated[
    float,
    typer.Option("--tol", metavar="T", help="With --rank auto: largest relative Frobenius error accepted."),
]
NoApprox = Annotated[
    bool,
    typer.Option("--no-approx", help="Skip the weight-based approximation errors (weights are not read)."),
]
DepthMultiplier = Annotated[
    int, typer.Option("--depth-multiplier", min=1, help="Depth multiplier m of the depthwise variant's first stage.")
]
Groups = Annotated[int, typer.Option("--groups", min=1, help="Groups G of the grouped variant.")]
Top = Annotated[int | None, typer.Option("--top", min=1, help="Show only the first N layers after sorting.")]
Sort = Annotated[
    str, typer.Option("--sort", help=f"Layer order: {', '.join(SORT_KEYS)} (largest first for numbers).")
]
Output = Annotated[
    str | None, typer.Option("--output", "-o", metavar="FILE", help="Write to FILE (atomically) instead of stdout.")
]


@dataclass(frozen=True)
class AnalysisOptions:
    """The options every analysis command shares, gathered by `with_analysis_options`."""

    input: list[str] | None = None
    variants: list[str] | None = None
    device: list[str] | None = None
    dtype: str = "float32"
    only: list[str] | None = None
    skip: list[str] | None = None
    rank: str | None = None
    depth_multiplier: int = 1
    groups: int = 4
    tol: float = 0.05
    no_approx: bool = False

    def request(self, model: str) -> Request:
        """Validated and parsed (exit 2 on a bad value), ready for `pipeline.run`."""
        from convcost.cli.common import make_request

        return make_request(model, self.input, self.variants, self.device, self.dtype, self.only, self.skip,
                            self.rank, self.depth_multiplier, self.groups, tol=self.tol, approx=not self.no_approx)


#: (parameter, typer annotation) of each shared option, in --help order; defaults from AnalysisOptions.
_SHARED: tuple[tuple[str, Any], ...] = (
    ("input", Inputs), ("variants", Variants), ("device", Devices), ("dtype", Dtype), ("only", Only),
    ("skip", Skip), ("rank", Rank), ("depth_multiplier", DepthMultiplier), ("groups", Groups), ("tol", Tol),
    ("no_approx", NoApprox),
)


def with_analysis_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a typer command the shared analysis options, declared once here.

    The command declares `opts: AnalysisOptions` where they should go and receives them gathered;
    its --help lists them at that place, as if written out in its signature. (typer reads a
    command's parameters from `inspect.signature`, which honours `__signature__`.)
    """
    own = inspect.signature(command, eval_str=True)
    defaults = AnalysisOptions()
    params: list[inspect.Parameter] = []
    for p in own.parameters.values():
        if p.name == "opts":
            params += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation,
                                         default=getattr(defaults, name)) for name, annotation in _SHARED]
        else:
            params.append(p)

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        opts = AnalysisOptions(**{name: kwargs.pop(name) for name, _ in _SHARED})
        command(opts=opts, **kwargs)

    wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
