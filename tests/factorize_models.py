"""Small ONNX models for the apply and plan tests: every conv form the rewrite must map.

Built with onnx.helper (fast, and every attribute spelled out: asymmetric pads, auto_pad,
output_shape) or exported from torch (both exporters). Weights are random unless a test gives
its own; each model is tiny so a test suite on 2 cores stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from onnx import helper, numpy_helper, save

#: One conv of a chain: op, weight shape, attributes; bias or not.
Layer = tuple[str, tuple[int, ...], dict[str, Any], bool]


def chain(path: Path, x_shape: tuple[int, ...], layers: list[Layer], seed: int = 0, relu: bool = True,
          weights: dict[int, np.ndarray] | None = None, dtype: Any = np.float32, opset: int = 17,
          names: list[str] | None = None) -> Path:
    """A model of convs one after another (Relu between), x -> y; `weights[i]` overrides conv i's."""
    rng = np.random.default_rng(seed)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes, inits = [], []
    current = "x"
    for i, (op, w_shape, attrs, bias) in enumerate(layers):
        w = weights[i] if weights and i in weights else rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))
        inits.append(numpy_helper.from_array(np.asarray(w).astype(dtype), f"w{i}"))
        inputs = [current, f"w{i}"]
        if bias:
            c_out = w_shape[0] if op == "Conv" else w_shape[1] * attrs.get("group", 1)
            inits.append(numpy_helper.from_array(rng.standard_normal(c_out).astype(dtype), f"b{i}"))
            inputs.append(f"b{i}")
        out = f"c{i}"
        name = names[i] if names else f"conv{i}"
        nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        current = out
        if relu and i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"], name=f"relu{i}"))
            current = f"r{i}"
    nodes.append(helper.make_node("Identity", [current], ["y"], name="out"))
    graph = helper.make_graph(nodes, path.stem, [helper.make_tensor_value_info("x", elem, list(x_shape))],
                              [helper.make_tensor_value_info("y", elem, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")
    model.ir_version = 8
    model.metadata_props.add(key="origin", value="convcost tests")
    from onnx import shape_inference

    save(shape_inference.infer_shapes(model), str(path))  # the graph output's shape: valid for onnx.checker
    return path


def k(*ks: int, **attrs: Any) -> dict[str, Any]:
    return {"kernel_shape": list(ks), **attrs}


#: name -> (input shape, layers): every form `apply` must rewrite exactly.
ONNX_MODELS: dict[str, tuple[tuple[int, ...], list[Layer]]] = {
    "basic_asym_pads": ((1, 4, 12, 12), [
        ("Conv", (8, 4, 3, 3), k(3, 3, pads=[1, 1, 1, 1]), True),
        ("Conv", (8, 8, 3, 3), k(3, 3, strides=[2, 2], pads=[0, 1, 2, 1]), True)]),
    "dilated_rect": ((1, 4, 16, 16), [
        ("Conv", (8, 4, 3, 3), k(3, 3, dilations=[2, 2], pads=[2, 2, 2, 2]), False),
        ("Conv", (8, 8, 3, 5), k(3, 5, dilations=[1, 2], pads=[1, 4, 1, 4], strides=[1, 2]), True)]),
    "grouped": ((1, 8, 10, 10), [
        ("Conv", (8, 4, 3, 3), k(3, 3, group=2, pads=[1, 1, 1, 1]), True),
        ("Conv", (16, 2, 3, 3), k(3, 3, group=4, pads=[1, 1, 1, 1], strides=[2, 1]), True)]),
    "depthwise_pointwise": ((1, 8, 10, 10), [
        ("Conv", (8, 1, 3, 3), k(3, 3, group=8, pads=[1, 1, 1, 1]), True),
        ("Conv", (16, 8, 1, 1), k(1, 1), True)]),
    "auto_pad_same": ((1, 4, 11, 9), [
        ("Conv", (8, 4, 4, 4), k(4, 4, auto_pad="SAME_UPPER", strides=[2, 2]), True),
        ("Conv", (8, 8, 3, 3), k(3, 3, auto_pad="SAME_LOWER", strides=[2, 1]), True),
        ("Conv", (8, 8, 3, 2), k(3, 2, auto_pad="VALID"), False)]),
    "transpose": ((1, 8, 6, 6), [
        ("ConvTranspose", (8, 4, 4, 4), k(4, 4, strides=[2, 2], pads=[1, 1, 1, 1]), True),
        ("ConvTranspose", (4, 4, 3, 3), k(3, 3, strides=[2, 2], pads=[1, 0, 1, 2], output_padding=[1, 1], group=2),
         True)]),
    "transpose_shapes": ((1, 4, 5, 7), [
        ("ConvTranspose", (4, 8, 3, 3), k(3, 3, strides=[2, 2], auto_pad="SAME_UPPER"), True),
        ("ConvTranspose", (8, 4, 3, 3), k(3, 3, strides=[2, 2], output_shape=[20, 28]), False)]),
    "conv1d": ((1, 4, 32), [
        ("Conv", (8, 4, 5), k(5, strides=[2], pads=[2, 1]), True),
        ("Conv", (8, 2, 3), k(3, group=4, dilations=[2], pads=[2, 2]), True),
        ("ConvTranspose", (8, 4, 4), k(4, strides=[2], pads=[1, 1]), True)]),
    "conv3d": ((1, 4, 6, 8, 8), [
        ("Conv", (8, 4, 3, 3, 3), k(3, 3, 3, pads=[1] * 6), True),
        ("Conv", (8, 8, 1, 3, 3), k(1, 3, 3, pads=[0, 1, 1, 0, 1, 1], strides=[1, 2, 2]), True),
        ("Conv", (8, 8, 3, 1, 1), k(3, 1, 1, pads=[1, 0, 0, 1, 0, 0], dilations=[2, 1, 1]), False)]),
    "transpose3d": ((1, 4, 3, 4, 4), [
        ("ConvTranspose", (4, 4, 2, 3, 3), k(2, 3, 3, strides=[2, 1, 1], pads=[0, 1, 1, 0, 1, 1]), True)]),
}


def onnx_model(name: str, folder: Path, **kw: Any) -> Path:
    x_shape, layers = ONNX_MODELS[name]
    return chain(folder / f"{name}.onnx", x_shape, layers, **kw)


def torch_export(module: Any, x: Any, path: Path, dynamo: bool = False, opset: int = 17) -> Path:
    """An eval-mode torch export (legacy by default: quicker)."""
    import warnings

    import torch

    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(module, (x,), str(path), dynamo=True, opset_version=18, verbose=False)
        else:
            torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=opset)
    return path


def torch_models() -> dict[str, tuple[Callable[[], Any], tuple[int, ...]]]:
    """Small torch nets from tests/archs.py pieces: name -> (factory, input shape)."""
    from torch import nn

    from tests import archs

    def small_net() -> nn.Module:
        torch_seed()
        return nn.Sequential(archs.conv_bn(3, 8, 3, 2), archs.conv_bn(8, 16, 3, groups=2),
                             archs.conv_bn(16, 16, 3, dilation=2), nn.Conv2d(16, 8, 3, padding=1))

    def decoder() -> nn.Module:
        torch_seed()
        return archs.Decoder()

    def shared() -> nn.Module:
        torch_seed()
        return archs.SharedConv()

    def audio() -> nn.Module:
        torch_seed()
        return archs.Audio1d()

    return {"small_net": (small_net, (1, 3, 16, 16)), "decoder": (decoder, (1, 64, 3, 3)),
            "shared": (shared, (1, 3, 8, 8)), "audio1d": (audio, (1, 40, 64))}


def torch_seed(seed: int = 0) -> None:
    import torch

    torch.manual_seed(seed)


def trained_net(path: Path, steps: int = 400) -> Path:
    """A small conv net trained for a few seconds to tell the orientation of noisy gratings: kernels
    with the structure training gives (decaying spectra), unlike random init. Exported to `path`.
    One torch thread: on a loaded 2-core machine more threads make this 50x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(path, steps)
    finally:
        torch.set_num_threads(threads)


def _train(path: Path, steps: int) -> Path:
    import torch
    from torch import nn

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, 4, (n,), generator=gen)
        r = torch.arange(16.0) - 7.5
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        angles = labels.float() * (np.pi / 4)
        phase = torch.rand(n, generator=gen) * 6.28
        d = xx[None] * torch.cos(angles)[:, None, None] + yy[None] * torch.sin(angles)[:, None, None]
        images = torch.cos(d * 1.3 + phase[:, None, None]) + 0.3 * torch.randn(n, 16, 16, generator=gen)
        return images[:, None], labels

    net = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(16, 16, 3, padding=1, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(16, 4))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        x, y = batch(32)
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = batch(256)
    accuracy = float((net(x).argmax(1) == y).float().mean())
    assert accuracy > 0.5, accuracy  # it learned something
    return torch_export(net, x[:1], path)


def plan_models() -> dict[str, tuple[Callable[[], Any], tuple[int, ...]]]:
    """2-D and 3-D nets for the plan tests, narrow enough that their SVDs are quick: name -> (factory,
    input shape)."""
    from torch import nn

    from tests import archs

    def narrow_resnet() -> nn.Module:
        torch_seed()
        return nn.Sequential(archs.conv_bn(3, 16, 3, 1), archs.BasicBlock(16, 16), archs.BasicBlock(16, 32, 2),
                             archs.BasicBlock(32, 64, 2), archs.BasicBlock(64, 64), nn.Conv2d(64, 10, 1))

    def vgg_small() -> nn.Module:
        torch_seed()
        return nn.Sequential(archs.conv_bn(3, 32, 3), archs.conv_bn(32, 32, 3), nn.MaxPool2d(2),
                             archs.conv_bn(32, 64, 3), archs.conv_bn(64, 64, 3), nn.MaxPool2d(2),
                             archs.conv_bn(64, 96, 3), nn.Conv2d(96, 96, 3, padding=1))

    def grouped_dilated() -> nn.Module:
        torch_seed()
        return archs.GroupedDilated()

    def video3d() -> nn.Module:
        torch_seed()
        return archs.Video3d()

    def wide_trained_like() -> nn.Module:
        """Kernels with decaying spectra without training: low-rank factors plus a little noise."""
        import torch

        torch_seed()
        net = nn.Sequential(archs.conv_bn(3, 24, 5, 1), archs.conv_bn(24, 48, 3, 2), archs.conv_bn(48, 48, 3),
                            nn.Conv2d(48, 64, 3, padding=1))
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1:
                    o, i, kh, kw = m.weight.shape
                    a = torch.randn(i * kh, 8) * torch.logspace(0, -2, 8)
                    m.weight.copy_((a @ torch.randn(8, o * kw)).reshape(i, kh, o, kw).permute(2, 0, 1, 3)
                                   + 0.02 * torch.randn(o, i, kh, kw))
        return net

    return {"narrow_resnet": (narrow_resnet, (1, 3, 32, 32)), "vgg_small": (vgg_small, (1, 3, 32, 32)),
            "grouped_dilated": (grouped_dilated, (1, 3, 32, 32)), "video3d": (video3d, (1, 3, 4, 16, 16)),
            "low_rank": (wide_trained_like, (1, 3, 32, 32))}
