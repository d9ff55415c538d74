"""The locally built torchvision-style architectures are the published ones.

Benchmarks (latency, SVD) use `tests/archs.EXTRA_MODELS` as stand-ins for torchvision models, so
their conv/Linear MAC totals must equal torchvision's published `_ops` (GMACs at 224x224) and
torch's own FlopCounterMode on the same module.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from convcost.analysis.analyzer import analyze
from tests import archs


@pytest.mark.parametrize("name", sorted(archs.EXTRA_MODELS))
def test_extra_models_match_published_ops_and_flop_counter(name: str) -> None:
    factory, shape = archs.EXTRA_MODELS[name]
    module = factory().eval()
    total = analyze(archs.to_model(module, shape, name)).totals.macs
    assert round(total / 1e9, 3) == archs.PUBLISHED_GMACS[name]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.zeros(shape))
    assert total == counter.get_total_flops() // 2


def test_module_convs_carry_the_modules_weights() -> None:
    module = archs.resnet18()
    convs = archs.module_convs(module, torch.zeros(1, 3, 224, 224))
    assert len(convs) == 20
    first = convs[0]
    assert first.weight is not None
    assert (first.weight() == module.conv1.weight.detach().numpy()).all()
