"""Op kinds: which efficiency, overhead and fill constants of a profile apply to an op.

Each kind is a rule registered in order (`register_kind`); the first rule that matches names the
op's kind (`op_kind`). A kind a profile has no figures for takes its parent's (`lineage`).
`gemm_dims` says how an op looks as a matrix product, which the fill factors and the fit read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from convcost.ir.model import Conv, MatMul, Op
from convcost.util.registry import Registry
from convcost.util.registry import lineage as chain_of


@dataclass(frozen=True)
class Kind:
    """One op kind: the test that recognises it, what it means, and the kind whose figures it takes
    where a profile (or a calibration sweep) has none of its own."""

    name: str
    test: Callable[[Op], bool]
    description: str
    parent: str | None = None


#: Kinds in the order they are tried; the first whose test matches names the op's kind.
KIND_RULES: Registry[str, Kind] = Registry("op kind")


def register_kind(name: str, description: str,
                  parent: str | None = None) -> Callable[[Callable[[Op], bool]], Callable[[Op], bool]]:
    def wrap(test: Callable[[Op], bool]) -> Callable[[Op], bool]:
        KIND_RULES.add(name, Kind(name, test, description, parent))
        return test

    return wrap


def lineage(kind: str) -> list[str]:
    """`kind`, then the kind it falls back to, and so on (volumetric_small, volumetric, dense)."""
    return chain_of(KIND_RULES, kind)


def nearest(table: dict[str, float], kind: str, default: float) -> float:
    """`table`'s figure for `kind`, or for the nearest kind in its lineage that has one, or `default`."""
    return next((table[k] for k in lineage(kind) if k in table), default)


#: A conv whose outputs each sum fewer than SMALL_REDUCTION products (C_in/groups * prod(kernel)),
#: or that has fewer than SMALL_OUTPUTS output channels per group, is "small_channel".
SMALL_REDUCTION = 32
SMALL_OUTPUTS = 4


#: Channel counts that are multiples of this fill a blocked kernel's vector registers (16 floats:
#: AVX-512; onnxruntime's NCHWc convs and oneDNN's blocked layouts): other counts are padded or
#: take a generic path, several times slower per MAC for depthwise and narrow-group convs.
BLOCK = 16
#: A blocked conv reads a channel count of at least BLOCK only when it is a multiple of this
#: (onnxruntime's NCHWc transformer on x86, measured on onnxruntime 1.32: 20, 44, 68 channels run
#: blocked; 18, 59, 77 do not).
ALIGN = 4


