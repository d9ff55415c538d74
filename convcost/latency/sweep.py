"""The conv shapes `calibrate` times: a fixed grid of generic convs of every kind (dense, pointwise,
depthwise, grouped, small-channel; 1-D, 2-D, 3-D, transposed; tiny ones that expose the per-call
overhead), not the layers of any particular model. Plain IR convs, so the torch and the onnxruntime
sweeps time the same shapes.
"""

from __future__ import annotations

from convcost.ir.model import Conv, ConvOp
from convcost.ir.shapes import make_conv


def _conv(cin: int, cout: int, k: int, hw: int, stride: int = 1, groups: int = 1, rank: int = 2,
          op: ConvOp = "Conv", depth: int | None = None) -> Conv:
    """A conv on a square (cubic) map of side `hw`; a 3-D one may have its own `depth` (frames)."""
    pad = (k - 1) // 2
    kind = op
    spatial = (hw,) * rank if depth is None else (depth,) + (hw,) * (rank - 1)
    where = "x".join(map(str, spatial)) if depth else str(hw)
    return make_conv(
        name=f"{kind}{rank}d {cin}->{cout} k{k} s{stride} g{groups} @{where}", op=kind,
        input_shape=(1, cin) + spatial, out_channels=cout, kernel=(k,) * rank, stride=(stride,) * rank,
        padding=(pad,) * (2 * rank), groups=groups,
        output_padding=(stride - 1,) * rank if kind == "ConvTranspose" else None)


