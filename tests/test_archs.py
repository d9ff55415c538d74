"""The locally built torchvision-style architectures are the published ones.

Benchmarks (latency, SVD) use `tests/archs.EXTRA_MODELS` as stand-ins for torchvision models, so
their conv/Linear MAC totals must equal torchvision's published `_ops` (GMACs at 224x224) and
torch's own FlopCounterMode on the same module.
"""

from __future__ import annotations

import pytest
import torch

from convcost.analysis.analyzer import analyze
from tests import archs


@pytest.mark.parametrize("name", sorted(archs.EXTRA_MODELS))
def test_extra_models_match_published_ops_and_flop_counter(name: str) -> None:
    factory, shape = archs.EXTRA_MODELS[name]
    module = factory().eval()
    total = analyze(archs.to_model(module, shape, name)).totals.macs
    assert round(total / 1e9, 3) == archs.PUBLISHED_GMACS[name]
    assert total == archs.flop_counter_macs(module, torch.zeros(shape))


def test_module_convs_carry_the_modules_weights() -> None:
    module = archs.resnet18()
    convs = archs.module_convs(module, torch.zeros(1, 3, 224, 224))
    assert len(convs) == 20
    first = convs[0]
    assert first.weight is not None
    assert (first.weight() == module.conv1.weight.detach().numpy()).all()
