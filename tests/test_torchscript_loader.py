"""TorchScript archives and `module:factory` models: names, per-layer MACs and totals checked
against independent counts (forward hooks, torch's FlopCounterMode, fvcore), and bad input."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convcost.analysis.analyzer import analyze
from convcost.cost import cost_of
from convcost.ir.model import Model
from convcost.loaders import detect, load_model
from convcost.loaders.pytorch.capture import capture
from convcost.loaders.pytorch.torchscript import load_torchscript
from convcost.util.errors import InputError
from tests import archs

ROOT = Path(__file__).resolve().parent.parent

#: Models of the issue's "done when" list, at small inputs (counts are exact at any size).
SMALL = {
    "resnet18": (archs.resnet18, (1, 3, 64, 64)),
    "mobilenet_v2": (archs.mobilenet_v2, (1, 3, 64, 64)),
    "shufflenet_v2_x1_0": (archs.shufflenet_v2_x1_0, (1, 3, 64, 64)),
    "audio1d": (archs.Audio1d, (2, 40, 101)),
    "video3d": (archs.Video3d, (1, 3, 8, 32, 32)),
    "decoder": (archs.Decoder, (1, 64, 14, 14)),
    "grouped_dilated": (archs.GroupedDilated, (1, 3, 64, 64)),
    "shared_conv": (archs.SharedConv, (1, 3, 16, 16)),
}
SCRIPTED = {"audio1d", "decoder"}  # torch.jit.script; the others torch.jit.trace


def base(name: str) -> str:
    return name.split("#")[0]


def conv_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)}


def per_layer_macs(model: Model) -> dict[str, int]:
    """Per-module MACs, repeated calls (NAME#k) summed as hooks and fvcore sum them."""
    out: dict[str, int] = {}
    for conv in model.convs:
        out[base(conv.name)] = out.get(base(conv.name), 0) + cost_of(conv).macs
    return out


def save_archive(name: str, folder: Path) -> tuple[nn.Module, Path, tuple[int, ...]]:
    factory, shape = SMALL[name]
    torch.manual_seed(0)
    model = factory().eval()
    path = folder / f"{name}.pt"
    with torch.no_grad():
        if name in SCRIPTED:
            ts = torch.jit.script(model)
        else:
            ts = torch.jit.trace(model, torch.zeros(shape), check_trace=False)
    ts.save(str(path))
    return model, path, shape


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("torchscript")


@pytest.fixture(scope="module")
def archives(folder: Path) -> dict[str, tuple[nn.Module, Path, tuple[int, ...]]]:
    return {name: save_archive(name, folder) for name in SMALL}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "convcost", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convcost: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- counts against independent sources ------------------------------------------------------

@pytest.mark.parametrize("name", list(SMALL))
def test_archive_names_macs_and_totals(name: str, archives: dict) -> None:
    eager, path, shape = archives[name]
    model = load_model(path, {"": shape})
    assert model.format == "torchscript"
    x = torch.zeros(shape)

    hooks = archs.conv_hook_macs(eager, x)
    # Names are named_modules() names; every conv module appears; MACs equal forward-hook counts.
    assert set(per_layer_macs(model)) == set(conv_modules(eager)) == set(hooks)
    assert per_layer_macs(model) == hooks
    assert list(dict.fromkeys(base(c.name) for c in model.convs)) == list(hooks)  # execution order

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        eager(x)
    result = analyze(model)
    assert 2 * result.totals.macs == counter.get_total_flops()
    assert result.totals.params == sum(p.numel() for p in eager.parameters())


@pytest.mark.parametrize("name", ["decoder", "grouped_dilated", "video3d", "audio1d"])
def test_conv_attributes_and_weights_match_the_modules(name: str, archives: dict) -> None:
    eager, path, shape = archives[name]
    model = load_model(path, {"": shape})
    modules = conv_modules(eager)
    for conv in model.convs:
        m = modules[base(conv.name)]
        assert isinstance(m, nn.modules.conv._ConvNd)
        assert conv.op == ("ConvTranspose" if m.transposed else "Conv")
        assert (conv.in_channels, conv.out_channels, conv.groups) == (m.in_channels, m.out_channels, m.groups)
        assert conv.kernel == m.kernel_size and conv.stride == m.stride and conv.dilation == m.dilation
        assert conv.padding == tuple(m.padding) * 2  # begin pads, then end pads
        assert conv.bias == (m.bias is not None)
        if m.transposed:
            assert conv.output_padding == m.output_padding
        assert conv.weight is not None
        np.testing.assert_array_equal(conv.weight(), m.weight.detach().numpy())


def test_shortcut_outputs_equal_computed_convs(archives: dict) -> None:
    """Convs are not computed by default (zeros of the predicted shape); computing them changes nothing."""
    for name in ("shufflenet_v2_x1_0", "decoder", "video3d"):
        _, path, shape = archives[name]
        kwargs = {"name": name, "source": str(path), "fmt": "torchscript", "what": "test", "eager": False}
        fast = capture(torch.jit.load(str(path)), {"": shape}, **kwargs)
        full = capture(torch.jit.load(str(path)), {"": shape}, compute_convs=True, **kwargs)
        assert fast.convs == full.convs and fast.matmuls == full.matmuls


def test_weight_sharing_call_index(archives: dict) -> None:
    eager, path, shape = archives["shared_conv"]
    for model in (load_model(path, {"": shape}), load_model("tests.archs:SharedConv", {"": shape})):
        assert [c.name for c in model.convs] == ["stem", "block.conv", "block.conv#1", "head"]
        assert cost_of(model.convs[1]).macs == cost_of(model.convs[2]).macs == 16 * 16 * 16 * 16 * 9
        assert any("block.conv x2" in w for w in model.warnings)
        # Shared weights count once, as PyTorch counts them.
        assert analyze(model).totals.params == sum(p.numel() for p in eager.parameters())


def test_tied_weights_are_named_by_their_first_owner(folder: Path) -> None:
    model = archs.TiedConvs().eval()
    path = folder / "tied.pt"
    torch.jit.trace(model, torch.zeros(1, 4, 8, 8)).save(str(path))
    loaded = load_model(path, {"": (1, 4, 8, 8)})
    assert [c.name for c in loaded.convs] == ["a", "a#1"]
    assert analyze(loaded).totals.params == sum(p.numel() for p in model.parameters()) == 4 * 4 * 9 + 4 + 4


# --- module:factory, and fvcore as the cross-check --------------------------------------------

@pytest.mark.parametrize("spec,shape", [
    ("tests.archs:resnet18", (1, 3, 64, 64)),
    ("tests.archs:Decoder", (1, 64, 14, 14)),
    ("tests.archs:Video3d", (1, 3, 8, 32, 32)),
    ("tests.archs:SharedConv", (1, 3, 16, 16)),
])
def test_factory_matches_fvcore_by_module(spec: str, shape: tuple[int, ...]) -> None:
    from fvcore.nn import FlopCountAnalysis

    model = load_model(spec, {"": shape})
    assert model.format == "pytorch" and model.name == spec.split(":")[1]
    torch.manual_seed(0)
    eager = getattr(archs, spec.split(":")[1])().eval()
    fca = FlopCountAnalysis(eager, torch.zeros(shape))
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_module = fca.by_module()
    ours = per_layer_macs(model)
    assert set(ours) == set(conv_modules(eager))
    assert ours == {name: by_module[name] for name in ours}  # fvcore counts MACs and calls them flops


def test_factory_from_a_file_path() -> None:
    model = load_model("tests/archs.py:Audio1d", {"": (2, 40, 101)})
    eager = archs.Audio1d().eval()
    assert per_layer_macs(model) == archs.conv_hook_macs(eager, torch.zeros(2, 40, 101))


def test_same_model_as_torchscript_onnx_and_factory(archives: dict, folder: Path) -> None:
    """One model three ways gives the same conv MACs per layer."""
    for name, spec in (("resnet18", "tests.archs:resnet18"), ("decoder", "tests.archs:Decoder"),
                       ("audio1d", "tests.archs:Audio1d")):
        eager, path, shape = archives[name]
        scripted = per_layer_macs(load_model(path, {"": shape}))
        factory = per_layer_macs(load_model(spec, {"": shape}))
        assert scripted == factory
        onnx_loader = pytest.importorskip("convcost.loaders.onnx.loader",
                                          reason="ONNX loader not on this branch (issue 4)")
        assert onnx_loader is not None
        onnx_path = folder / f"{name}.onnx"
        torch.onnx.export(eager, (torch.zeros(shape),), str(onnx_path), dynamo=False)
        onnx_model = load_model(onnx_path, {})
        # ONNX names its nodes differently; compare each layer by its MACs, kernel and groups.
        def signature(model: Model) -> Counter[tuple[int, tuple[int, ...], int]]:
            return Counter((cost_of(c).macs, c.kernel, c.groups) for c in model.convs)
        assert signature(onnx_model) == signature(load_model(path, {"": shape}))


# --- matrix multiplies -------------------------------------------------------------------------

class Mixer(nn.Module):
    """Linear, einsum with a parameter, bmm of two activations, and fused attention."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 32)
        self.proj = nn.Parameter(torch.randn(32, 8))
        self.conv = nn.Conv1d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)                                          # (2, 5, 32)
        a = torch.einsum("bld,de->ble", h, self.proj)           # (2, 5, 8)
        s = torch.bmm(a, a.transpose(1, 2))                     # (2, 5, 5)
        q = a.view(2, 5, 2, 4).transpose(1, 2)                  # (2, 2 heads, 5, 4)
        o = nn.functional.scaled_dot_product_attention(q, q, q)
        c = self.conv(a.transpose(1, 2))
        return s.sum() + o.sum() + c.sum()


def test_matmul_family(folder: Path) -> None:
    eager = Mixer().eval()
    x = torch.zeros(2, 5, 16)
    path = folder / "mixer.pt"
    torch.jit.trace(eager, x).save(str(path))
    model = load_model(path, {"": (2, 5, 16)})
    names = [m.name for m in model.matmuls]
    assert names[:2] == ["fc", "proj"]
    by_name = {m.name: m for m in model.matmuls}
    assert by_name["fc"].params == 16 * 32 + 32 and by_name["proj"].params == 32 * 8
    macs = {m.name: cost_of(m).macs for m in model.matmuls}
    assert macs["fc"] == 2 * 5 * 16 * 32 and macs["proj"] == 2 * 5 * 32 * 8
    attention = 2 * (2 * 2 * 5 * 5 * 4)  # Q K^T and A V: batch 2 x 2 heads, L = S = 5, E = 4
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        eager(x)
    # torch's counter skips the CPU fused-attention kernel; everything else is the same count.
    result = analyze(model)
    assert result.totals.macs == counter.get_total_flops() // 2 + attention
    assert result.totals.params == sum(p.numel() for p in eager.parameters())


def test_integer_inputs_for_embeddings(folder: Path) -> None:
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(100, 16)
            self.conv = nn.Conv1d(16, 32, 3)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.conv(self.embed(ids).transpose(1, 2))

    path = folder / "tokens.pt"
    torch.jit.script(Tokens().eval()).save(str(path))
    model = load_model(path, {"": (2, 10)})
    assert model.inputs == {"ids": (2, 10)}
    assert [(c.name, cost_of(c).macs) for c in model.convs] == [("conv", 2 * 32 * 8 * 16 * 3)]
    assert analyze(model).totals.params == 100 * 16 + 32 * 16 * 3 + 32


# --- inputs ---------------------------------------------------------------------------------

class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3)
        self.b = nn.Conv2d(1, 8, 1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.a(image).sum() + self.b(mask).sum()


def test_named_inputs(folder: Path) -> None:
    path = folder / "two.pt"
    torch.jit.script(TwoInputs().eval()).save(str(path))
    model = load_model(path, {"mask": (1, 1, 4, 4), "image": (1, 3, 10, 10)})
    assert model.inputs == {"image": (1, 3, 10, 10), "mask": (1, 1, 4, 4)}
    assert [c.input_shape for c in model.convs] == [(1, 3, 10, 10), (1, 1, 4, 4)]
    with pytest.raises(InputError, match="name each: -i NAME=SHAPE"):
        load_model(path, {"": (1, 3, 10, 10)})
    with pytest.raises(InputError, match="input 'mask' needs a shape"):
        load_model(path, {"image": (1, 3, 10, 10)})


def test_archive_carrying_its_input_shape(folder: Path) -> None:
    path = folder / "with_shape.pt"
    torch.jit.save(torch.jit.script(archs.Audio1d().eval()), str(path), _extra_files={"input_shape": "1x40x50"})
    model = load_model(path, None)
    assert model.inputs == {"x": (1, 40, 50)}
    assert model.convs[0].input_shape == (1, 40, 50)


def test_recognised_by_content_not_extension(archives: dict, folder: Path) -> None:
    _, path, _ = archives["audio1d"]
    renamed = folder / "weights.bin"
    renamed.write_bytes(path.read_bytes())
    assert detect(renamed).name == "torchscript"


# --- bad input: one line, exit 2 ----------------------------------------------------------------

def test_wrong_channels(archives: dict) -> None:
    _, path, _ = archives["resnet18"]
    line = assert_one_line_error(run_cli("analyze", str(path), "-i", "1x4x64x64"),
                                 str(path), "input x 1x4x64x64", "layer conv1", "3 channels")
    assert "TorchScript interpreter" not in line


def test_wrong_rank(archives: dict) -> None:
    _, path, _ = archives["video3d"]
    assert_one_line_error(run_cli("analyze", str(path), "-i", "1x3x32x32"), "input x 1x3x32x32", "layer stem",
                          "5-dimensional")


def test_missing_input_shape(archives: dict) -> None:
    _, path, _ = archives["audio1d"]
    assert_one_line_error(run_cli("analyze", str(path)), "-i is required", "forward takes: x")


def test_corrupt_archives(archives: dict, folder: Path) -> None:
    _, path, _ = archives["audio1d"]
    data = path.read_bytes()
    truncated = folder / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    assert_one_line_error(run_cli("analyze", str(truncated), "-i", "1x40x30"), "corrupt or truncated zip")
    flipped = bytearray(data)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("audio1d/data.pkl")
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + 10  # inside the pickle's bytes
    flipped[start:start + 8] = bytes(b ^ 0xFF for b in flipped[start:start + 8])
    damaged = folder / "damaged.pt"
    damaged.write_bytes(bytes(flipped))
    assert_one_line_error(run_cli("analyze", str(damaged), "-i", "1x40x30"), "Bad CRC-32", "data.pkl")


def test_file_from_a_newer_torch(archives: dict, folder: Path) -> None:
    _, path, _ = archives["audio1d"]
    newer = folder / "newer.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(newer, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, b"99\n" if info.filename.endswith("/version") else src.read(info.filename))
    assert_one_line_error(run_cli("analyze", str(newer), "-i", "1x40x30"), "newer PyTorch", "version 99")


class Payload:
    """Unpickling this would create `marker`: proof that convcost never unpickles."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def test_pickles_are_named_and_never_unpickled(folder: Path) -> None:
    marker = folder / "unpickled"
    model = archs.Audio1d()
    cases = {
        "full_model.pt": (lambda p: torch.save(model, p), ["torch.save() archive", "import tests.archs.Audio1d",
                                                           "torch.jit.trace", "module:factory"]),
        "state_dict.pt": (lambda p: torch.save(model.state_dict(), p), ["state dict", "module:factory"]),
        "legacy.pt": (lambda p: torch.save(model.state_dict(), p, _use_new_zipfile_serialization=False),
                      ["legacy torch.save", "state dict"]),
        "payload.pt": (lambda p: torch.save({"x": Payload(marker)}, p), ["import posix.mkdir"]),
        "payload.pkl": (lambda p: Path(p).write_bytes(pickle.dumps(Payload(marker), protocol=4)),
                        ["pickle", "import posix.mkdir"]),
    }
    for filename, (write, needles) in cases.items():
        path = folder / filename
        write(str(path))
        assert_one_line_error(run_cli("analyze", str(path), "-i", "1x40x30"), "not a TorchScript archive", *needles)
    assert not marker.exists()


def test_torch_export_archive_goes_to_the_pt2_loader(folder: Path) -> None:
    class Tiny(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    path = folder / "exported.pt2"
    torch.export.save(torch.export.export(Tiny(), (torch.zeros(2),)), str(path))
    assert load_model(path).format == "pt2"
    with pytest.raises(InputError, match="is a torch.export archive"):
        load_torchscript(path, {"": (2,)})


def test_factory_errors() -> None:
    cases = [
        ("nosuchmodule_xyz:build", ["no module named 'nosuchmodule_xyz'"]),
        ("tests.archs:nope", ["has no attribute 'nope'"]),
        ("tests.archs:MODELS", ["not a callable"]),
        ("tests.archs:conv_bn", ["calling conv_bn() failed", "TypeError"]),
        ("tests.archs:conv_hook_macs", ["calling conv_hook_macs() failed"]),
        ("tests/no_such_file.py:make", ["no such Python file"]),
    ]
    for spec, needles in cases:
        with pytest.raises(InputError) as info:
            load_model(spec, {"": (1, 3, 8, 8)})
        assert all(n in str(info.value) for n in needles), str(info.value)
    assert_one_line_error(run_cli("analyze", "tests.archs:resnet18", "-i", "1x3x64"), "tests.archs:resnet18",
                          "input x 1x3x64", "layer conv1")


def test_torch_missing_says_how_to_install(archives: dict) -> None:
    _, path, _ = archives["audio1d"]
    probe = ("import sys; sys.modules['torch'] = None\nfrom convcost.cli.app import main\n"
             f"main(['analyze', {str(path)!r}, '-i', '1x40x30'])")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert_one_line_error(proc, "pip install torch")


def test_torch_is_imported_only_on_this_path(folder: Path) -> None:
    spec = folder / "tiny.yaml"
    spec.write_text("name: tiny\ninput: [1, 3, 8, 8]\nlayers:\n  - {name: c, type: conv, out: 4, kernel: 3}\n")
    state = folder / "refused.pt"
    torch.save({"w": torch.zeros(2)}, str(state))
    probe = ("import sys\nfrom convcost.cli.app import main\nfor args in ({!r}, {!r}, {!r}):\n"
             "    try: main(args)\n    except SystemExit: pass\n"
             "print('torch' in sys.modules, file=sys.stderr)")
    args = (["--help"], ["analyze", str(spec), "-f", "json"], ["analyze", str(state)])
    proc = subprocess.run([sys.executable, "-c", probe.format(*args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr


def test_cli_json(archives: dict) -> None:
    eager, path, shape = archives["grouped_dilated"]
    proc = run_cli("analyze", str(path), "-i", "x".join(map(str, shape)), "-f", "json", "-V", "none")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["model"]["format"] == "torchscript" and data["model"]["inputs"] == {"x": list(shape)}
    assert [layer["name"] for layer in data["layers"]] == list(archs.conv_hook_macs(eager, torch.zeros(shape)))
    assert data["totals"]["params"] == sum(p.numel() for p in eager.parameters())


USER_FILE = '''
import warnings
import torch
from torch import nn
from torch.nn.utils import parametrizations

warnings.warn("import-time warning", DeprecationWarning)


class Model(nn.Module):
    """Computed weights (weight norm) and an even-kernel 'same' conv, which makes torch warn."""

    def __init__(self):
        super().__init__()
        self.normed = parametrizations.weight_norm(nn.Conv2d(3, 8, 3))
        self.same = nn.Conv2d(8, 8, 4, padding="same")
        self.rnn = nn.LSTM(8, 16, batch_first=True)

    def forward(self, x):
        y = self.same(self.normed(x))                       # (1, 8, 14, 14)
        seq, _ = self.rnn(y.flatten(2).transpose(1, 2))     # (1, 196, 16)
        return seq
'''


def test_factory_file_with_computed_weights_warnings_and_lstm(folder: Path) -> None:
    path = folder / "user_model.py"
    path.write_text(USER_FILE)
    proc = run_cli("analyze", f"{path}:Model", "-i", "1x3x16x16", "-f", "json", "-V", "none")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    data = json.loads(proc.stdout)
    layers = {layer["name"]: layer for layer in data["layers"]}
    # The weight-normed conv's weight is computed, not a parameter: named by the module running it.
    assert list(layers) == ["normed", "same"]
    assert layers["normed"]["macs"] == 8 * 14 * 14 * 3 * 9
    assert layers["same"]["macs"] == 8 * 14 * 14 * 8 * 16
    sys.path.insert(0, str(folder))
    try:
        import user_model  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(folder))
    eager = user_model.Model()
    assert data["totals"]["params"] == sum(p.numel() for p in eager.parameters())
    lstm = 196 * 4 * 16 * (8 + 16)  # per step: 4 gates x hidden x (input + hidden)
    uncosted = data["totals"]["uncosted_ops"]
    if uncosted:  # the CPU build runs LSTMs as one oneDNN op convcost does not price: it says so
        assert any("rnn" in op or "lstm" in op for op in uncosted), uncosted
    else:  # without oneDNN the LSTM decomposes into matmuls, which are counted
        assert data["totals"]["matmul_macs"] == lstm
