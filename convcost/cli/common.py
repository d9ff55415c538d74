"""Glue the analysis commands share: options -> Request, and text -> stdout or file."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence

from convcost.analysis.analyzer import SORT_KEYS
from convcost.analysis.pipeline import Request
from convcost.analysis.result import Settings
from convcost.cost import DTYPE_BYTES
from convcost.ir.inputs import InputSyntaxError, parse_inputs
from convcost.render import View
from convcost.util.errors import UsageError
from convcost.variants import VARIANTS
from convcost.variants.base import VariantOptions


def make_request(
    model: str,
    inputs: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    dtype: str = "float32",
    only: Sequence[str] | None = None,
    skip: Sequence[str] | None = None,
    rank: str | None = None,
    depth_multiplier: int = 1,
    groups: int = 4,
    tol: float = 0.05,
    approx: bool = True,
) -> Request:
    """Validate and parse the shared options into a `Request`.

    `approx` computes each variant's weight-based error where the model has weights;
    `rank="auto"` picks the rank per layer from them (needs `approx`).
    """
    if dtype not in DTYPE_BYTES:
        raise UsageError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPE_BYTES)}")
    rank_value: int | None = None
    auto = rank is not None and rank.strip().lower() == "auto"
    if auto:
        if not approx:
            raise UsageError("--rank auto picks ranks from the weights' errors; not with --no-approx")
        if not 0 <= tol < 1:
            raise UsageError(f"--tol {tol}: expected a relative error in [0, 1)")
    elif rank is not None:
        try:
            rank_value = int(rank)
        except ValueError:
            raise UsageError(f"--rank {rank!r}: expected a positive integer or auto") from None
        if rank_value < 1:
            raise UsageError(f"--rank {rank!r}: expected a positive integer or auto")
    profiles = []
    if devices:
        from convcost.latency.devices import resolve_devices

        profiles = resolve_devices(devices)
        for profile in profiles:
            if dtype not in profile.roofline.peak_gflops:
                have = ", ".join(profile.roofline.peak_gflops)
                raise UsageError(f"--dtype {dtype}: device {profile.name} has no {dtype} peak (it has {have})")
    settings = Settings(
        dtype=dtype,
        variants=parse_variants(variants) if variants else tuple(VARIANTS),
        options=VariantOptions(rank=rank_value, depth_multiplier=depth_multiplier, groups=groups,
                               tol=tol if auto else None),
        only=tuple(only or ()),
        skip=tuple(skip or ()),
    )
    try:
        shapes = parse_inputs(inputs or [])
    except InputSyntaxError as exc:
        raise UsageError(f"-i {exc}") from None
    request = Request(model=model, inputs=shapes, settings=settings, devices=profiles)
    if approx:
        from convcost.variants.approximator import Approximator

        request.approx = Approximator()
        if auto:
            from convcost.variants.autorank import AutoRank

            request.options_for = AutoRank(request.approx, tol)
    return request


def make_view(sort: str, top: int | None, output: str | None, command: str | None = None) -> View:
    if sort not in SORT_KEYS:
        raise UsageError(f"--sort {sort!r}: choose one of {', '.join(SORT_KEYS)}")
    tty = output is None and sys.stdout.isatty()
    return View(sort=sort, top=top, command=command, color=tty,
                width=shutil.get_terminal_size().columns if tty else None)


def emit(text: str, output: str | None) -> None:
    """Print to stdout, or write `output` whole (atomically)."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from convcost.util.outfile import write_atomic

    write_atomic(output, text)
    print(f"wrote {output}", file=sys.stderr)


def command_line() -> str:
    """The command as typed, for reports that say how to reproduce them."""
    import shlex

    return "convcost " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def parse_variants(values: Sequence[str]) -> tuple[str, ...]:
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
