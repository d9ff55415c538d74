"""torch.export archives (`.pt2`): counts, names, shapes and weights read from the archive's JSON and
raw tensors, checked against the eager modules (forward hooks, FlopCounterMode, named_modules(),
parameters()) and against the TorchScript loader; bad and malicious archives."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.export import Dim
from torch.utils.flop_counter import FlopCounterMode

from convcost.analysis.analyzer import analyze
from convcost.cost import cost_of
from convcost.ir.model import Model
from convcost.loaders import detect, load_model
from convcost.loaders.pt2.ops import einsum_dims, matmul_dims
from convcost.loaders.pt2.symbols import Unresolved, check_guard, evaluate
from convcost.util.errors import InputError
from tests import archs

ROOT = Path(__file__).resolve().parent.parent


class Heads(nn.Module):
    """Every matmul form and 'same'/'valid' padding: Linear on 3-D input, @, bmm, einsum, attention."""

    def __init__(self) -> None:
        super().__init__()
        self.same_odd = nn.Conv2d(3, 8, 3, padding="same")
        self.same_even = nn.Conv2d(8, 8, 4, padding="same", dilation=2, bias=False)
        self.valid = nn.Conv2d(8, 16, 3, padding="valid")
        self.proj = nn.Linear(16, 24)
        self.head = nn.Linear(24, 10)
        self.w = nn.Parameter(torch.randn(24, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.valid(self.same_even(self.same_odd(x)))            # (B, 16, 6, 6)
        t = self.proj(y.flatten(2).transpose(1, 2))                 # Linear on (B, 36, 16)
        a = torch.nn.functional.scaled_dot_product_attention(t.unsqueeze(1), t.unsqueeze(1), t.unsqueeze(1))
        a = a.squeeze(1)                                            # (B, 36, 24)
        g = torch.bmm(a, a.transpose(1, 2))                         # (B, 36, 36)
        e = torch.einsum("bqk,bkd->bqd", g, a)                      # (B, 36, 24)
        f = torch.einsum("...d,de->...e", e, self.w)                # (B, 36, 6) with a parameter
        h = e @ a.transpose(1, 2)[0]                                # (B, 36, 24) @ (24, 36): folded mm
        return self.head(e.mean(1)) + f.sum() + h.sum()


#: name -> (factory, example input shape)
NETS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "resnet_block": (lambda: archs.BasicBlock(16, 32, stride=2), (1, 16, 16, 16)),
    "inverted_residual": (lambda: archs.InvertedResidual(16, 16, 1, 6), (2, 16, 12, 12)),
    "audio1d": (archs.Audio1d, (2, 40, 101)),
    "decoder": (archs.Decoder, (1, 64, 7, 7)),
    "grouped_dilated": (archs.GroupedDilated, (1, 3, 32, 32)),
    "shared_conv": (archs.SharedConv, (1, 3, 16, 16)),
    "video3d": (archs.Video3d, (1, 3, 4, 16, 16)),
    "resnet18": (archs.resnet18, (1, 3, 64, 64)),
    "heads": (Heads, (2, 3, 12, 12)),
}


def export(module: nn.Module, shape: tuple[int, ...], path: Path, decompose: bool = False,
           dynamic_shapes: object = None, dtype: torch.dtype = torch.float32) -> Path:
    with torch.no_grad():
        ep = torch.export.export(module, (torch.zeros(shape, dtype=dtype),), dynamic_shapes=dynamic_shapes)
    torch.export.save(ep.run_decompositions() if decompose else ep, str(path))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pt2")


@pytest.fixture(scope="module")
def nets(folder: Path) -> dict[str, tuple[nn.Module, Path, tuple[int, ...]]]:
    out = {}
    for name, (factory, shape) in NETS.items():
        torch.manual_seed(0)
        module = factory().eval()
        out[name] = (module, export(module, shape, folder / f"{name}.pt2"), shape)
    return out


@pytest.fixture(scope="module")
def decomposed(nets: dict, folder: Path) -> dict[str, Path]:
    """The same programs after run_decompositions(): aten.convolution, addmm on permuted weights, bmm."""
    return {name: export(nets[name][0], nets[name][2], folder / f"{name}_aten.pt2", decompose=True)
            for name in ("resnet18", "decoder", "audio1d", "heads")}


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "convcost", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convcost: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def base(name: str) -> str:
    return name.split("#")[0]


def per_layer_macs(model: Model) -> dict[str, int]:
    out: dict[str, int] = {}
    for conv in model.convs:
        out[base(conv.name)] = out.get(base(conv.name), 0) + cost_of(conv).macs
    return out


def linear_hook_macs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Per-nn.Linear MACs from forward hooks: rows x in_features x out_features."""
    counts: dict[str, int] = {}
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor, name: str = name) -> None:
                assert isinstance(m, nn.Linear)
                counts[name] = counts.get(name, 0) + inp[0].numel() * m.out_features
            handles.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return counts



