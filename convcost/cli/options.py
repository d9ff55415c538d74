"""The options the analysis commands share (analyze, report, check, bench): declared once, parsed once."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from convcost.analysis.analyzer import SORT_KEYS

if TYPE_CHECKING:
    from convcost.analysis.pipeline import Request
    from convcost.ir.model import Shape
    from convcost.latency.devices import DeviceProfile

ModelArg = Annotated[
    str,
    typer.Argument(metavar="MODEL", help="Model: .onnx file, TorchScript archive (.pt), YAML layer spec, "
                              "or package.module:factory."),
]
ModelsArg = Annotated[
    list[str],
    typer.Argument(metavar="MODEL", help="Model(s): .onnx file, TorchScript archive (.pt), YAML layer spec, "
                                  "or package.module:factory. Several: each with the same options, in this order."),
]
Jobs = Annotated[
    int | None,
    typer.Option("--jobs", "-j", min=1, metavar="N",
                 help="Worker processes for several models (default: one per core for 4 or more models, "
                      "else 1); the output keeps the models' order."),
]
Inputs = Annotated[
    list[str] | None,
    typer.Option("--input", "-i", metavar="SHAPE",
                 help="Input shape, e.g. 1x3x224x224, or NAME=1x3x224x224 for one of several inputs, or "
                      "NAME=VALUE for a scalar input (rank-0 ONNX input, TorchScript int/float/bool argument), "
                      "e.g. sr=16000 (repeatable). Needed for symbolic ONNX dims and for TorchScript."),
]
TensorShapes = Annotated[
    list[str] | None,
    typer.Option("--shape", metavar="TENSOR=SHAPE",
                 help="Shape of any tensor in an ONNX graph, e.g. --shape feat=1x64x56x56 (repeatable): "
                      "lets shape inference continue past an op convcost cannot shape."),
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
    str | None,
    typer.Option("--dtype", help="Element type for bytes and peaks: float32, float16, bfloat16 or int8 "
                                 "(default: the model's own float16 / bfloat16 where it stores them, else "
                                 "float32; quantized int8 ops stay int8)."),
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
Permute = Annotated[
    bool,
    typer.Option("--permute", help="Also report the grouped variant's error after the channel permutation "
                 "heuristic (approx_error_permuted; slower)."),
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
class Options:
    """Every option the analysis commands share, with its default.

    A command takes the ones it declares with `with_options` and receives them here, gathered;
    `request` validates and parses them into the one `Request` every analysis runs from.
    """

    input: list[str] | None = None
    shape: list[str] | None = None
    variants: list[str] | None = None
    device: list[str] | None = None
    dtype: str | None = None  # None: the model's own, else float32
    only: list[str] | None = None
    skip: list[str] | None = None
    rank: str | None = None
    depth_multiplier: int = 1
    groups: int = 4
    tol: float = 0.05
    no_approx: bool = False
    permute: bool = False

    def request(self, model: str) -> Request:
        """Validated and parsed (exit 2 on a bad value), ready for `pipeline.run`.

        Weight-based errors are on unless --no-approx; `--rank auto` picks ranks from them, so it
        is recorded once, as the tolerance in `VariantOptions.tol`.
        """
        from convcost.analysis.pipeline import Request
        from convcost.analysis.result import Settings
        from convcost.cost import DTYPE_BYTES
        from convcost.ir.inputs import InputSyntaxError, parse_inputs
        from convcost.util.errors import UsageError
        from convcost.variants import VARIANTS, VariantOptions

        if self.dtype is not None and self.dtype not in DTYPE_BYTES:
            raise UsageError(f"--dtype {self.dtype!r}: choose one of {', '.join(DTYPE_BYTES)}")
        auto = self.rank is not None and self.rank.strip().lower() == "auto"
        if auto:
            if self.no_approx:
                raise UsageError("--rank auto picks ranks from the weights' errors; not with --no-approx")
            if not 0 <= self.tol < 1:
                raise UsageError(f"--tol {self.tol}: expected a relative error in [0, 1)")
        try:
            inputs = parse_inputs(self.input or [])
        except InputSyntaxError as exc:
            raise UsageError(f"-i {exc}") from None
        tensor_shapes = parse_tensor_shapes(self.shape or [])
        settings = Settings(
            dtype=self.dtype or "float32",
            dtype_from_model=self.dtype is None,
            variants=parse_variants(self.variants) if self.variants else tuple(VARIANTS),
            options=VariantOptions(rank=None if auto else _rank(self.rank), depth_multiplier=self.depth_multiplier,
                                   groups=self.groups, tol=self.tol if auto else None),
            only=tuple(self.only or ()),
            skip=tuple(self.skip or ()),
            approx=not self.no_approx,
            permute=self.permute,
        )
        return Request(model=model, inputs=inputs, tensor_shapes=tensor_shapes, settings=settings,
                       devices=_devices(self.device, self.dtype))


#: The defaults, for a command's `opts` parameter (`with_options` replaces it with the parsed flags).
DEFAULTS = Options()


def parse_tensor_shapes(values: Sequence[str]) -> dict[str, Shape]:
    """--shape values: TENSOR=SHAPE, in -i's shape syntax, each tensor named once."""
    from convcost.ir.inputs import InputSyntaxError, parse_shape
    from convcost.util.errors import UsageError

    shapes: dict[str, Shape] = {}
    for value in values:
        try:
            name, shape = parse_shape(value)
        except InputSyntaxError as exc:
            raise UsageError(f"--shape {exc}") from None
        if not name:
            raise UsageError(f"--shape {value!r}: name the tensor: --shape TENSOR=SHAPE")
        if name in shapes:
            raise UsageError(f"--shape: given twice for tensor {name!r}")
        shapes[name] = shape
    return shapes


