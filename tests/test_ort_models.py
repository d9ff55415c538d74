"""The ONNX zoo (benchmarks/ort_models.py): each exported net runs in onnxruntime and computes
what the torch module computes (outputs compared on one random input), and files are cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import ort_models

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

#: The nets defined in the benchmark module, and one spec; the big archs are left to the benchmark.
NAMES = [*ort_models.OWN, "spec_m5_audio"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> list[ort_models.ZooModel]:
    return ort_models.export_zoo(tmp_path_factory.mktemp("zoo"), NAMES)


def test_catalog_covers_the_issue() -> None:
    catalog = ort_models.catalog()
    assert len(catalog) >= 22
    assert {f"spec_{p.stem}" for p in ort_models.SPECS.glob("*.yaml")} <= set(catalog)
    covered = {c for covers in ort_models.COVERS.values() for c in covers}
    assert {"upsample+concat", "1-D audio", "LSTM", "attention", "SE", "channel shuffle"} <= covered
    assert set(ort_models.COVERS) <= set(catalog)


def test_exported_nets_match_torch_in_onnxruntime(zoo: list[ort_models.ZooModel]) -> None:
    import onnxruntime as ort

    assert [m.name for m in zoo] == [n for n in ort_models.catalog() if n in NAMES]
    catalog = ort_models.catalog()
    for model in zoo:
        torch.manual_seed(0)
        module = catalog[model.name][0]()
        ort_models._init(module)
        x = torch.randn(model.input_shape)
        with torch.no_grad():
            out = module.eval()(x)
        expected = [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
        session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        assert [g.shape for g in got] == [e.shape for e in expected], model.name
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-4 * float(np.abs(e).max()), err_msg=model.name)


def test_existing_files_are_reused(zoo: list[ort_models.ZooModel]) -> None:
    folder = zoo[0].path.parent
    stamps = {m.path: m.path.stat().st_mtime_ns for m in zoo}
    again = ort_models.export_zoo(folder, NAMES)
    assert {m.path: m.path.stat().st_mtime_ns for m in again} == stamps
    with pytest.raises(KeyError, match="unknown zoo model"):
        ort_models.export_zoo(Path(folder), ["no_such_net"])