def attention_macs(model: nn.Module, x: torch.Tensor) -> int:
    """softmax(QK^T)V by hand for every scaled_dot_product_attention call (FlopCounterMode skips the CPU kernel)."""
    total = 0
    original = torch.nn.functional.scaled_dot_product_attention

    def counting(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        nonlocal total
        batch = q.numel() // (q.shape[-2] * q.shape[-1])
        total += batch * q.shape[-2] * q.shape[-1] * k.shape[-2] + batch * q.shape[-2] * k.shape[-2] * v.shape[-1]
        return original(q, k, v, *args, **kwargs)  # type: ignore[arg-type]

    torch.nn.functional.scaled_dot_product_attention = counting
    try:
        with torch.no_grad():
            model(x)
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
    return total


# --- counts against independent sources ------------------------------------------------------

@pytest.mark.parametrize("name", list(NETS))
def test_names_macs_and_totals_equal_the_eager_module(name: str, nets: dict) -> None:
    eager, path, shape = nets[name]
    model = load_model(path)  # no -i: the archive's example input
    assert model.format == "pt2" and model.name == name
    assert list(model.inputs.values()) == [shape]
    x = torch.zeros(shape)
    hooks = archs.conv_hook_macs(eager, x)
    convs = {n for n, m in eager.named_modules() if isinstance(m, nn.modules.conv._ConvNd)}
    assert set(per_layer_macs(model)) == convs == set(hooks)  # named_modules() names
    assert per_layer_macs(model) == hooks
    assert list(dict.fromkeys(base(c.name) for c in model.convs)) == list(hooks)  # execution order
    linears = linear_hook_macs(eager, x)
    ours = {m.name: cost_of(m).macs for m in model.matmuls if m.op == "Linear"}
    assert {n: ours[n] for n in linears} == linears
    result = analyze(model)
    assert result.totals.macs == archs.flop_counter_macs(eager, x) + attention_macs(eager, x)
    assert result.totals.params == sum(p.numel() for p in eager.parameters())
    assert not model.uncounted and not model.uncosted


@pytest.mark.parametrize("name", ["resnet18", "decoder", "audio1d", "heads"])
def test_decomposed_programs_count_the_same(name: str, nets: dict, decomposed: dict) -> None:
    """After run_decompositions() the convs are aten.convolution and a Linear is addmm(bias, x, permute(w))."""
    training = load_model(nets[name][1])
    aten = load_model(decomposed[name])
    assert [(c.name, cost_of(c).macs) for c in aten.convs] == [(c.name, cost_of(c).macs) for c in training.convs]
    assert analyze(aten).totals.macs == analyze(training).totals.macs
    linear = {m.name: cost_of(m).macs for m in training.matmuls if m.op == "Linear"}
    assert {m.name: cost_of(m).macs for m in aten.matmuls if m.op == "Linear"} == linear


@pytest.mark.parametrize("name", ["shared_conv", "resnet18", "decoder"])
def test_names_equal_the_torchscript_loaders(name: str, nets: dict, folder: Path) -> None:
    eager, path, shape = nets[name]
    ts = folder / f"{name}.pt"
    with torch.no_grad():
        torch.jit.trace(eager, torch.zeros(shape), check_trace=False).save(str(ts))
    scripted, exported = load_model(ts, {"": shape}), load_model(path)
    assert [c.name for c in exported.convs] == [c.name for c in scripted.convs]
    assert [(m.name, m.op, cost_of(m).macs) for m in exported.matmuls] == \
        [(m.name, m.op, cost_of(m).macs) for m in scripted.matmuls]


def test_strict_export_names_the_same(nets: dict, folder: Path) -> None:
    """strict=True (TorchDynamo) keys nn_module_stack by object id; the path is the same."""
    eager, path, shape = nets["decoder"]
    with torch.no_grad():
        ep = torch.export.export(eager, (torch.zeros(shape),), strict=True)
    torch.export.save(ep, str(folder / "strict.pt2"))
    strict = load_model(folder / "strict.pt2")
    assert [(c.name, cost_of(c).macs) for c in strict.convs] == \
        [(c.name, cost_of(c).macs) for c in load_model(path).convs]


def test_repeated_calls_get_call_indices(nets: dict) -> None:
    model = load_model(nets["shared_conv"][1])
    assert [c.name for c in model.convs] == ["stem", "block.conv", "block.conv#1", "head"]
    assert any("block.conv x2" in w for w in model.warnings)


def test_tied_weights_are_named_by_their_first_owner_and_counted_once(folder: Path) -> None:
    module = archs.TiedConvs().eval()
    model = load_model(export(module, (1, 4, 8, 8), folder / "tied.pt2"))
    assert [c.name for c in model.convs] == ["a", "a#1"]  # as the TorchScript loader names them
    assert analyze(model).totals.params == sum(p.numel() for p in module.parameters()) == 4 * 4 * 9 + 4 + 4


def test_conv_attributes_and_raw_weights_match_the_modules(nets: dict) -> None:
    for name in ("decoder", "grouped_dilated", "audio1d", "video3d", "heads"):
        eager = nets[name][0]
        modules = dict(eager.named_modules())
        for conv in load_model(nets[name][1]).convs:
            m = modules[base(conv.name)]
            assert isinstance(m, nn.modules.conv._ConvNd)
            assert conv.op == ("ConvTranspose" if m.transposed else "Conv")
            assert (conv.in_channels, conv.out_channels, conv.groups) == (m.in_channels, m.out_channels, m.groups)
            assert conv.kernel == m.kernel_size and conv.stride == m.stride and conv.dilation == m.dilation
            assert conv.bias == (m.bias is not None)
            if m.transposed:
                assert conv.output_padding == m.output_padding
            assert conv.weight is not None
            np.testing.assert_array_equal(conv.weight(), m.weight.detach().numpy())


def test_same_padding_puts_the_odd_pixel_at_the_end(nets: dict) -> None:
    convs = {c.name: c for c in load_model(nets["heads"][1]).convs}
    assert convs["same_odd"].padding == (1, 1, 1, 1)
    assert convs["same_even"].padding == (3, 3, 3, 3)  # dilation 2 x (4 - 1) = 6 per axis
    assert convs["valid"].padding == (0, 0, 0, 0)
    assert convs["same_even"].output_shape == (2, 8, 12, 12)


def test_unbatched_conv_inputs(folder: Path) -> None:
    class Unbatched(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.up = nn.ConvTranspose1d(8, 4, 3, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.up(self.conv(x).flatten(1))  # (3, 8, 8) -> (8, 6, 6) -> (8, 36) -> (4, 73)

    module = Unbatched().eval()
    model = load_model(export(module, (3, 8, 8), folder / "unbatched.pt2"))
    assert [(c.input_shape, c.output_shape) for c in model.convs] == [((1, 3, 8, 8), (1, 8, 6, 6)),
                                                                      ((1, 8, 36), (1, 4, 73))]
    assert analyze(model).totals.macs == archs.flop_counter_macs(module, torch.zeros(3, 8, 8))


def test_fp16_export_is_priced_in_fp16_and_reads_its_weights(folder: Path) -> None:
    torch.manual_seed(0)
    module = archs.conv_bn(3, 8).half().eval()
    path = export(module, (1, 3, 8, 8), folder / "half.pt2", dtype=torch.half)
    (conv,) = load_model(path).convs
    assert conv.dtype == "float16"
    assert cost_of(conv).weight_bytes == 8 * 3 * 9 * 2
    assert conv.weight is not None
    np.testing.assert_array_equal(conv.weight(), module[0].weight.detach().float().numpy())


# --- input shapes ------------------------------------------------------------------------------

def test_minus_i_equal_to_the_export_shape_is_accepted(nets: dict) -> None:
    _, path, shape = nets["audio1d"]
    assert load_model(path, {"": shape}).convs == load_model(path).convs
    assert load_model(path, {"x": shape}).inputs == {"x": shape}


def test_minus_i_cannot_change_a_static_dim(nets: dict) -> None:
    path = nets["audio1d"][1]
    with pytest.raises(InputError, match=r"axis 2 of x is fixed at 101 in this archive .*dynamic_shapes"):
        load_model(path, {"": (2, 40, 200)})
    with pytest.raises(InputError, match="has 3 dims in this archive"):
        load_model(path, {"": (2, 40)})
    with pytest.raises(InputError, match="has no input 'image'"):
        load_model(path, {"image": (2, 40, 101)})
    proc = run_cli("analyze", str(path), "-i", "1x40x101")
    assert_one_line_error(proc, "axis 0 of x is fixed at 2")


@pytest.fixture(scope="module")
def dynamic(folder: Path) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    module = archs.resnet18().eval()
    dims = ({0: Dim("batch", min=1, max=16), 2: Dim("h", min=64, max=256), 3: Dim.AUTO},)
    return module, export(module, (2, 3, 64, 96), folder / "dynamic.pt2", dynamic_shapes=dims)


@pytest.mark.parametrize("shape", [(2, 3, 64, 96), (1, 3, 128, 64), (3, 3, 65, 33)])
def test_dynamic_dims_take_any_size_in_their_range(shape: tuple[int, ...], dynamic: tuple) -> None:
    eager, path = dynamic
    model = load_model(path, {"": shape})
    x = torch.zeros(shape)
    assert per_layer_macs(model) == archs.conv_hook_macs(eager, x)
    assert analyze(model).totals.macs == archs.flop_counter_macs(eager, x)


def test_dynamic_archive_without_minus_i_uses_its_example(dynamic: tuple) -> None:
    eager, path = dynamic
    model = load_model(path)
    assert model.inputs == {"x": (2, 3, 64, 96)}
    assert analyze(model).totals.macs == archs.flop_counter_macs(eager, torch.zeros(2, 3, 64, 96))


def test_dynamic_dims_outside_the_range_or_guards_are_refused(dynamic: tuple) -> None:
    path = dynamic[1]
    with pytest.raises(InputError, match=r"axis 2 of x must be in 64\.\.256"):
        load_model(path, {"": (1, 3, 32, 96)})
    with pytest.raises(InputError, match=r"axis 1 of x is fixed at 3"):
        load_model(path, {"": (1, 4, 64, 96)})
    # Width 20 is in the exported range (2..) but breaks a guard torch recorded: the last stage
    # needs (w - 1) // 32 + 1 != 1.
    with pytest.raises(InputError, match="a guard recorded at export"):
        load_model(path, {"": (1, 3, 64, 20)})


# --- what is not counted, and fails closed -----------------------------------------------------

def test_ops_without_a_formula_are_uncounted_or_uncosted(folder: Path) -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(8, 8, 3)
            self.bil = nn.Bilinear(8, 8, 4)
            self.lstm = nn.LSTM(8, 8, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x).transpose(1, 2)
            out, _ = self.lstm(y)
            three = torch.einsum("bi,bj,bk->bijk", y[:, 0], y[:, 1], y[:, 2])
            return self.bil(out, out).sum() + three.sum()

    path = export(Odd().eval(), (2, 8, 10), folder / "odd.pt2")
    model = load_model(path)
    assert [c.name for c in model.convs] == ["conv"]
    assert {(u.name, u.op) for u in model.uncounted} == {("bil", "aten.bilinear"), ("einsum", "aten.einsum")}
    assert model.uncosted == {"aten.bilinear": 1, "aten.lstm": 1, "aten.einsum": 1}
    assert any(w.startswith("not counted: einsum: an einsum of 3 operands") for w in model.warnings)


def test_data_dependent_sizes_are_uncounted(folder: Path) -> None:
    class Gather(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 4)
            self.conv = nn.Conv1d(8, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x[torch.nonzero(x[:, 0] > 0).squeeze(1)]  # (u0, 8): rows known only at run time
            return self.fc(y).sum() + self.conv(y.t().unsqueeze(0)).sum()

    model = load_model(export(Gather().eval(), (4, 8), folder / "gather.pt2"))
    assert model.convs == [] and model.matmuls == []
    assert [(u.name, u.op) for u in model.uncounted] == [("fc", "aten.linear"), ("conv", "aten.conv1d")]
    assert all("data-dependent" in u.why for u in model.uncounted)
    assert model.uncosted == {"aten.linear": 1, "aten.conv1d": 1}


def test_convs_in_control_flow_are_uncounted(folder: Path) -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3)
            self.b = nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cond(x.sum() > 0, lambda t: self.a(t).sum(), lambda t: self.b(t).sum(), (x,))

    path = export(Branchy().eval(), (1, 3, 8, 8), folder / "cond.pt2")
    model = load_model(path)
    assert model.convs == []
    assert [(u.name, u.op) for u in model.uncounted] == [("cond/true_graph_0/conv2d", "aten.conv2d"),
                                                         ("cond/false_graph_0/conv2d", "aten.conv2d")]
    assert all(u.why.startswith("inside torch.cond (") for u in model.uncounted)
    assert model.uncosted == {"torch.cond": 1}
    assert sum("not counted: cond/" in w for w in model.warnings) == 2


# --- what a .pt2 is, and what it is not --------------------------------------------------------

def test_detection_by_content(nets: dict, folder: Path) -> None:
    path = nets["audio1d"][1]
    renamed = folder / "renamed.bin"
    renamed.write_bytes(path.read_bytes())
    assert detect(renamed).name == "pt2"
    # A TorchScript archive named .pt2 stays TorchScript.
    ts = folder / "scripted.pt2"
    torch.jit.trace(nets["audio1d"][0], torch.zeros(nets["audio1d"][2])).save(str(ts))
    assert detect(ts).name == "torchscript"
    assert load_model(ts, {"": nets["audio1d"][2]}).format == "torchscript"


@pytest.mark.parametrize("members,needles", [
    ({"notes/readme.txt": b"hello"}, ["not a torch.export (.pt2) archive", "notes/readme.txt"]),
    ({"m/archive_format": b"pt2", "m/data/aotinductor/model/model.so": b"\x7fELF"}, ["AOTInductor package"]),
    ({"m/archive_format": b"pt2", "m/version": b"0"}, ["without an exported program"]),
    ({"m/archive_format": b"zip"}, ["says 'zip', not 'pt2'"]),
])
def test_a_zip_that_is_not_a_readable_pt2_exits_2(members: dict[str, bytes], needles: list[str], folder: Path) -> None:
    path = folder / "other.pt2"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    assert_one_line_error(run_cli("analyze", str(path)), *needles)


def test_several_programs_in_one_archive(nets: dict, folder: Path) -> None:
    path = nets["audio1d"][1]
    top = path.stem
    with zipfile.ZipFile(path) as zf:
        program = zf.read(f"{top}/models/model.json")
    renamed = rewrite(path, folder / "renamed_program.pt2", lambda n, d: None if n.endswith("/model.json") else d,
                      {f"{top}/models/encoder.json": program})
    assert load_model(renamed).convs == load_model(path).convs  # the one program, whatever its name
    two = rewrite(renamed, folder / "two_programs.pt2", lambda n, d: d, {f"{top}/models/decoder.json": program})
    with pytest.raises(InputError, match=r"holds 2 exported programs \(decoder, encoder\)"):
        load_model(two)


def test_legacy_archive_is_counted_without_its_pickled_weights(nets: dict, folder: Path) -> None:
    """torch <= 2.7 wrote serialized_exported_program.json beside torch.save pickles."""
    eager, path, shape = nets["decoder"]
    with zipfile.ZipFile(path) as zf:
        program = zf.read(f"{path.stem}/models/model.json")
    legacy = folder / "legacy.pt2"
    with zipfile.ZipFile(legacy, "w") as zf:
        zf.writestr("serialized_exported_program.json", program)
        zf.writestr("serialized_state_dict.pt", pickle.dumps(Evil(folder / "legacy_pwned")))
        zf.writestr("version", "8.20")
    model = load_model(legacy)
    assert per_layer_macs(model) == archs.conv_hook_macs(eager, torch.zeros(shape))
    assert all(c.weight is None for c in model.convs)
    assert any("stored pickled" in w for w in model.warnings)
    assert not (folder / "legacy_pwned").exists()


def rewrite(src: Path, dst: Path, change: Callable[[str, bytes], bytes | None], add: dict[str, bytes] | None = None
            ) -> Path:
    """Copy a zip, passing each member through `change` (None drops it), then adding `add`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dst


class Evil:
    """Unpickling this runs `open(marker, "w")`: the file appearing means the pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def test_pickled_members_are_never_unpickled(nets: dict, folder: Path) -> None:
    eager, path, shape = nets["resnet_block"]
    marker = folder / "pwned"
    evil = pickle.dumps(Evil(marker))
    top = path.stem

    # The payload is live: plain pickle.loads creates the marker.
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"], input=evil,
                   check=True, timeout=60)
    assert marker.exists()
    marker.unlink()

    def poison(name: str, data: bytes) -> bytes:
        if name.endswith("sample_inputs/model.pt"):
            return evil
        if name.endswith("model_weights_config.json"):  # the first weight now claims to be a pickle
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("weights/weight_0"):
            return evil
        return data

    added = {f"{top}/data/constants/tensor_0": evil, f"{top}/extra/x.pkl": evil}
    bad = rewrite(path, folder / "evil.pt2", poison, added)
    proc = run_cli("analyze", str(bad), "-f", "json")
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    result = json.loads(proc.stdout)
    assert result["model"]["format"] == "pt2"
    assert 2 * result["totals"]["macs"] == 2 * archs.flop_counter_macs(eager, torch.zeros(shape))
    assert not marker.exists()

    # A damaged graph JSON is one line, exit 2, and still unpickles nothing.
    broken = rewrite(bad, folder / "broken.pt2", lambda n, d: d[: len(d) // 2] if n.endswith("/model.json") else d)
    assert_one_line_error(run_cli("analyze", str(broken)), "not valid JSON")
    assert not marker.exists()


def test_analyze_does_not_import_torch(nets: dict) -> None:
    code = ("import runpy, sys\n"
            f"sys.argv = ['convcost', 'analyze', {str(nets['resnet_block'][1])!r}, '-f', 'json']\n"
            "try:\n    runpy.run_module('convcost', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_tampered_weight_layout_is_refused_not_read_out_of_bounds(nets: dict, folder: Path) -> None:
    path = nets["audio1d"][1]

    def stretch(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            meta = config["config"]["conv1.weight"]["tensor_meta"]
            meta["strides"][0] = {"as_int": 10**6}
            return json.dumps(config).encode()
        return data

    model = load_model(rewrite(path, folder / "stretched.pt2", stretch))
    conv1 = model.convs[0]
    assert conv1.weight is not None
    with pytest.raises(InputError, match="cannot hold"):
        conv1.weight()


# --- the pieces --------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("Add(FloorDiv(Add(Symbol('s0', positive=True, integer=True), Integer(-1)), Integer(2)), Integer(1))", 50),
    ("((s0 - 1)//2) + 1", 50),
    ("Mul(Integer(2), Symbol('s0', integer=True))", 200),
    ("Max(1, Min(s0, 64))", 64),
    ("CeilToInt(IntTrueDiv(s0, 3))", 34),
    ("Mod(s0, 7)", 2),
])
def test_size_expressions(text: str, value: int) -> None:
    assert evaluate(text, {"s0": 100}) == value


@pytest.mark.parametrize("text", ["__import__('os').system('true')", "s1 + 1", "s0.bit_length()", "9**9**9",
                                  "(lambda: 1)()", "s0 / 3", "x" * 30_000])
def test_size_expressions_outside_the_whitelist_are_unresolved(text: str) -> None:
    with pytest.raises(Unresolved):
        evaluate(text, {"s0": 100})


def test_guards() -> None:
    def size_of(name: str, axis: int) -> int | None:
        return {"x": (1, 3, 64, 20)}.get(name, (0,) * 4)[axis]

    assert check_guard("(1 + (((-1) + L['x'].size()[3]) // 32)) != 1", size_of) is False
    assert check_guard("L['x'].size()[2] >= 64 and L['x'].shape[1] == 3", size_of) is True
    assert check_guard("torch.sym_max(L['x'].size()[3], 2) > 1", size_of) is None


@pytest.mark.parametrize("a,b", [
    ((2, 3, 4), (4, 5)),        # folded into one mm
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((2, 1, 3, 4), (5, 4, 6)),  # broadcast batch: bmm over 2 x 5
    ((4,), (2, 4, 5)),
    ((3, 4), (2, 4, 5)),
])
def test_matmul_macs_equal_flop_counter(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    dims = matmul_dims(a, b)
    assert dims is not None
    with FlopCounterMode(display=False) as counter:
        torch.ones(a) @ torch.ones(b)
    assert 2 * math.prod(dims) == counter.get_total_flops()


def test_matrix_vector_products_by_hand() -> None:
    """FlopCounterMode has no formula for dot and mv; one MAC per multiplied pair."""
    assert matmul_dims((24,), (24,)) == (1, 1, 24, 1)
    assert matmul_dims((2, 3, 24), (24,)) == (1, 6, 24, 1)
    assert matmul_dims((3, 4), (5, 6)) is None


@pytest.mark.parametrize("equation,shapes", [
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("bhqd,bhkd->bhqk", [(2, 4, 5, 8), (2, 4, 7, 8)]),
    ("...ij,jk->...ik", [(2, 3, 4, 5), (5, 6)]),
    ("bi,bj->bij", [(3, 4), (3, 5)]),  # no contraction: an elementwise product, no MACs
    ("ij,ij->i", [(3, 4), (3, 4)]),
    ("bik,bjk->b", [(2, 3, 4), (2, 5, 4)]),
])
def test_einsum_macs_equal_flop_counter(equation: str, shapes: list[tuple[int, ...]]) -> None:
    dims = einsum_dims(equation, shapes)
    assert dims is not None
    tensors = [torch.ones(s) for s in shapes]
    with FlopCounterMode(display=False) as counter:
        torch.einsum(equation, *tensors)
    batch, m, k, n = dims
    assert 2 * batch * m * k * n == counter.get_total_flops()
