"""Distribution of the optimal approximation error per variant on real trained CNNs.

The models are the trained ONNX files shipped inside two PyPI wheels (nothing is downloaded
at run time): NudeNet 3.4.2 (`nudenet/320n.onnx`, a YOLOv8n detector) and RapidOCR-onnxruntime
1.4.4 (PP-OCRv4 text detection and recognition, PP-OCR mobile v2 direction classifier).
The convs and their weights are read here with `onnx` directly (initializers and Constant
nodes), so the script does not depend on convcost's ONNX loader.

Re-run:
    pip download --no-deps nudenet==3.4.2 rapidocr-onnxruntime==1.4.4 -d /tmp/wheels
    python -m benchmarks.approx_trained /tmp/wheels/*.whl
(or pass .onnx files; with the packages installed, no argument is needed).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from convcost.cost import cost_of
from convcost.ir.model import Conv
from convcost.ir.shapes import make_conv
from convcost.variants import plan_variant
from convcost.variants.approximator import Approximator
from convcost.variants.autorank import AutoRank
from convcost.variants.base import VariantOptions

#: package -> ONNX files inside it
SHIPPED = {
    "nudenet": ["320n.onnx"],
    "rapidocr_onnxruntime": ["models/ch_PP-OCRv4_det_infer.onnx", "models/ch_PP-OCRv4_rec_infer.onnx",
                             "models/ch_ppocr_mobile_v2.0_cls_infer.onnx"],
}


def onnx_convs(model: onnx.ModelProto, spatial: int = 64) -> list[Conv]:
    """Every Conv/ConvTranspose with a constant weight, on a nominal input (shapes do not
    change the errors; they only matter for MACs)."""
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    convs = []
    for i, node in enumerate(model.graph.node):
        if node.op_type not in ("Conv", "ConvTranspose") or node.input[1] not in consts:
            continue
        w = consts[node.input[1]].astype(np.float64)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        rank, groups = w.ndim - 2, int(attrs.get("group", 1))
        transposed = node.op_type == "ConvTranspose"
        c_in = w.shape[0] if transposed else w.shape[1] * groups
        c_out = w.shape[1] * groups if transposed else w.shape[0]
        conv = make_conv(
            name=node.name or f"conv{i}", op=node.op_type, input_shape=(1, c_in, *[spatial] * rank),
            out_channels=c_out, kernel=w.shape[2:], stride=attrs.get("strides"), padding=attrs.get("pads"),
            dilation=attrs.get("dilations"), groups=groups, bias=len(node.input) > 2,
            output_padding=attrs.get("output_padding") if transposed else None,
        )
        convs.append(conv.with_changes(weight=lambda w=w: w))
    return convs


def models_from(paths: list[str]) -> dict[str, onnx.ModelProto]:
    found: dict[str, onnx.ModelProto] = {}
    for p in paths:
        path = Path(p)
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if name.endswith(".onnx"):
                        label = f"{path.name.split('-')[0]}:{Path(name).name}"
                        found[label] = onnx.load_from_string(z.read(name))
        else:
            found[path.name] = onnx.load(str(path))
    if not paths:
        for package, files in SHIPPED.items():
            spec = importlib.util.find_spec(package)
            if spec and spec.origin:
                for f in files:
                    found[f"{package}:{Path(f).name}"] = onnx.load(str(Path(spec.origin).parent / f))
    return found


def quartiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    q = np.percentile(values, [0, 25, 50, 75, 100])
    return " / ".join(f"{x:.3f}" for x in q)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help=".onnx files or wheels holding them")
    parser.add_argument("--tol", type=float, default=0.05)
    args = parser.parse_args(argv)
    models = models_from(args.models)
    if not models:
        print("no models: pass wheels or .onnx files (see the docstring)", file=sys.stderr)
        return 2
    options = VariantOptions()
    auto_rows: dict[str, list[tuple[int, int, float]]] = {}
    print("| model | convs | spatial err | depthwise err | grouped G=4 err | grouped permuted | seconds |")
    print("|---|---:|---|---|---|---|---:|")
    all_errors: dict[str, list[float]] = {}
    for label, model in models.items():
        convs = onnx_convs(model)
        approx = Approximator()
        errors: dict[str, list[float]] = {k: [] for k in ("spatial", "depthwise", "grouped",
                                                          "grouped permuted")}
        start = time.perf_counter()
        for conv in convs:
            for variant in ("spatial", "depthwise", "grouped"):
                found = approx(variant, conv, options)
                if found is None or found.error is None:
                    continue
                errors[variant].append(found.error)
                if "approx_error_permuted" in found.extra:
                    errors["grouped permuted"].append(found.extra["approx_error_permuted"])
        seconds = time.perf_counter() - start
        auto = AutoRank(approx, args.tol)
        for conv in convs:
            for variant in ("spatial", "depthwise"):
                if not plan_variant(variant, conv, options).applicable:
                    continue
                chosen, extra = auto(variant, conv, options)
                macs = sum(cost_of(c).macs for c in plan_variant(variant, conv, chosen).layers)
                auto_rows.setdefault(variant, []).append((extra["rank"], extra["break_even_rank"],
                                                          cost_of(conv).macs / macs))
        for k, v in errors.items():
            all_errors.setdefault(k, []).extend(v)
        cells = [f"{quartiles(errors[k])} (n={len(errors[k])})" for k in errors]
        print(f"| {label} | {len(convs)} | " + " | ".join(cells) + f" | {seconds:.2f} |")
    print()
    print("min / q1 / median / q3 / max of ||W - W'||/||W|| over all layers of all models, default options "
          "(spatial R = C_out, depthwise m = 1, grouped G = 4):")
    for k, v in all_errors.items():
        print(f"- {k}: {quartiles(v)} (n={len(v)})")
    print()
    print(f"--rank auto --tol {args.tol}: the smallest rank within tol divided by the break-even rank "
          "(layers where some rank saves MACs), and the MAC ratio it gives (> 1 saves MACs):")
    for variant, found in auto_rows.items():
        frac = [r / b for r, b, _ in found if b]
        ratio = [x for _, _, x in found]
        saving = sum(1 for x in ratio if x > 1)
        print(f"- {variant}: rank/break-even {quartiles(frac)}; MAC ratio {quartiles(ratio)}; "
              f"{saving} of {len(found)} layers save MACs within tol; "
              f"{sum(1 for _, b, _ in found if not b)} layers have no saving rank at all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
