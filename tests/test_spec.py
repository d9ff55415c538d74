"""YAML layer specs: shapes against PyTorch, the shipped examples against their papers, bad input."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from convcost.analysis.analyzer import analyze
from convcost.analysis.result import Settings
from convcost.cost import cost_of
from convcost.loaders.spec import load_spec
from convcost.variants.base import VariantOptions
from tests import archs
from tests.conftest import MODELS, assert_one_line_error, run_cli


def spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def totals(name: str, **kw):
    return analyze(load_spec(MODELS / f"{name}.yaml"), Settings(**kw))


def test_mobilenet_v1_matches_paper():
    a = totals("mobilenet_v1")
    assert round(a.totals.macs / 1e6) == 569  # Table 4/8: 569 M mult-adds
    assert round(a.totals.params / 1e6, 1) == 4.2  # 4.2 M parameters
    assert len(a.layers) == 27


def test_conv_mobilenet_matches_paper_and_its_depthwise_variant_is_mobilenet():
    a = totals("conv_mobilenet", variants=("depthwise",), skip=("conv1",))
    # Table 4: Conv MobileNet 4866 M mult-adds, 29.3 M params (ours: 4867 M; see README).
    assert abs(a.totals.macs / 1e6 - 4866) < 2
    assert round(a.totals.params / 1e6, 1) == 29.3
    dw = a.variant_totals["depthwise"]
    mobilenet = totals("mobilenet_v1")
    assert dw.macs == mobilenet.totals.macs and dw.params == mobilenet.totals.params
    assert round(dw.macs / 1e6) == 569 and round(dw.params / 1e6, 1) == 4.2


def test_vgg16_and_resnet18_match_pytorch_hooks_layer_by_layer():
    for name, factory in (("vgg16", archs.VGG16), ("resnet18", archs.resnet18)):
        model = load_spec(MODELS / f"{name}.yaml")
        torch_model = factory()
        hooks = archs.conv_hook_macs(torch_model, torch.zeros(1, 3, 224, 224))
        ours = [cost_of(c).macs for c in model.convs]
        assert sorted(ours) == sorted(hooks.values())
        if name == "resnet18":  # spec names follow named_modules()
            assert {c.name: cost_of(c).macs for c in model.convs} == hooks
        linear = sum(m.in_features * m.out_features for m in torch_model.modules() if isinstance(m, torch.nn.Linear))
        assert analyze(model).totals.macs == sum(hooks.values()) + linear


def test_c3d_and_m5():
    c3d = totals("c3d")
    assert round(c3d.totals.macs / 1e9, 1) == 38.5  # as cited for C3D at 16x112x112
    assert c3d.layers[-1].conv.output_shape == (1, 512, 2, 7, 7)
    m5 = totals("m5_audio")
    assert round(m5.totals.params / 1e6, 1) == 0.6  # paper: 0.5 M (rounded down there)
    assert m5.layers[0].conv.output_shape == (1, 128, 7981)


def test_shapes_match_torch_for_every_layer_kind(tmp_path):
    path = spec(tmp_path, """
        input: [2, 4, 17, 15]
        layers:
          - {name: a, type: conv, out: 8, kernel: [3, 5], stride: [2, 1], padding: [1, 2], dilation: [1, 2]}
          - {name: b, type: conv, out: 8, kernel: 3, padding: [0, 1, 2, 1], groups: 4}
          - {name: t, type: conv_transpose, out: 6, kernel: 3, stride: 2, padding: 1, output_padding: 1, groups: 2}
          - {name: p, type: pool, kernel: 2}
          - {name: s, type: conv, out: 6, kernel: 3, stride: 2, padding: same}
        """)
    model = load_spec(path)
    x = torch.zeros(2, 4, 17, 15)
    x = torch.nn.Conv2d(4, 8, (3, 5), (2, 1), (1, 2), (1, 2))(x)
    assert model.convs[0].output_shape == tuple(x.shape)
    x = torch.nn.functional.pad(x, (1, 1, 0, 2))  # begin/end per axis: H (0, 2), W (1, 1)
    x = torch.nn.Conv2d(8, 8, 3, groups=4)(x)
    assert model.convs[1].output_shape == tuple(x.shape)
    x = torch.nn.ConvTranspose2d(8, 6, 3, 2, 1, output_padding=1, groups=2)(x)
    assert model.convs[2].output_shape == tuple(x.shape)
    x = torch.nn.MaxPool2d(2)(x)
    assert model.convs[3].input_shape == tuple(x.shape)
    # TensorFlow 'same': ceil(in / stride).
    assert model.convs[3].output_shape[2:] == tuple(-(-d // 2) for d in x.shape[2:])


def test_repeat_branches_add_concat_and_defaults(tmp_path):
    path = spec(tmp_path, """
        name: branches
        input: [1, 8, 16, 16]
        defaults: {bias: false}
        layers:
          - {name: stem, type: conv, out: 16, kernel: 3, padding: 1}
          - type: repeat
            name: blk
            times: 3
            layers:
              - {name: a, type: conv, out: 16, kernel: 1}
              - {name: b, type: conv, out: 16, kernel: 3, padding: 1}
              - {name: sum, type: add, inputs: [a, b]}
          - {name: side, type: conv, out: 4, kernel: 1, from: stem}
          - {name: cat, type: concat, inputs: [blk.2.sum, side]}
          - {name: head, type: conv, out: 2, kernel: 1, bias: true}
          - {type: global_pool}
          - {type: flatten}
          - {name: fc, type: linear, out: 5}
        """)
    model = load_spec(path)
    names = [c.name for c in model.convs]
    assert names == ["stem", "blk.0.a", "blk.0.b", "blk.1.a", "blk.1.b", "blk.2.a", "blk.2.b", "side", "head"]
    assert model.convs[-1].input_shape == (1, 20, 16, 16)
    assert not model.convs[0].bias and model.convs[-1].bias
    assert model.matmuls[0].k == 2 and model.matmuls[0].params == 2 * 5  # defaults reach linear too
    assert model.name == "branches"


def test_1d_and_3d_and_input_override(tmp_path):
    path = spec(tmp_path, """
        input: [1, 2, 8, 8, 8]
        layers: [{name: c, type: conv, out: 4, kernel: [3, 1, 1], padding: [1, 0, 0]}]
        """)
    model = load_spec(path, {"": (2, 2, 4, 6, 6)})
    assert model.convs[0].output_shape == (2, 4, 4, 6, 6)
    assert model.inputs == {"input": (2, 2, 4, 6, 6)}


@pytest.mark.parametrize(
    "body,fragments",
    [
        ("input: [1, 3, 8, 8]\nlayers: [{type: conv, out: 4, kernel: 3\n", ["YAML syntax error at line"]),
        ("input: [1, 3, 8, 8]\nlayers: [{type: dense, out: 4}]", ["unknown layer type 'dense'", "layer 0"]),
        ("input: [1, 3, 8, 8]\nlayers: [{name: c1, type: conv, kernel: 3}]",
         ["layer 'c1'", "missing required key 'out'"]),
        ("input: [1, 3, 8, 8]\nlayers: [{name: c1, type: conv, out: 4, kernel: 3, colour: red}]",
         ["unknown key(s) colour"]),
        ("input: [1, 3, 8, 8]\nlayers: [{name: c1, type: conv, out: 0, kernel: 3}]", ["out must be a positive"]),
        ("input: [1, 3, 8, 8]\nlayers: [{name: c1, type: conv, out: 4, kernel: -3}]", ["kernel values"]),
        ("input: [1, 6, 8, 8]\nlayers: [{name: g, type: conv, out: 8, kernel: 3, groups: 4}]",
         ["layer 'g'", "groups=4 must divide"]),
        ("input: [1, 3, 8, 8]\nlayers: [{name: big, type: conv, out: 4, kernel: 11}]",
         ["layer 'big'", "larger than the padded input"]),
        ("input: [1, 3, 8, 8]\nlayers: [{name: c, type: conv, out: 4, kernel: 1, from: nowhere}]",
         ["unknown layer 'nowhere'"]),
        ("input: [1, 3, 8, 8]\nlayers:\n  - {name: a, type: conv, out: 4, kernel: 1}\n"
         "  - {name: b, type: conv, out: 4, kernel: 3}\n  - {name: c, type: concat, inputs: [a, b]}",
         ["concat on axis 1 of mismatched shapes"]),
        ("input: [1, 3, 8, 8]\nlayers: [{type: repeat, times: 1000000000, layers: [{type: flatten}]}]",
         ["times must be an integer from 1 to"]),
        ("input: [1, 3]\nlayers: [{type: flatten}]", ["'input' must be a list"]),
        ("- just\n- a list", ["must be a mapping"]),
    ],
)
def test_bad_specs_end_in_one_line(tmp_path, body, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    assert_one_line_error(run_cli("analyze", str(path)), str(path), *fragments)


def test_bad_spec_leaves_existing_output_intact(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [1, 3, 8, 8]\nlayers: [{type: nope}]")
    out = tmp_path / "out.json"
    out.write_text("previous")
    assert_one_line_error(run_cli("analyze", str(bad), "-f", "json", "-o", str(out)))
    assert out.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "out.json"]  # no temp file left


def test_variant_options_reach_the_spec_path():
    model = load_spec(MODELS / "conv_mobilenet.yaml")
    a = analyze(model, Settings(variants=("spatial",), options=VariantOptions(rank=16)))
    first = a.layers[1].variants["spatial"].plan.layers[0]
    assert first.out_channels == 16