def _rank(text: str | None) -> int | None:
    from convcost.util.errors import UsageError

    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"--rank {text!r}: expected a positive integer or auto") from None
    if value < 1:
        raise UsageError(f"--rank {text!r}: expected a positive integer or auto")
    return value


def _devices(names: Sequence[str] | None, dtype: str | None) -> list[DeviceProfile]:
    """The profiles -d names, each able to price an explicit --dtype (the model's own dtypes are
    checked once it is loaded: `pipeline.check_model`)."""
    if not names:
        return []
    from convcost.latency.devices import DeviceChoiceError, resolve_devices
    from convcost.util.errors import UsageError

    try:
        profiles = resolve_devices(names)
    except DeviceChoiceError as exc:
        raise UsageError(exc.message, f"--device {exc.source}" if exc.source else "--device") from None
    for profile in profiles:
        if dtype is not None and dtype not in profile.roofline.peak_gflops:
            have = ", ".join(profile.roofline.peak_gflops)
            raise UsageError(f"--dtype {dtype}: device {profile.name} has no {dtype} peak (it has {have})")
    return profiles


def parse_variants(values: Sequence[str]) -> tuple[str, ...]:
    """-V values: comma-separated variant names, `all` or `none`, in registry order of first mention."""
    from convcost.util.errors import UsageError
    from convcost.variants import VARIANTS

    names: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip().lower()
            if part == "all":
                names.extend(VARIANTS)
            elif part == "none":
                continue
            elif part in VARIANTS:
                names.append(part)
            elif part:
                raise UsageError(f"-V: unknown variant {part!r} (choose from {', '.join(VARIANTS)}, all, none)")
    return tuple(dict.fromkeys(names))


#: Each shared option's typer declaration, in --help order; defaults come from `Options`.
DECLARATIONS: dict[str, Any] = {
    "input": Inputs, "shape": TensorShapes, "variants": Variants, "device": Devices, "dtype": Dtype, "only": Only,
    "skip": Skip, "rank": Rank, "depth_multiplier": DepthMultiplier, "groups": Groups, "tol": Tol,
    "no_approx": NoApprox, "permute": Permute,
}


def with_options(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a typer command the shared options `names` (all of them when none are named).

    The command declares `opts: Options` where they should go and receives them gathered (the
    options it does not take keep their defaults); its --help lists them at that place, as if
    written out in its signature. (typer reads a command's parameters from `inspect.signature`,
    which honours `__signature__`.)
    """
    chosen = names or tuple(DECLARATIONS)
    unknown = set(chosen) - set(DECLARATIONS)
    if unknown:
        raise ValueError(f"no shared option {sorted(unknown)}")

    def wrap(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command, eval_str=True)
        params: list[inspect.Parameter] = []
        for p in own.parameters.values():
            if p.name == "opts":
                params += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                             annotation=DECLARATIONS[name], default=getattr(DEFAULTS, name))
                           for name in chosen]
            else:
                params.append(p)

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            opts = Options(**{name: kwargs.pop(name) for name in chosen})
            command(opts=opts, **kwargs)

        wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return wrap
