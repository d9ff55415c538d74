"""`convcost devices`: the shipped device profiles, each figure with its source."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from convcost.cli import options as o

if TYPE_CHECKING:
    from convcost.latency.devices import DeviceProfile

DEVICE_FORMATS = ("table", "json")


def devices(
    fmt: Annotated[str, typer.Option("--format", "-f", help="Output format: table or json.")] = "table",
    output: o.Output = None,
) -> None:
    """List the shipped device profiles: peak, bandwidth, efficiency per op kind, overhead.

    \b
    Every figure carries a source (see -f json); figures no document publishes say 'estimate'.
    Use one with `convcost analyze MODEL -d NAME`, or write your own with `convcost calibrate`.
    """
    import json

    from convcost.cli.common import emit
    from convcost.latency.devices import load_profile, profile_document, shipped_profiles
    from convcost.util.errors import UsageError

    if fmt not in DEVICE_FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(DEVICE_FORMATS)}")
    profiles = [load_profile(path) for path in shipped_profiles().values()]
    if fmt == "json":
        emit(json.dumps({"devices": [{**profile_document(p), "file": p.path} for p in profiles]}, indent=2) + "\n",
             output)
        return
    emit(_devices_table(profiles), output)


def _devices_table(profiles: list[DeviceProfile]) -> str:
    import io

    from rich.console import Console
    from rich.table import Table

    from convcost.latency.devices import REQUIRED_KINDS

    table = Table(title="convcost device profiles", title_justify="left", header_style="bold")
    for header in ("name", "description", "peak GFLOP/s (GOP/s int8)", "GB/s"):
        table.add_column(header, justify="right" if header == "GB/s" else "left")
    for kind in REQUIRED_KINDS:
        table.add_column(f"eff {kind}", justify="right")
    table.add_column("overhead us", justify="right")
    table.add_column("estimated figures", justify="right")
    for p in profiles:
        roof = p.roofline
        peaks = ", ".join(f"{d} {v:g}" for d, v in roof.peak_gflops.items())
        figures = list(p.figures())
        estimated = sum(1 for _, _, source in figures if source.lower().startswith("estimate"))
        overheads = sorted(set(roof.overhead_us.values()))
        table.add_row(p.name, p.description, peaks, f"{roof.bandwidth_gbs:g}",
                      *(f"{roof.efficiency[k]:.2g}" for k in REQUIRED_KINDS),
                      "/".join(f"{v:.3g}" for v in overheads), f"{estimated}/{len(figures)}")
    buffer = io.StringIO()
    Console(file=buffer, width=250, no_color=True, highlight=False).print(table)
    buffer.write("Sources: convcost devices -f json. 'estimated figures' counts figures no datasheet or paper "
                 "publishes; `convcost calibrate` on the device replaces them with measured ones.\n")
    return buffer.getvalue()


