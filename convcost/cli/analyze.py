"""`convcost analyze`: the per-conv table (or JSON, CSV, Markdown)."""

from __future__ import annotations

from typing import Annotated

import typer

from convcost.cli import options as o
from convcost.render import formats_for


@o.with_options()
def analyze(
    models: o.ModelsArg,
    opts: o.Options = o.DEFAULTS,
    top: o.Top = None,
    sort: o.Sort = "order",
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help=f"Output format: {', '.join(formats_for('analysis'))}.")] = "table",
    output: o.Output = None,
    jobs: o.Jobs = None,
) -> None:
    """Count params, MACs and memory of every conv and of its factorized variants.

    Several models: each one's output as if analyzed alone (same options, same -i), in argument
    order, then a table comparing their totals; -f json gives a list of the documents.

    \b
    Examples:
      convcost analyze configs/models/mobilenet_v1.yaml
      convcost analyze model.onnx -i 1x3x224x224 --sort macs --top 10
      convcost analyze configs/models/conv_mobilenet.yaml -V depthwise --skip conv1
      convcost analyze model.onnx -f json -o costs.json
      convcost analyze model.onnx --rank auto --tol 0.05
      convcost analyze configs/models/mobilenet_v1.yaml -d rpi4 -d t4
      convcost analyze configs/models/*.yaml -f json -o all.json
    """
    from convcost.cli.common import choose_format, command_line, emit, make_view
    from convcost.render import render_chunks

    fmt = choose_format("analysis" if len(models) == 1 else "analyses", fmt)
    view = make_view(sort, top, output, command_line())
    if len(models) > 1:
        from convcost.cli.multi import analyze_models

        emit(analyze_models(models, opts, fmt, view, jobs), output)
        return
    from convcost.analysis.pipeline import run

    emit(render_chunks("analysis", fmt, run(opts.request(models[0])), view), output)
