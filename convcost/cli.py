"""The command line: a thin layer over loaders, analysis and renderers.

Every failure the user can cause ends in one line on stderr, `convcost: error: FILE: problem`,
and exit code 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from convcost import __version__
from convcost.errors import ConvcostError

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

_state = {"debug": False}


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
    _state["debug"] = debug


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


def _register() -> None:
    from convcost.commands import analyze, devices  # noqa: F401  (each module registers its commands)


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the one place errors become exit codes
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(fail(KeyboardInterrupt()))
        if _state["debug"] or "--debug" in (argv if argv is not None else sys.argv):
            raise
        sys.exit(fail(exc))