def _unaligned_groups(op: Conv) -> bool:
    """Whether a group's input or output channel count is not a multiple of BLOCK: no blocked kernel takes it."""
    return (op.in_channels // op.groups) % BLOCK != 0 or (op.out_channels // op.groups) % BLOCK != 0


@register_kind("depthwise_multiplier", "groups = C_in > 1 and C_out = m x C_in with m > 1 (Keras' depth_multiplier, "
                                       "the depthwise variant's stage at m > 1): blocked depthwise kernels take only "
                                       "m = 1, so onnxruntime runs it as a grouped conv in NCHW", parent="depthwise")
def _depthwise_multiplier(op: Op) -> bool:
    return isinstance(op, Conv) and op.is_depthwise and op.out_channels != op.in_channels


@register_kind("depthwise_unblocked_strided", f"depthwise with a channel count that is not a multiple of {ALIGN} and "
                                              "a stride above 1 (ShuffleNet v2's 58-channel downsampling branch, the "
                                              "depthwise variant's stage on an RGB stem): its im2col gathers a "
                                              "strided input, about 2.5x slower per MAC in onnxruntime than at "
                                              "stride 1",
               parent="depthwise_unblocked")
def _depthwise_unblocked_strided(op: Op) -> bool:
    return isinstance(op, Conv) and _depthwise_unblocked(op) and max(op.stride) > 1


@register_kind("depthwise_unblocked", f"depthwise with a channel count that is not a multiple of {ALIGN} "
                                      "(ShuffleNet v2's 58): onnxruntime's blocked (NCHWc) kernels do not take it, "
                                      "so it runs group by group through im2col + GEMM, about 6x slower there than "
                                      "with 2 channels more", parent="depthwise_unaligned")
def _depthwise_unblocked(op: Op) -> bool:
    return isinstance(op, Conv) and op.is_depthwise and op.rank == 2 and op.in_channels % ALIGN != 0


@register_kind("depthwise_unaligned", f"depthwise with a channel count that is not a multiple of {BLOCK} "
                                      "(ShuffleNet's 58, 116, 232; MobileNetV3's 72, 120)", parent="depthwise")
def _depthwise_unaligned(op: Op) -> bool:
    return isinstance(op, Conv) and op.is_depthwise and op.rank == 2 and op.in_channels % BLOCK != 0


@register_kind("depthwise", "groups = C_in > 1 (one filter per input channel, any depth multiplier)")
def _depthwise(op: Op) -> bool:
    return isinstance(op, Conv) and op.is_depthwise


@register_kind("sequence", "1-D conv (audio, text): runtimes run these through their generic im2col + GEMM path, "
                           "not the blocked 2-D kernels", parent="dense")
def _sequence(op: Op) -> bool:
    return isinstance(op, Conv) and op.rank == 1 and op.op == "Conv"


#: A conv reading fewer channels than this per group is a stem on an image or clip (RGB, grayscale).
STEM_CHANNELS = 4


@register_kind("volumetric_stem_strided", "a video stem with a stride above 1 (torchvision's 3x7x7, stride 1x2x2): "
                                          "its vol2col gathers every other pixel, 1.2-1.4x slower per MAC in "
                                          "onnxruntime than a stride-1 stem", parent="volumetric_stem")
def _volumetric_stem_strided(op: Op) -> bool:
    return isinstance(op, Conv) and _volumetric_stem(op) and max(op.stride) > 1


@register_kind("volumetric_stem", f"3-D conv reading fewer than {STEM_CHANNELS} channels (a video stem on RGB clips): "
                                  "a small reduction per output, through the 3-D kernels", parent="small_channel")
def _volumetric_stem(op: Op) -> bool:
    return isinstance(op, Conv) and op.rank == 3 and op.op == "Conv" and op.in_channels // op.groups < STEM_CHANNELS


@register_kind("grouped_pointwise", f"1x1 conv with 1 < groups < C_in and a channel count per group that is not a "
                                    f"multiple of {BLOCK} (ShuffleNet v1's 20 and 40): no blocked kernel takes it, so "
                                    "onnxruntime runs one small GEMM per group, 20-40% slower per MAC on 14x14 to "
                                    "28x28 maps than the grouped 3x3 convs predict", parent="grouped")
def _grouped_pointwise(op: Op) -> bool:
    if not (isinstance(op, Conv) and op.op == "Conv" and op.groups > 1 and op.is_pointwise) or op.is_depthwise:
        return False
    return _unaligned_groups(op)


@register_kind("small_channel", f"each output sums fewer than {SMALL_REDUCTION} products (C_in/groups x kernel "
                                f"size: a 3x3 RGB stem, a 1x1 conv from 16 channels) or has fewer than "
                                f"{SMALL_OUTPUTS} output channels per group")
def _small(op: Op) -> bool:
    if not isinstance(op, Conv):
        return False
    reduction = op.in_channels // op.groups * math.prod(op.kernel)
    return reduction < SMALL_REDUCTION or op.out_channels // op.groups < SMALL_OUTPUTS


@register_kind("transposed", "ConvTranspose (upsampling), unless depthwise or small-channel", parent="dense")
def _transposed(op: Op) -> bool:
    return isinstance(op, Conv) and op.op == "ConvTranspose"


@register_kind("volumetric_strided", "3-D conv with a stride above 1 (a video net's downsampling conv), unless "
                                     "depthwise or a stem: its vol2col gathers a strided input, about 1.3x slower per "
                                     "MAC in onnxruntime than at stride 1", parent="volumetric")
def _volumetric_strided(op: Op) -> bool:
    return isinstance(op, Conv) and op.rank == 3 and op.op == "Conv" and max(op.stride) > 1


#: PyTorch's CPU backend hands a batch-1, ungrouped conv with kernels of at most 3 to oneDNN only when
#: batch x C_in x the first two spatial sizes exceeds this (ConvParams::use_mkldnn in
#: aten/src/ATen/native/Convolution.cpp, "for some case, native is faster"); below it a 3-D conv
#: runs as vol2col + GEMM (slow_conv3d), at a third to a half of oneDNN's rate on the same machine.
NATIVE_PLANE = 20480


@register_kind("volumetric_small", f"3-D conv with batch 1, no groups and batch x C_in x D x H <= {NATIVE_PLANE}: "
                                   "where PyTorch's CPU backend runs vol2col + GEMM instead of oneDNN",
               parent="volumetric")
def _volumetric_small(op: Op) -> bool:
    if not (isinstance(op, Conv) and op.rank == 3 and op.op == "Conv"):
        return False
    n, c, d, h = op.input_shape[:4]
    big_kernel = op.kernel[-1] > 3 and op.kernel[-2] > 3
    return n == 1 and op.groups == 1 and not big_kernel and n * c * d * h <= NATIVE_PLANE


@register_kind("volumetric", "3-D conv (video, medical volumes), unless depthwise, small-channel or transposed",
               parent="dense")
def _volumetric(op: Op) -> bool:
    return isinstance(op, Conv) and op.rank == 3


@register_kind("grouped_narrow", f"1 < groups < C_in, a spatial kernel, and a channel count per group that is not "
                                 f"a multiple of {BLOCK} (ResNeXt's 4 and 8 per group)", parent="grouped")
def _grouped_narrow(op: Op) -> bool:
    if not (isinstance(op, Conv) and op.groups > 1) or op.is_pointwise:
        return False
    return _unaligned_groups(op)


@register_kind("grouped", "1 < groups < C_in")
def _grouped(op: Op) -> bool:
    return isinstance(op, Conv) and op.groups > 1


#: A matrix multiply with a constant weight and at most this many rows is a matrix-vector product.
MATVEC_ROWS = 4


#: Weights of a matrix-vector product beyond this many bytes stream from main memory on every run.
MATVEC_CACHED_BYTES = 16 * 2**20
#: Kinds whose sweep probes run cold on every visit: a matrix-vector product with more weights than a
#: cache holds reads them from memory in every model run (MATVEC_CACHED_BYTES).
COLD_KINDS = ("matvec_large",)


@register_kind("matvec_large", f"a matrix-vector product with more than {MATVEC_CACHED_BYTES // 2**20} MiB of "
                               "weights (VGG's and AlexNet's classifiers): they stream from main memory, not cache",
               parent="matvec")
def _matvec_large(op: Op) -> bool:
    return isinstance(op, MatMul) and op.params > 0 and op.batch * op.m <= MATVEC_ROWS \
        and op.params * 4 > MATVEC_CACHED_BYTES


@register_kind("matvec", f"a layer's matrix times at most {MATVEC_ROWS} rows (a classifier at batch 1): it streams "
                         "its weights once per run, from memory", parent="matmul")
def _matvec(op: Op) -> bool:
    return isinstance(op, MatMul) and op.params > 0 and op.batch * op.m <= MATVEC_ROWS


@register_kind("matmul", "matrix multiplies (Linear, Gemm, MatMul, Einsum): a runtime's GEMM, not its conv kernels",
               parent="pointwise")
def _matmul(op: Op) -> bool:
    return isinstance(op, MatMul)


@register_kind("pointwise_strided", "1x1 kernel with a stride above 1 (ResNet's downsampling shortcut): it reads one "
                                    "input pixel in stride^2, and in onnxruntime runs 10-20% slower than a 1x1 conv "
                                    "of the same output at stride 1", parent="pointwise")
def _pointwise_strided(op: Op) -> bool:
    return isinstance(op, Conv) and op.is_pointwise and max(op.stride) > 1


@register_kind("pointwise", "1x1 kernel (and matrix multiplies, where a profile has no matmul figures)")
def _pointwise(op: Op) -> bool:
    return isinstance(op, MatMul) or op.is_pointwise


@register_kind("unaligned", f"2-D conv with one group and a spatial kernel, reading at least {BLOCK} channels "
                           f"but not a multiple of {ALIGN} (a spatially separable conv's second stage at an odd "
                           "rank): blocked kernels do not take it, so it runs through im2col + GEMM, about 1.5x "
                           "slower per MAC in onnxruntime", parent="dense")
def _unaligned(op: Op) -> bool:
    return isinstance(op, Conv) and op.op == "Conv" and op.rank == 2 and op.groups == 1 and not op.is_pointwise \
        and op.in_channels >= BLOCK and op.in_channels % ALIGN != 0


@register_kind("rectangular", "a kernel of 1 along some axis and more along another (k x 1, 1 x k: the stages of "
                              "a spatially separable conv)", parent="dense")
def _rectangular(op: Op) -> bool:
    return isinstance(op, Conv) and op.rank >= 2 and 1 in op.kernel and max(op.kernel) > 1


@register_kind("dense", "any other conv")
def _dense(op: Op) -> bool:
    return True


KINDS: tuple[str, ...] = tuple(KIND_RULES)


def op_kind(op: Op) -> str:
    """Which efficiency and overhead apply to `op`."""
    for kind in KIND_RULES.values():
        if kind.test(op):
            return kind.name
    raise AssertionError("the 'dense' rule matches every op")


def gemm_dims(op: Op) -> tuple[int, int, int]:
    """(M, N, K) of the op seen as a matrix product: output pixels, outputs per group, reduction depth.

    A ConvTranspose is computed as the backward-data pass of a conv (oneDNN, cuDNN): each output
    pixel gathers C_in/g x prod(kernel) / prod(stride) products on average, so N = C_out/g and
    K = MACs / (M x N). A depthwise conv is vectorized across its channels: N = C_out, K = prod(kernel).
    """
    if isinstance(op, MatMul):
        return op.batch * op.m, op.n, op.k
    k = math.prod(op.kernel)
    pixels = op.output_shape[0] * math.prod(op.output_shape[2:])
    if op.op == "ConvTranspose":
        inputs = op.input_shape[0] * math.prod(op.input_shape[2:])
        per_group = op.out_channels // op.groups
        return pixels, per_group, max(1, round(op.in_channels // op.groups * k * inputs / pixels))
    if op.is_depthwise:
        return pixels, op.out_channels, k
    return pixels, op.out_channels // op.groups, op.in_channels // op.groups * k


#: Kinds onnxruntime runs with its blocked (NCHWc) direct kernels on x86: they skip the kernel rows
#: that fall in a 2-D conv's top and bottom padding (`computed_share`).
DIRECT_KINDS = frozenset({"dense", "rectangular", "depthwise", "depthwise_unaligned", "grouped", "small_channel"})


def computed_share(op: Op, kind: str | None = None) -> float:
    """The share of a 2-D conv's MACs (as counted: every kernel tap of every output) that a direct
    kernel computes: for each output row, the kernel rows that land inside the input, not in the
    padding above or below it. 1 for other ops and kinds (an im2col + GEMM multiplies the zeros).
    `kind`: the op's kind where the caller has it already."""
    if not isinstance(op, Conv) or op.op != "Conv" or op.rank != 2 or (kind or op_kind(op)) not in DIRECT_KINDS:
        return 1.0
    kh, sh, dh, top, h = op.kernel[0], op.stride[0], op.dilation[0], op.padding[0], op.input_shape[2]
    rows = op.output_shape[2]
    if kh == 1 or rows == 0:
        return 1.0
    inside = 0
    for i in range(kh):  # kernel row i reads input row y * sh + offset: count the output rows y where it is inside
        offset = i * dh - top
        first, last = max(0, -(offset // sh)), min(rows - 1, (h - 1 - offset) // sh)
        inside += max(0, last - first + 1)
    return inside / (rows * kh)
