"""Options shared by the analysis commands (analyze, report, check, bench), declared once."""

from __future__ import annotations

from typing import Annotated

import typer

from convcost.analysis import SORT_KEYS

ModelArg = Annotated[
    str,
    typer.Argument(metavar="MODEL", help="Model: .onnx file, TorchScript archive (.pt), or YAML layer spec."),
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
    typer.Option("--rank", metavar="R", help="Channels between the two stages of the spatial variant (default C_out)."),
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
