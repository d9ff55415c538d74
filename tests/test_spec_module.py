"""spec_module: the eager module built from a spec runs the convs and shapes convcost counts.

The reference is torch itself: per-conv MACs from forward hooks on the built module
(tests/archs.conv_hook_macs) and the output tensor's shape from a forward pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from convcost.loaders.pytorch.spec_module import spec_module
from convcost.loaders.spec import load_spec, load_spec_layers
from tests import archs
from tests.conftest import MODELS

SPECS = sorted(p.stem for p in MODELS.glob("*.yaml"))


@pytest.mark.parametrize("name", SPECS)
def test_shipped_spec_macs_and_shape(name: str) -> None:
    path = MODELS / f"{name}.yaml"
    model = load_spec(path)
    module = spec_module(path).eval()
    x = torch.randn(model.inputs["input"])
    hooks = archs.conv_hook_macs(module, x)
    ours = {c.name: c.macs for c in model.convs}
    assert {module.names[k.removeprefix("layers.")]: v for k, v in hooks.items()} == ours
    _, layers = load_spec_layers(path)
    with torch.no_grad():
        assert tuple(module(x).shape) == layers[-1].shape


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(text)
    return path


def test_branches_repeats_pads_and_every_layer_type(tmp_path: Path) -> None:
    """Asymmetric and 'same' pads, 1-D/3-D, transposed convs with crops, concat, add, from:, repeat."""
    path = write(tmp_path, """
input: [2, 4, 9, 10]
defaults: {bias: false}
layers:
  - {name: a, type: conv, out: 8, kernel: 3, stride: 2, padding: same}
  - {name: b, type: conv, out: 8, kernel: [2, 4], padding: [0, 1, 1, 2], dilation: [1, 2], groups: 4, bias: true}
  - {type: repeat, name: r, times: 2, layers: [
      {name: c, type: conv, out: 8, kernel: 1},
      {name: s, type: add, inputs: [c, b]}]}
  - {name: up, type: conv_transpose, out: 6, kernel: 3, stride: 2, padding: [0, 1, 1, 0], output_padding: 1}
  - {name: up2, type: conv_transpose, out: 2, kernel: 4, stride: 2, padding: same, from: r}
  - {name: p, type: pool, kernel: 3, stride: 2, padding: [0, 0, 2, 3], mode: max, from: up}
  - {name: q, type: pool, kernel: 2, mode: avg, padding: same, from: up}
  - {name: cat, type: concat, inputs: [p, q]}
  - {name: g, type: global_pool, mode: max}
  - {type: flatten}
  - {name: fc, type: linear, out: 5}
""")
    model, layers = load_spec_layers(path)
    module = spec_module(path)
    x = torch.randn(2, 4, 9, 10)
    hooks = archs.conv_hook_macs(module, x)
    by_key = {module.names[k.removeprefix("layers.")]: v for k, v in hooks.items()}
    assert by_key == {c.name: c.macs for c in model.convs}
    seen: dict[str, tuple[int, ...]] = {}
    handles = [m.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(module.names[k], tuple(o.shape)))
               for k, m in module.layers.items()]
    with torch.no_grad():
        out = module(x)
    for h in handles:
        h.remove()
    assert tuple(out.shape) == (2, 5)
    by_name = {layer.name: layer.shape for layer in layers}
    # conv_transpose 'up' crops its output after the module; the pools read the cropped tensor.
    for name in ("a", "b", "r.0.c", "r.1.c", "up2", "p", "q"):
        assert seen[name] == by_name[name], name
    assert by_name["cat"][1] == 12


@pytest.mark.parametrize("shape,layers", [
    ([1, 3, 50], "{type: conv, out: 4, kernel: 5, stride: 3, padding: same}, {type: pool, kernel: 3, padding: same}"),
    ([1, 2, 4, 6, 6], "{type: conv, out: 4, kernel: [1, 3, 3], padding: [0, 1, 1]}, "
                      "{type: conv_transpose, out: 2, kernel: 2, stride: 2}, {type: pool, kernel: [1, 2, 2]}, "
                      "{type: global_pool}"),
])
def test_1d_and_3d(tmp_path: Path, shape: list[int], layers: str) -> None:
    path = write(tmp_path, f"input: {shape}\nlayers: [{layers}]\n")
    model, resolved = load_spec_layers(path)
    module = spec_module(path)
    x = torch.randn(*shape)
    hooks = archs.conv_hook_macs(module, x)
    assert sorted(hooks.values()) == sorted(c.macs for c in model.convs)
    with torch.no_grad():
        assert tuple(module(x).shape) == resolved[-1].shape


@pytest.mark.filterwarnings("ignore::UserWarning")  # the exporter warns about Slice folding
def test_onnx_export_runs_the_same_in_onnxruntime(tmp_path: Path) -> None:
    """The zoo exports spec modules to ONNX: the explicit pads and crops must survive the export
    (onnxruntime's outputs equal torch's on the same input)."""
    import numpy as np
    import onnxruntime as ort

    path = write(tmp_path, """
input: [1, 3, 17, 16]
layers:
  - {name: a, type: conv, out: 8, kernel: 3, stride: 2, padding: same}
  - {name: b, type: conv_transpose, out: 4, kernel: 3, stride: 2, padding: [0, 1, 1, 0], output_padding: 1}
  - {name: p, type: pool, kernel: 3, stride: 2, padding: [0, 0, 2, 3]}
  - {name: q, type: pool, kernel: 3, stride: 2, padding: 1, mode: avg, from: b}
  - {name: s, type: add, inputs: [p, q]}
  - {type: global_pool, mode: max}
  - {type: flatten}
  - {type: linear, out: 3}
""")
    module = spec_module(path).eval()
    x = torch.randn(1, 3, 17, 16)
    onnx_path = tmp_path / "net.onnx"
    with torch.no_grad():
        expected = module(x).numpy()
        torch.onnx.export(module, (x,), str(onnx_path), dynamo=False, opset_version=17)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == expected.shape == (1, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
