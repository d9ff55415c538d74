"""`convcost devices`: the shipped device profiles, each figure with its source."""

from __future__ import annotations

from typing import Annotated

import typer

from convcost.cli import options as o
from convcost.render import formats_for


def devices(
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help=f"Output format: {' or '.join(formats_for('devices'))}.")] = "table",
    output: o.Output = None,
) -> None:
    """List the shipped device profiles: peak, bandwidth, efficiency per op kind, overhead.

    \b
    Every figure carries a source (see -f json); figures no document publishes say 'estimate'.
    Use one with `convcost analyze MODEL -d NAME`, or write your own with `convcost calibrate`.
    """
    from convcost.cli.common import choose_format, emit
    from convcost.latency.devices import load_profile, shipped_profiles
    from convcost.render import render

    fmt = choose_format("devices", fmt)
    emit(render("devices", fmt, [load_profile(path) for path in shipped_profiles().values()]), output)