def _rect(cin: int, cout: int, k: int, hw: int, axis: int) -> Conv:
    """A k x 1 (axis 0) or 1 x k (axis 1) conv on a square map, padded to keep its size."""
    kernel = (k, 1) if axis == 0 else (1, k)
    pad = tuple((x - 1) // 2 for x in kernel)
    return make_conv(name=f"Conv2d {cin}->{cout} k{kernel[0]}x{kernel[1]} @{hw}", op="Conv",
                     input_shape=(1, cin, hw, hw), out_channels=cout, kernel=kernel, stride=(1, 1), padding=pad * 2)


def _stem3d(cout: int, depth: int, hw: int) -> Conv:
    """A video stem: RGB clips of `depth` frames into a 3x7x7 conv of stride 1x2x2."""
    return make_conv(name=f"Conv3d 3->{cout} k3x7x7 s1x2x2 @{depth}x{hw}x{hw}", op="Conv",
                     input_shape=(1, 3, depth, hw, hw), out_channels=cout, kernel=(3, 7, 7), stride=(1, 2, 2),
                     padding=(1, 3, 3) * 2)


def full_convs() -> list[Conv]:
    ops: list[Conv] = []
    # Dense 3x3: channels x resolution, as deep nets shrink the map while adding channels.
    for c in (16, 32, 64, 128, 256, 512, 1024):
        for hw in (7, 14, 28, 56, 112, 224):
            if 4 <= c * hw <= 8192 and c * c * hw * hw * 9 <= 2e9:
                ops.append(_conv(c, c, 3, hw))
    ops += [_conv(c, 2 * c, 3, hw, stride=2) for c, hw in ((32, 112), (64, 56), (128, 28), (256, 14), (512, 14))]
    ops += [_conv(64, 192, 5, 28), _conv(48, 128, 5, 56), _conv(32, 64, 7, 56, stride=2), _conv(128, 128, 7, 14)]
    # Channel counts that change by 4x (bottlenecks, dense-block growth, branch heads): few outputs
    # over a deep reduction, and the reverse; the grid above only has C_out = C_in (or 2 C_in).
    ops += [_conv(c, c // 4, 3, hw) for c, hw in ((64, 112), (128, 56), (256, 28), (512, 14), (1024, 7))]
    ops += [_conv(c // 4, c, 3, hw) for c, hw in ((128, 56), (512, 14))]
    # Pointwise: expansions, projections and square ones, small to large maps.
    for cin, cout in ((16, 64), (64, 16), (64, 64), (32, 192), (192, 32), (128, 512), (512, 128), (256, 256),
                      (256, 1024), (1024, 256), (512, 2048), (2048, 512), (960, 160), (160, 960)):
        for hw in (7, 14, 28, 56, 112):
            if cin * cout * hw * hw <= 8e8 and min(cin, cout) * hw >= 256:
                ops.append(_conv(cin, cout, 1, hw))
    ops += [_conv(512, 128, 1, 1), _conv(128, 512, 1, 1), _conv(1024, 1024, 1, 1)]
    # Stride-2 1x1 convs: ResNet's downsampling shortcuts.
    ops += [_conv(cin, 2 * cin, 1, hw, stride=2) for cin, hw in ((64, 56), (256, 56), (512, 28), (1024, 14), (128, 28))]
    # Depthwise 3x3 and 5x5, stride 1 and 2.
    for c in (16, 32, 64, 128, 256, 512, 1024):
        for hw in (7, 14, 28, 56, 112):
            if 1024 <= c * hw <= 16384:
                ops.append(_conv(c, c, 3, hw, groups=c))
                if hw >= 14:
                    ops.append(_conv(c, c, 3, hw, stride=2, groups=c))
    ops += [_conv(c, c, 5, hw, groups=c) for c, hw in ((64, 56), (128, 28), (256, 14), (512, 7), (1024, 7))]
    ops += [_conv(c, c, 5, hw, stride=2, groups=c) for c, hw in ((96, 56), (384, 14))]
    # Depth multipliers above 1 (Keras' depth_multiplier; the depthwise variant's stage).
    ops += [_conv(c, m * c, 3, hw, groups=c) for c, m, hw in ((32, 2, 112), (64, 4, 56), (128, 2, 28), (256, 8, 14),
                                                             (512, 4, 7))]
    # Grouped: few to many channels per group.
    for c, hw, g in ((64, 56, 4), (128, 28, 4), (256, 14, 4), (512, 7, 4), (64, 112, 32), (128, 56, 32),
                     (256, 28, 32), (512, 14, 32), (1024, 7, 32), (96, 56, 8), (192, 28, 8), (384, 14, 16),
                     (32, 112, 2), (240, 28, 3), (768, 14, 2)):
        ops.append(_conv(c, c, 3, hw, groups=g))
    ops += [_conv(256, 256, 1, 28, groups=8), _conv(96, 96, 1, 56, groups=4), _conv(512, 1024, 3, 14, 2, 32)]
    # Grouped 1x1 convs: ShuffleNet's (g = 3, 8) and the grouped variant of a bottleneck's 1x1 convs (g = 4).
    ops += [_conv(cin, cout, 1, hw, groups=g) for cin, cout, hw, g in (
        (240, 60, 28, 3), (60, 240, 28, 3), (480, 120, 14, 3), (120, 480, 14, 3), (384, 96, 28, 8),
        (256, 64, 56, 4), (64, 256, 56, 4), (1024, 256, 14, 4), (960, 240, 7, 3))]
    # Small channel counts: RGB stems, thin heads, squeeze convs.
    ops += [_conv(3, 32, 3, 224, 2), _conv(3, 64, 7, 224, 2), _conv(3, 16, 3, 112), _conv(3, 96, 11, 224, 4),
            _conv(16, 3, 3, 112), _conv(32, 2, 1, 56), _conv(2, 32, 1, 28), _conv(64, 3, 3, 56),
            _conv(3, 3, 3, 224, groups=3), _conv(480, 3, 1, 1), _conv(3, 480, 1, 1)]
    # 1-D, 3-D and transposed convs.
    ops += [_conv(128, 128, 3, 1024, rank=1), _conv(512, 512, 3, 128, rank=1), _conv(1, 64, 63, 8000, 4, rank=1),
            _conv(64, 64, 1, 512, rank=1), _conv(256, 256, 5, 64, groups=256, rank=1),
            _conv(64, 64, 3, 16, groups=64, rank=3), _conv(3, 32, 3, 32, rank=3), _conv(3, 64, 3, 32, rank=3)]
    # 1-D convs of audio nets: a raw-waveform stem (M5's 80 taps), a strided conv on feature frames
    # (wav2vec 2.0's encoder), and convs on log-mel frames. wav2vec's own stem (1 -> 512, 10 taps,
    # stride 5) is not among them: it runs 35-50% slower than the 1-D or the small-channel kind's
    # figures predict, and with it in the sweep the 1-D kind's fit misprices the rest.
    ops += [_conv(cin, cout, k, length, s, rank=1) for cin, cout, k, length, s in (
        (1, 128, 80, 16000, 4), (512, 512, 3, 400, 2), (80, 256, 5, 400, 1), (128, 256, 3, 250, 1),
        (40, 64, 5, 200, 2))]
    ops += [_conv(c, c, 3, hw, rank=3)
            for c, hw in ((32, 16), (64, 16), (64, 32), (128, 8), (128, 16), (256, 8), (512, 4))]
    ops += [_conv(16, 64, 1, 16, rank=3), _conv(256, 64, 1, 8, rank=3), _conv(64, 64, 3, 16, 2, rank=3),
            _conv(32, 32, 3, 16, groups=4, rank=3)]
    # Video-shaped clips (few frames, wide maps) on both sides of PyTorch's oneDNN / vol2col line
    # (kinds.NATIVE_PLANE): the same conv can run at half the rate just below it.
    ops += [_conv(c, c, 3, hw, rank=3, depth=d) for c, d, hw in ((64, 16, 28), (256, 8, 14), (32, 16, 56), (512, 4, 7))]
    ops += [_conv(cin, cout, k, hw, s, op="ConvTranspose") for cin, cout, k, hw, s in (
        (128, 64, 4, 14, 2), (32, 16, 3, 56, 2), (256, 128, 2, 28, 2), (64, 64, 3, 28, 1), (512, 256, 4, 7, 2),
        (16, 8, 4, 112, 2), (64, 32, 3, 56, 2))]
    # Channel counts that are not a multiple of 16 (ShuffleNet, MobileNetV3) and narrow groups (ResNeXt).
    ops += [_conv(c, c, k, hw, stride=s, groups=c) for c, k, hw, s in (
        (58, 3, 56, 2), (116, 3, 28, 1), (232, 3, 14, 1), (72, 3, 56, 2), (120, 5, 28, 1), (24, 3, 112, 1),
        (200, 3, 14, 1), (88, 3, 28, 1))]
    # Depthwise channel counts that are not a multiple of 4 (kinds.ALIGN): no blocked kernel takes them.
    ops += [_conv(c, c, k, hw, stride=s, groups=c) for c, k, hw, s in (
        (58, 3, 28, 1), (29, 3, 56, 1), (174, 3, 14, 1), (90, 3, 28, 2), (58, 5, 14, 1))]
    # ... and strided: ShuffleNet v2's downsampling branch, the depthwise variant's first stage on an RGB
    # stem (3 channels, 3x3 and 7x7 at stride 2).
    ops += [_conv(c, c, k, hw, stride=2, groups=c)
            for c, k, hw in ((3, 3, 224), (3, 7, 224), (29, 3, 112), (6, 3, 112))]
    ops += [_conv(c, c, 3, hw, stride=s, groups=g) for c, hw, s, g in (
        (128, 56, 1, 32), (256, 56, 2, 32), (256, 28, 1, 32), (512, 28, 2, 32), (1024, 14, 2, 32), (240, 28, 1, 3))]
    # Video stems: RGB clips into the first 3-D conv.
    ops += [_conv(3, 64, 3, 56, rank=3, depth=8), _conv(3, 32, 3, 112, 2, rank=3, depth=16),
            _conv(3, 16, 3, 64, rank=3)]
    # torchvision's video ResNet stems (r3d, mc3): a 3x7x7 kernel, stride 1x2x2, at a few widths.
    ops += [_stem3d(cout, d, hw) for cout, d, hw in ((64, 16, 112), (32, 8, 64), (16, 4, 32))]
    # Strided 3-D convs: a video ResNet's downsampling convs (r3d's 64 -> 128 and 128 -> 256).
    ops += [_conv(cin, cout, 3, hw, 2, rank=3, depth=d) for cin, cout, hw, d in (
        (64, 128, 28, 8), (128, 256, 14, 4), (32, 64, 32, 8), (16, 32, 56, 8))]
    # Rectangular kernels (k x 1, 1 x k): the stages of spatially separable convs, Inception's 1x7 / 7x1.
    ops += [_rect(c, c, k, hw, axis) for c, k, hw in ((64, 3, 56), (128, 3, 28), (256, 3, 14), (512, 3, 7),
                                                       (32, 3, 112), (192, 7, 17), (96, 5, 28)) for axis in (0, 1)]
    ops += [_rect(64, 128, 3, 56, 0), _rect(128, 64, 3, 28, 1)]
    # Input channel counts a blocked kernel does not take (kinds.ALIGN): the second stage of a
    # spatially separable conv at an odd rank, and odd widths.
    ops += [_rect(77, 64, 3, 56, 1), _rect(119, 128, 3, 28, 1), _rect(239, 256, 3, 14, 1), _rect(431, 512, 3, 7, 1),
            _conv(59, 64, 3, 56), _conv(125, 128, 3, 28), _conv(18, 32, 3, 112)]
    ops += tiny_convs()
    return ops


def tiny_convs() -> list[Conv]:
    """Tiny convs of every kind the sweep has: their time is almost all per-call overhead. Without one, a
    kind's few large probes cannot tell its overhead from its rate, and the fit may trade one for the
    other (a video stem kind with only large probes can come out at 0.8 ms per call and an efficiency
    above the peak)."""
    return [_conv(8, 8, 3, 4), _conv(16, 16, 1, 4), _conv(16, 16, 3, 4, groups=16), _conv(16, 16, 3, 4, groups=4),
            _conv(3, 8, 3, 4), _conv(64, 64, 1, 1), _conv(32, 32, 3, 2, groups=32), _conv(32, 32, 3, 2, groups=8),
            _conv(8, 8, 3, 4, rank=3), _conv(8, 8, 5, 4, rank=3),  # a vol2col and a oneDNN 3-D conv
            _conv(16, 32, 3, 4, groups=16), _conv(18, 16, 3, 4),  # a depth multiplier, an unaligned count
            _conv(64, 128, 1, 8, stride=2),  # a strided 1x1
            _conv(16, 16, 3, 8, rank=1), _conv(3, 8, 3, 4, rank=3),  # a 1-D conv, a video stem
            _conv(16, 16, 2, 4, 2, op="ConvTranspose"), _rect(16, 16, 3, 4, 0),  # an upsampling, a k x 1
            _conv(24, 24, 3, 4, groups=24), _conv(64, 64, 3, 4, groups=4),  # 24 channels, 16 per group
            _conv(18, 18, 3, 4, groups=18),  # a depthwise channel count no blocked kernel takes
            _conv(8, 8, 3, 4, 2, rank=3), _stem3d(8, 2, 8),  # a strided 3-D conv, a strided video stem
            _conv(32, 32, 1, 4, groups=4),  # a grouped 1x1
            _conv(18, 18, 3, 8, 2, groups=18)]  # a strided depthwise conv no blocked kernel takes


def quick_convs() -> list[Conv]:
    """Every third op of the full grid, plus all the tiny ones: about a third of the time."""
    full = full_convs()
    tiny = tiny_convs()
    return [op for i, op in enumerate(full[: len(full) - len(tiny)]) if i % 3 == 0] + tiny


def smoke_convs() -> list[Conv]:
    """A handful of small convs, one or two of each kind: for tests of the command itself."""
    return [_conv(16, 16, 3, 14), _conv(16, 32, 1, 14), _conv(16, 16, 3, 14, groups=16), _conv(16, 16, 3, 14, groups=4),
            _conv(3, 16, 3, 28, 2)] + tiny_convs()[:3]
