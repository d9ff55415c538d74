"""The PyTorch side of apply: `factorize_module` swaps each chosen nn.ConvNd for an nn.Sequential of
its stages with the SVD weights (outputs compared here with the original module in torch), ready to
train; a plan made on the ONNX export names the same layers; `convcost apply` on module:factory
writes TorchScript or ONNX, on a TorchScript archive ONNX.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from convcost.export.pytorch import factorize_module
from convcost.util.errors import InputError
from tests.conftest import assert_one_line_error, invoke
from tests.factorize_models import torch_export


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((b.double() - a.double()).norm() / a.double().norm())


def seeded(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for p in module.parameters():
        nn.init.normal_(p, std=0.3)
    return module.eval()


EXACT = {
    # spatial at R >= min(C_in*k_h, C_out*k_w): exact for any kernel
    "spatial_reflect": (lambda: nn.Conv2d(4, 6, 3, stride=(2, 1), padding=(1, 2), dilation=(1, 2),
                                          padding_mode="reflect"), (1, 4, 11, 12), {"variant": "spatial", "rank": 12}),
    "spatial_same_even": (lambda: nn.Conv2d(3, 5, (4, 2), padding="same"), (1, 3, 9, 8),
                          {"variant": "spatial", "rank": 10}),
    "spatial_3d": (lambda: nn.Conv3d(2, 3, 3, padding=1), (1, 2, 5, 6, 6), {"variant": "spatial", "rank": 9}),
    # depthwise at m >= prod(k)
    "depthwise_transpose": (lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1),
                            (1, 4, 5, 5), {"variant": "depthwise", "depth_multiplier": 9}),
    "depthwise_1d": (lambda: nn.Conv1d(4, 8, 5, stride=2, padding=2, groups=2), (1, 4, 20),
                     {"variant": "depthwise", "depth_multiplier": 5}),
}


@pytest.mark.parametrize("case", list(EXACT))
def test_exact_factorizations_in_torch(case: str) -> None:
    make, shape, kwargs = EXACT[case]
    net = seeded(nn.Sequential(make()))
    factorized, report = factorize_module(net, report=True, **kwargs)
    assert len(report.replaced) == 1 and not report.kept
    assert isinstance(factorized[0], nn.Sequential) and len(factorized[0]) >= 2
    x = torch.randn(shape)
    with torch.no_grad():
        assert rel(net(x), factorized(x)) < 1e-5
    assert net[0].__class__ is not nn.Sequential  # a copy was changed, not the model given


def test_grouped_block_diagonal_with_hidden_permutation_is_exact_in_torch() -> None:
    net = seeded(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1)))
    with torch.no_grad():
        mask = torch.kron(torch.eye(4), torch.ones(2, 2))
        po, pi = torch.randperm(8), torch.randperm(8)
        net[0].weight.mul_(mask[:, :, None, None][po][:, pi])
    factorized, report = factorize_module(net, variant="grouped", groups=4, permute=True, report=True)
    assert report.replaced[0].weight_error < 1e-9
    x = torch.randn(1, 8, 7, 7)
    with torch.no_grad():
        assert rel(net(x), factorized(x)) < 1e-5


def test_stages_are_trainable_modules_with_names_under_the_conv() -> None:
    net = seeded(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)))
    factorized = factorize_module(net, variant="spatial", rank="auto", tol=0.3, skip=["0"])
    names = [n for n, m in factorized.named_modules() if isinstance(m, nn.Conv2d)]
    assert names == ["0", "2.0", "2.1"]
    assert factorized[2][0].kernel_size == (3, 1) and factorized[2][1].kernel_size == (1, 3)
    assert factorized[2][0].bias is None and factorized[2][1].bias is not None
    factorized.train()
    opt = torch.optim.SGD(factorized.parameters(), lr=0.01)
    x = torch.randn(4, 3, 8, 8)
    loss = factorized(x).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None for p in factorized[2].parameters())
    opt.step()


def test_a_plan_made_on_the_onnx_export_names_the_modules(tmp_path: Path) -> None:
    net = seeded(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
                               nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1, stride=2)))
    onnx_file = torch_export(net, torch.randn(1, 3, 16, 16), tmp_path / "net.onnx")
    plan = tmp_path / "plan.yaml"
    result = invoke("plan", str(onnx_file), "-d", "rpi4", "--max-error", "0.6", "-o", str(plan), "-f", "json")
    assert result.code == 0, result.err
    chosen = {layer["name"]: layer["error"] for layer in json.loads(result.out)["layers"] if layer["variant"]}
    assert chosen
    factorized, report = factorize_module(net, str(plan), report=True)
    assert {r.conv.name: r.weight_error for r in report.replaced} == pytest.approx(chosen, abs=1e-6)
    assert all(isinstance(factorized.get_submodule(name), nn.Sequential) for name in chosen)


def test_bad_plans_raise_input_error() -> None:
    net = seeded(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)))
    with pytest.raises(InputError, match="'nope' is not a conv"):
        factorize_module(net, {"nope": {"variant": "spatial", "rank": 2}})
    with pytest.raises(InputError, match="not a multiple of groups=2"):
        factorize_module(net, {"0": {"variant": "spatial", "rank": 3}})


# --- convcost apply on PyTorch models ------------------------------------------------------------------

@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("factory")
    (folder / "nets.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "def net():\n"
        "    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),\n"
        "                         nn.Conv2d(16, 16, 3, padding=1, groups=2), nn.ReLU(),\n"
        "                         nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1))\n")
    return f"{folder / 'nets.py'}:net"


@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_apply_on_module_factory(factory: str, suffix: str, tmp_path: Path) -> None:
    out = tmp_path / f"out{suffix}"
    result = invoke("apply", factory, "-i", "1x3x12x12", "-V", "spatial", "--rank", "8", "-o", str(out), "-f", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["totals"]["counts_match"] and out.exists()
    assert [layer["name"] for layer in doc["layers"]] == ["0", "3", "5"]
    assert all(a == b for a, b in ((s["original"], s["applied"]) for s in doc["proof"]["output_shapes"].values()))
    for layer in doc["layers"]:
        assert layer["output_error"] == pytest.approx(layer["weight_error"], rel=0.35, abs=1e-4)
    if suffix == ".pt":
        loaded = torch.jit.load(str(out))
        assert loaded(torch.randn(1, 3, 12, 12)).shape == (1, 8, 24, 24)
        assert doc["proof"]["runtime"].startswith("torch")


def test_torchscript_archives_are_written_as_onnx(factory: str, tmp_path: Path) -> None:
    from convcost.loaders.pytorch.factory import resolve_factory

    archive = tmp_path / "net.pt"
    module = resolve_factory(factory).eval()
    torch.jit.save(torch.jit.trace(module, torch.randn(1, 3, 12, 12)), str(archive))
    out = tmp_path / "out.onnx"
    result = invoke("apply", str(archive), "-i", "1x3x12x12", "-V", "depthwise", "-o", str(out), "-f", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["totals"]["counts_match"]
    assert_one_line_error(invoke("apply", str(archive), "-i", "1x3x12x12", "-V", "depthwise",
                                 "-o", str(tmp_path / "out.pt")), "cannot be swapped")
    assert_one_line_error(invoke("apply", factory, "-V", "depthwise", "-o", str(tmp_path / "x.onnx")), "-i")
