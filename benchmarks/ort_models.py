"""The ONNX model zoo for whole-model latency against onnxruntime (issue 18): models we export ourselves.

Run:  python benchmarks/ort_models.py FOLDER [--only NAME ...] [--threads 1]

exports every model to FOLDER/NAME.onnx (files already there are reused), then loads each in an
onnxruntime InferenceSession (`--threads` intra-op threads, default graph optimizations), runs it
on random input and prints name, file size, whether it ran, and the median of a few single runs.

Three sources, all with random weights (no download) and exported by torch 2.13's TorchScript
exporter (`dynamo=False`, opset 17) in eval mode, so BatchNorm is folded into the convs by the
exporter's constant folding, as in a deployed model:
- the tests/archs.py architectures (torchvision's layer shapes) at their usual input sizes;
- every shipped spec in configs/models, built by `spec_module`;
- real-world-shaped nets defined here, for the ops around convs that a latency model must price:
  `COVERS` says which of them carries upsample + concat, 1-D audio, LSTM/GRU, attention, SE blocks
  and channel shuffle.
Weights are re-drawn with a variance-preserving scale (std 1/sqrt(fan_in)), so deep nets without
normalization keep activations far from float32 denormals, which would slow the runtime down.

Every model runs at its usual input size: none takes over 1 s per run in onnxruntime at 1 thread
on the machine of RESULTS.md (the slowest, spec_c3d on 16x112x112 clips, about 0.6 s). DenseNet-121
keeps its BatchNormalization nodes: its BatchNorms precede their convs (pre-activation), so the
exporter has no conv to fold them into, as in torchvision's own export.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/ort_models.py` from anywhere
    sys.path.insert(0, str(ROOT))

from convcost.loaders.pytorch.spec_module import spec_module  # noqa: E402
from convcost.loaders.spec import load_spec  # noqa: E402
from tests import archs  # noqa: E402
from tests.archs import MobileNetV3, conv_bn  # noqa: E402

SPECS = ROOT / "configs" / "models"
OPSET = 17


@dataclass(frozen=True)
class ZooModel:
    """One exported model: its file, the input shape it was exported with, and what it is."""

    name: str
    path: Path
    input_shape: tuple[int, ...]
    what: str
    covers: tuple[str, ...] = field(default=())


# --- Nets defined here: the op mixes of deployed models ----------------------------------------

class UNetSeg(nn.Module):
    """A small UNet segmenter: 3 down stages, decoder with bilinear and nearest upsampling and
    torch.cat skip connections, 4-class logits at full resolution (1x3x256x256)."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(conv_bn(3, 16), conv_bn(16, 16))
        self.enc2 = nn.Sequential(conv_bn(16, 32), conv_bn(32, 32))
        self.enc3 = nn.Sequential(conv_bn(32, 64), conv_bn(64, 64))
        self.mid = nn.Sequential(conv_bn(64, 128), conv_bn(128, 128))
        self.up_nearest = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec3 = nn.Sequential(conv_bn(128 + 64, 64), conv_bn(64, 64))
        self.dec2 = nn.Sequential(conv_bn(64 + 32, 32), conv_bn(32, 32))
        self.dec1 = nn.Sequential(conv_bn(32 + 16, 16), conv_bn(16, 16))
        self.head = nn.Conv2d(16, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        m = self.mid(F.max_pool2d(e3, 2))
        d3 = self.dec3(torch.cat([F.interpolate(m, scale_factor=2.0, mode="bilinear", align_corners=False), e3], 1))
        d2 = self.dec2(torch.cat([self.up_nearest(d3), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:], mode="bilinear", align_corners=False),
                                  e1], 1))
        return self.head(d1)


