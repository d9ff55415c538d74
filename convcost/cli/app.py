"""The command line: a thin layer over loaders, analysis and renderers.

Every failure the user can cause ends in one line on stderr, `convcost: error: FILE: problem`,
and exit code 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from convcost import __version__
from convcost.cli import analyze, apply, bench, calibrate, check, devices, plan, report
from convcost.util.errors import ConvcostError

app = typer.Typer(
    name="convcost",
    help="What every convolution in your model costs, and what it would cost factorized.\n\n"
    "Reads ONNX, TorchScript or a YAML layer spec; counts params, MACs (FLOPs = 2 x MACs) and memory "
    "per conv; simulates spatially separable, depthwise-separable and grouped replacements.\n\n"
    "Example: convcost analyze configs/models/mobilenet_v1.yaml --top 10 --sort macs",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for _command in (analyze.analyze, report.report, check.check, devices.devices, calibrate.calibrate, bench.bench,
                 plan.plan, apply.apply):
    app.command()(_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"convcost {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks for errors.")] = False,
) -> None:
    """Global options. `main` takes --debug out of the line itself (it works anywhere on it); it is
    declared here so that --help lists it."""


def fail(exc: BaseException) -> int:
    """Print one line for an error and return its exit code."""
    if isinstance(exc, ConvcostError):
        typer.echo(f"convcost: error: {exc}", err=True)
        return exc.exit_code
    if isinstance(exc, MemoryError):
        typer.echo("convcost: error: out of memory while reading the model", err=True)
        return 2
    if isinstance(exc, KeyboardInterrupt):
        typer.echo("convcost: interrupted", err=True)
        return 130
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    typer.echo(f"convcost: internal error: {type(exc).__name__}: {first} (rerun with --debug for details)",
               err=True)
    return 3


def _is_usage_error(exc: BaseException) -> bool:
    """Click/typer usage errors (bad option, missing argument) print their own usage message."""
    return hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int)


def main(argv: list[str] | None = None) -> None:
    # Small per-layer SVDs: threaded BLAS only thrashes (3-20x slower on a loaded 2-core CI box).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args  # accepted anywhere on the line, not only before the command
    args = [a for a in args if a != "--debug"]
    try:
        code = app(args=args, standalone_mode=False)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the one place errors become exit codes
        if isinstance(exc, typer.Exit):
            sys.exit(exc.exit_code)
        if _is_usage_error(exc):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if isinstance(exc, typer.Abort):
            sys.exit(fail(KeyboardInterrupt()))
        if debug:
            raise
        sys.exit(fail(exc))
    if isinstance(code, int) and code:
        sys.exit(code)
