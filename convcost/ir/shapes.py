"""Shape arithmetic for convolutions, shared by the loaders and the variant builder."""

from __future__ import annotations

from collections.abc import Sequence

from convcost.ir.model import Conv, ConvOp, Shape


class ShapeError(ValueError):
    """A conv that cannot run on its input: attributes and shapes disagree (message says which)."""


class BadAttribute(ShapeError):
    """A conv attribute that is invalid whatever the input (a negative pad, a zero stride):
    unlike other ShapeErrors, a different input size cannot be the cause."""


def conv_out_size(size: int, k: int, s: int, pad_begin: int, pad_end: int, d: int) -> int:
    return (size + pad_begin + pad_end - d * (k - 1) - 1) // s + 1


def conv_transpose_out_size(
    size: int, k: int, s: int, pad_begin: int, pad_end: int, d: int, out_pad: int
) -> int:
    return (size - 1) * s - pad_begin - pad_end + d * (k - 1) + out_pad + 1


def same_pads(
    spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
    upper: bool = True,
) -> Shape:
    """Pads for `SAME_UPPER`/`SAME_LOWER` (TensorFlow's 'same'): output = ceil(in / stride).

    The odd pixel goes to the end for SAME_UPPER and to the beginning for SAME_LOWER.
    """
    totals = []
    for size, k, s, d in zip(spatial, kernel, stride, dilation, strict=True):
        out = -(-size // s)
        totals.append(max((out - 1) * s + d * (k - 1) + 1 - size, 0))
    return split_pads(totals, upper)


def split_pads(totals: Sequence[int], upper: bool) -> Shape:
    """Begin and end pads (all begins, then all ends) that add up to each axis's total: the odd
    pixel goes to the end when `upper` (SAME_UPPER), to the beginning otherwise."""
    begins = [t // 2 if upper else t - t // 2 for t in totals]
    ends = [t - t // 2 if upper else t // 2 for t in totals]
    return tuple(begins + ends)


def make_conv(
    name: str,
    op: ConvOp,
    input_shape: Sequence[int],
    out_channels: int,
    kernel: Sequence[int],
    stride: Sequence[int] | None = None,
    padding: Sequence[int] | None = None,
    dilation: Sequence[int] | None = None,
    groups: int = 1,
    bias: bool = True,
    output_padding: Sequence[int] | None = None,
    dtype: str | None = None,
) -> Conv:
    """Build a `Conv` with its output shape resolved, checking every attribute.

    `input_shape` is (N, C_in, *spatial). Raises `ShapeError` naming what is wrong.
    """
    rank = len(kernel)
    if len(input_shape) != rank + 2:
        raise ShapeError(
            f"a {rank}-D kernel needs a {rank + 2}-D input (N, C, {rank} spatial), got {list(input_shape)}"
        )
    stride = tuple(stride) if stride is not None else (1,) * rank
    dilation = tuple(dilation) if dilation is not None else (1,) * rank
    padding = tuple(padding) if padding is not None else (0,) * (2 * rank)
    output_padding = tuple(output_padding) if output_padding is not None else (0,) * rank
    for label, values, n in (("stride", stride, rank), ("dilation", dilation, rank),
                             ("padding", padding, 2 * rank), ("output_padding", output_padding, rank)):
        if len(values) != n:
            raise BadAttribute(f"{label} needs {n} values for a {rank}-D kernel, got {list(values)}")
    in_channels = int(input_shape[1])
    for label, value in (("input batch", input_shape[0]), ("in_channels", in_channels),
                         ("out_channels", out_channels), ("groups", groups)):
        if value < 1:
            raise ShapeError(f"{label} must be positive, got {value}")
    minimums: tuple[tuple[str, Sequence[int], int], ...] = (
        ("kernel", kernel, 1), ("stride", stride, 1), ("dilation", dilation, 1), ("padding", padding, 0),
        ("output_padding", output_padding, 0))
    for label, seq, low in minimums:
        if any(v < low for v in seq):
            raise BadAttribute(f"{label} must be >= {low}, got {list(seq)}")
    if any(v < 1 for v in input_shape[2:]):
        raise ShapeError(f"input spatial size must be >= 1, got {list(input_shape[2:])}")
    if out_channels % groups:
        raise BadAttribute(f"groups={groups} must divide out_channels={out_channels}")
    if in_channels % groups:
        raise ShapeError(f"groups={groups} must divide in_channels={in_channels}")
    spatial = input_shape[2:]
    if op == "ConvTranspose":
        for i in range(rank):
            if output_padding[i] >= max(stride[i], dilation[i]):
                raise BadAttribute(
                    f"output_padding {output_padding[i]} must be smaller than stride or dilation on axis {i}"
                )
        out_spatial = [
            conv_transpose_out_size(spatial[i], kernel[i], stride[i], padding[i], padding[rank + i],
                                    dilation[i], output_padding[i])
            for i in range(rank)
        ]
    else:
        out_spatial = [
            conv_out_size(spatial[i], kernel[i], stride[i], padding[i], padding[rank + i], dilation[i])
            for i in range(rank)
        ]
    if any(o < 1 for o in out_spatial):
        raise ShapeError(
            f"kernel {list(kernel)} (dilation {list(dilation)}) is larger than the padded input "
            f"{list(spatial)} with padding {list(padding)}: output size would be {out_spatial}"
        )
    return Conv(
        name=name, op=op, in_channels=in_channels, out_channels=out_channels,
        kernel=tuple(kernel), stride=stride, padding=padding, dilation=dilation, groups=groups,
        input_shape=tuple(int(x) for x in input_shape),
        output_shape=(int(input_shape[0]), out_channels, *out_spatial),
        bias=bias, output_padding=output_padding if op == "ConvTranspose" else (), dtype=dtype,
    )