class FPNDetector(nn.Module):
    """An FPN detector / DBNet-style text detector (1x3x320x320): a strided backbone to C3-C5, lateral
    1x1 convs, a top-down path with nearest upsampling and adds, the levels upsampled to P3 and
    concatenated, then a sigmoid probability map and per-location class scores by softmax."""

    def __init__(self, classes: int = 5, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 16, 3, 2), conv_bn(16, 32, 3, 2))                 # /4
        self.c3 = nn.Sequential(conv_bn(32, 64, 3, 2), conv_bn(64, 64))                        # /8
        self.c4 = nn.Sequential(conv_bn(64, 128, 3, 2), conv_bn(128, 128))                     # /16
        self.c5 = nn.Sequential(conv_bn(128, 256, 3, 2), conv_bn(256, 256))                    # /32
        self.lat3, self.lat4, self.lat5 = (nn.Conv2d(c, width, 1) for c in (64, 128, 256))
        self.smooth = nn.ModuleList(conv_bn(width, width // 2) for _ in range(3))
        self.fuse = conv_bn(3 * (width // 2), width)
        self.prob = nn.Sequential(conv_bn(width, width // 4), nn.Conv2d(width // 4, 1, 1))
        self.cls = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c3 = self.c3(self.stem(x))
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        p5 = self.lat5(c5)
        p4 = self.lat4(c4) + F.interpolate(p5, scale_factor=2.0, mode="nearest")
        p3 = self.lat3(c3) + F.interpolate(p4, scale_factor=2.0, mode="nearest")
        s3, s4, s5 = (m(p) for m, p in zip(self.smooth, (p3, p4, p5), strict=True))
        size = s3.shape[-2:]
        fused = self.fuse(torch.cat([s3, F.interpolate(s4, size=size, mode="nearest"),
                                     F.interpolate(s5, size=size, mode="bilinear", align_corners=False)], 1))
        return torch.sigmoid(self.prob(fused)), torch.softmax(self.cls(fused), dim=1)


class KeywordSpotter(nn.Module):
    """Keyword spotting on 1 s of 16 kHz audio (1x1x16000): a strided conv1d front end, conv1d
    stack with BatchNorm, ReLU and max pooling, a GRU over the remaining frames, 12 classes."""

    def __init__(self, classes: int = 12) -> None:
        super().__init__()
        self.front = nn.Sequential(nn.Conv1d(1, 32, 80, stride=4, padding=38), nn.BatchNorm1d(32), nn.ReLU(),
                                   nn.MaxPool1d(4))
        layers: list[nn.Module] = []
        for cin, cout in ((32, 64), (64, 64), (64, 128)):
            layers += [nn.Conv1d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm1d(cout), nn.ReLU(),
                       nn.MaxPool1d(2)]
        self.body = nn.Sequential(*layers)
        self.gru = nn.GRU(128, 64, batch_first=True)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.front(x)).transpose(1, 2)       # (N, T=125, 128)
        out, _ = self.gru(h)
        return self.fc(out[:, -1])


class CRNN(nn.Module):
    """CRNN text-line recognizer (Shi et al. 2015) on 1x1x32x128: VGG-style conv stack with (2, 1)
    pools, squeezed to a 31-step sequence, two bidirectional LSTM layers, 37-symbol log-probs."""

    def __init__(self, classes: int = 37, hidden: int = 128) -> None:
        super().__init__()
        self.cnn = nn.Sequential(
            conv_bn(1, 64), nn.MaxPool2d(2, 2),
            conv_bn(64, 128), nn.MaxPool2d(2, 2),
            conv_bn(128, 256), conv_bn(256, 256), nn.MaxPool2d((2, 1), (2, 1)),
            conv_bn(256, 256), conv_bn(256, 256), nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(256, 256, 2), nn.ReLU())                                             # 1 x 31
        self.rnn = nn.LSTM(256, hidden, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.cnn(x).squeeze(2).permute(2, 0, 1)        # (T, N, C)
        out, _ = self.rnn(seq)
        return F.log_softmax(self.fc(out), dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention written out: qkv Linear, reshape, transpose, MatMul, Softmax, MatMul."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, t, c))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTRecognizer(nn.Module):
    """A ViTSTR-style text recognizer on 1x3x32x128: a conv stem to 4x4 patches (8x32 = 256 tokens),
    learned position embedding, 4 pre-norm transformer blocks (128 wide, 4 heads), per-token classes."""

    def __init__(self, classes: int = 37, dim: int = 128, depth: int = 4, heads: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 32, 3, 2), nn.Conv2d(32, dim, 2, 2))
        self.pos = nn.Parameter(torch.zeros(1, 256, dim))
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(tokens)))


class MobileNetV3Small(MobileNetV3):
    """MobileNetV3-small (torchvision's `_mobilenet_v3_conf("mobilenet_v3_small")`), 224x224: SE blocks
    gated by hardsigmoid, hardswish activations."""

    #: (in, kernel, expanded, out, SE, activation, stride)
    CONF = ((16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2), (24, 3, 88, 24, False, "RE", 1),
            (24, 5, 96, 40, True, "HS", 2), (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
            (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1), (48, 5, 288, 96, True, "HS", 2),
            (96, 5, 576, 96, True, "HS", 1), (96, 5, 576, 96, True, "HS", 1))
    LAST, HIDDEN, DROPOUT = 576, 1024, 0.0


class ShuffleUnitV1(nn.Module):
    """ShuffleNet v1 unit: grouped 1x1, channel shuffle (reshape, transpose, reshape), depthwise 3x3,
    grouped 1x1; stride 2 concatenates an average-pooled shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int, first: bool = False) -> None:
        super().__init__()
        self.stride, self.groups = stride, groups
        out = cout - cin if stride == 2 else cout
        mid = cout // 4
        self.pw1 = conv_bn(cin, mid, 1, groups=1 if first else groups)
        self.dw = conv_bn(mid, mid, 3, stride, groups=mid, act=False)
        self.pw2 = conv_bn(mid, out, 1, groups=groups, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw2(self.dw(archs.channel_shuffle(self.pw1(x), self.groups)))
        if self.stride == 2:
            return torch.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), y], 1))
        return torch.relu(x + y)


class ShuffleNetV1(nn.Module):
    """ShuffleNet v1 (Zhang et al. 2018), g = 3, 1.0x, 224x224: channels 240 / 480 / 960, 4 / 8 / 4 units."""

    def __init__(self, groups: int = 3, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1))
        units: list[nn.Module] = []
        cin = 24
        for i, (cout, n) in enumerate(((240, 4), (480, 8), (960, 4))):
            units.append(ShuffleUnitV1(cin, cout, 2, groups, first=i == 0))
            units += [ShuffleUnitV1(cout, cout, 1, groups) for _ in range(n - 1)]
            cin = cout
        self.units = nn.Sequential(*units)
        self.fc = nn.Linear(960, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.units(self.stem(x)).mean((2, 3)))


#: Which of the nets defined here carries each op mix the issue names.
COVERS: dict[str, tuple[str, ...]] = {
    "unet_seg": ("upsample+concat",),
    "fpn_detector": ("upsample+concat",),
    "kws_gru": ("1-D audio", "GRU"),
    "crnn": ("LSTM",),
    "vit_recognizer": ("attention",),
    "mobilenet_v3_small": ("SE",),
    "shufflenet_v1_g3": ("channel shuffle",),
}

Factory = Callable[[], nn.Module]

#: name -> (factory, input shape, what it is) for the nets defined in this module.
OWN: dict[str, tuple[Factory, tuple[int, ...], str]] = {
    "unet_seg": (UNetSeg, (1, 3, 256, 256), "UNet segmenter: bilinear + nearest upsampling, concat skips"),
    "fpn_detector": (FPNDetector, (1, 3, 320, 320), "FPN / DBNet-style detector: upsample, add, concat, "
                                                   "sigmoid and softmax heads"),
    "kws_gru": (KeywordSpotter, (1, 1, 16000), "keyword spotting: conv1d stack + GRU on 1 s of 16 kHz audio"),
    "crnn": (CRNN, (1, 1, 32, 128), "CRNN text recognizer: conv stack -> 2-layer BiLSTM -> linear"),
    "vit_recognizer": (ViTRecognizer, (1, 3, 32, 128), "ViTSTR-style recognizer: multi-head self-attention, "
                                                       "LayerNorm, GELU"),
    "mobilenet_v3_small": (MobileNetV3Small, (1, 3, 224, 224), "MobileNetV3-small: SE, hardswish, hardsigmoid"),
    "shufflenet_v1_g3": (ShuffleNetV1, (1, 3, 224, 224), "ShuffleNet v1 g=3: grouped 1x1, channel shuffle"),
}

#: tests/archs.py architectures: (factory, input shape). GroupedDilated's usual size in tests is 1x3x64x64.
ARCHS: dict[str, tuple[Factory, tuple[int, ...]]] = {
    **archs.ALL_MODELS,
    "grouped_dilated": (archs.GroupedDilated, (1, 3, 64, 64)),
}

def _spec_factory(path: Path) -> Factory:
    return lambda: spec_module(path)


def catalog() -> dict[str, tuple[Factory, tuple[int, ...], str]]:
    """Every zoo model: name -> (factory, input shape, what it is)."""
    entries: dict[str, tuple[Factory, tuple[int, ...], str]] = {}
    for name, (factory, shape) in ARCHS.items():
        entries[name] = (factory, tuple(shape), f"tests/archs.py {factory.__name__}")
    for path in sorted(SPECS.glob("*.yaml")):
        shape = load_spec(path).inputs["input"]
        entries[f"spec_{path.stem}"] = (_spec_factory(path), shape, f"configs/models/{path.name}")
    entries.update(OWN)
    return entries


def _init(module: nn.Module) -> None:
    """Variance-preserving random weights: std 1/sqrt(fan_in) for every conv and Linear, small biases."""
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd) and m.transposed:  # weight: (in, out / groups, k...)
            fan_in = m.weight.shape[0] // m.groups * math.prod(m.weight.shape[2:])
        elif isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):  # weight: (out, in / groups, k...)
            fan_in = m.weight[0].numel()
        else:
            continue
        nn.init.normal_(m.weight, std=fan_in**-0.5)
        if m.bias is not None:
            nn.init.uniform_(m.bias, -0.1, 0.1)


def export(module: nn.Module, shape: tuple[int, ...], path: Path) -> None:
    """Export `module` in eval mode (BatchNorm folded by constant folding); written atomically."""
    module.eval()
    x = torch.randn(shape)
    tmp = path.with_suffix(".onnx.tmp")
    with torch.no_grad():
        torch.onnx.export(module, (x,), str(tmp), dynamo=False, opset_version=OPSET, input_names=["input"],
                          do_constant_folding=True)
    os.replace(tmp, path)


def export_zoo(folder: Path, only: list[str] | None = None) -> list[ZooModel]:
    """Export the zoo (or the models named in `only`) to folder/NAME.onnx; existing files are kept."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = catalog()
    unknown = sorted(set(only or ()) - set(entries))
    if unknown:
        raise KeyError(f"unknown zoo model(s): {', '.join(unknown)} (known: {', '.join(entries)})")
    models = []
    for name, (factory, shape, what) in entries.items():
        if only is not None and name not in only:
            continue
        path = folder / f"{name}.onnx"
        if not path.exists():
            torch.manual_seed(0)
            module = factory()
            _init(module)
            export(module, shape, path)
        models.append(ZooModel(name, path, shape, what, COVERS.get(name, ())))
    return models


def run_once(model: ZooModel, threads: int = 1, runs: int = 3) -> tuple[float, bool]:
    """(median seconds of `runs` single runs after one warm-up, every output finite) in onnxruntime."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model.path), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(model.input_shape,
                                                                                   dtype=np.float32)}
    outputs = session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times), all(bool(np.isfinite(o).all()) for o in outputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    models = export_zoo(args.folder, args.only)
    print(f"{len(models)} models in {args.folder} ({time.perf_counter() - start:.1f} s to export)")
    print(f"{'name':22} {'input':18} {'MB':>7} {'ORT':>4} {'ms/run':>8}  covers / what")
    failed = 0
    for m in models:
        size = m.path.stat().st_size / 1e6
        try:
            seconds, finite = run_once(m, args.threads)
            ok, ms = ("yes" if finite else "inf"), f"{seconds * 1e3:8.1f}"
        except Exception as exc:  # a model onnxruntime cannot load or run is reported, not fatal
            ok, ms = "no", f"{type(exc).__name__}: {str(exc)[:60]}"
            failed += 1
        shape = "x".join(map(str, m.input_shape))
        print(f"{m.name:22} {shape:18} {size:7.1f} {ok:>4} {ms:>8}  {', '.join(m.covers) or m.what}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
