"""The runtime half of `apply`'s proof: run the original and the rewritten model in onnxruntime.

onnxruntime is optional (`pip install 'convcost[ort]'`); without it `apply` still writes and checks
the model and says the runtime proof was skipped. Everything here imports it inside functions.

- Each replaced conv alone: the conv and its stages side by side in one small model, on the same
  random input, weights as written (cast to the model's weight dtype), bias left out (it is carried
  over unchanged): the relative output error ‖y_stages − y_conv‖ / ‖y_conv‖.
- The whole model: both files on the same inputs (random, or the user's `--data inputs.npz`), the
  relative error of every output and its shape.
- `--bench`: both sessions timed alternately, median of the runs.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convcost.analysis.applied import Timing
from convcost.analysis.replacing import Replacement
from convcost.ir.model import Shape
from convcost.util.errors import InputError, first_line

if TYPE_CHECKING:
    import numpy as np

#: What to tell a user who has no onnxruntime (the extra is declared in pyproject.toml).
INSTALL_HINT = "pip install 'convcost[ort]' (or pip install onnxruntime)"

_NUMPY_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
                "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16",
                "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


def runtime_version() -> str | None:
    """"onnxruntime X.Y.Z", or None where it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return f"onnxruntime {onnxruntime.__version__}"


def session(model: str | Path | bytes, threads: int = 0) -> Any:
    import onnxruntime as ort

    from convcost.latency.ort_run import set_threads

    options = ort.SessionOptions()
    options.log_severity_level = 3
    set_threads(options, threads)
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def relative_error(reference: np.ndarray, other: np.ndarray) -> float:
    """‖other − reference‖ / ‖reference‖ (the absolute norm where the reference is all zeros)."""
    import numpy as np

    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    norm = float(np.linalg.norm(a))
    diff = float(np.linalg.norm(b - a))
    return diff / norm if norm > 0 else diff


# --- one conv ---------------------------------------------------------------------------------------

def conv_errors(replacements: Sequence[Replacement], seed: int = 0) -> dict[str, float]:
    """Per replaced conv, the relative output error of its stages against it on random input."""
    return {r.conv.name: conv_error(r, seed) for r in replacements}


def conv_error(r: Replacement, seed: int = 0) -> float:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from convcost.export.onnx_writer import stage_attributes

    rng = np.random.default_rng(seed)
    dtype = np.dtype(r.weight_dtype) if r.weight_dtype is not None else np.dtype(np.float32)
    shape = (1, *r.conv.input_shape[1:])
    x = rng.standard_normal(shape).astype(np.float32)
    assert r.conv.weight is not None  # a replacement is built only for a conv with weights
    weights = [numpy_helper.from_array(np.asarray(r.conv.weight(), dtype=dtype).astype(np.float32), "w")]
    nodes = [_node(r.conv, "x", "w", "y_conv", None)]
    current = "x"
    permuted = r.perm_in is not None and r.perm_out is not None
    # permuted: the stages read x[:, perm_in] and write channel perm_out[j] as their j-th
    if r.perm_in is not None and r.perm_out is not None:
        weights += [numpy_helper.from_array(np.asarray(r.perm_in, np.int64), "perm_in"),
                    numpy_helper.from_array(np.argsort(r.perm_out).astype(np.int64), "unperm_out")]
        nodes.append(helper.make_node("Gather", ["x", "perm_in"], ["x_in"], axis=1))
        current = "x_in"
    for j, (stage, values) in enumerate(zip(r.plan.layers, r.stages, strict=True)):
        name = f"w{j}"
        weights.append(numpy_helper.from_array(values.astype(dtype).astype(np.float32), name))
        out = "y_stages" if j == len(r.stages) - 1 and not permuted else f"h{j}"
        nodes.append(helper.make_node(stage.op, [current, name], [out], name=stage.name,
                                      **{a.name: a.value for a in stage_attributes(stage, None)}))
        current = out
    if permuted:
        nodes.append(helper.make_node("Gather", [current, "unperm_out"], ["y_stages"], axis=1))
    graph = helper.make_graph(nodes, "conv_check", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                               for n in ("y_conv", "y_stages")], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    y_conv, y_stages = session(model.SerializeToString(), threads=1).run(None, {"x": x})
    return relative_error(y_conv, y_stages)


def _node(conv: Any, x: str, w: str, y: str, bias: str | None) -> Any:
    from onnx import helper

    from convcost.export.onnx_writer import stage_attributes

    inputs = [x, w] + ([bias] if bias else [])
    return helper.make_node(conv.op, inputs, [y], name=conv.name,
                            **{a.name: a.value for a in stage_attributes(conv, None)})


# --- the whole model ----------------------------------------------------------------------------------

def feeds(sess: Any, shapes: Mapping[str, Shape], data: Path | None, seed: int) -> tuple[dict[str, np.ndarray], str]:
    """The inputs to run both models on: the user's (`--data`), else random at the analysed shapes."""
    import numpy as np

    inputs = sess.get_inputs()
    if data is not None:
        return _load_data(data, inputs), str(data)
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for meta in inputs:
        shape = shapes.get(meta.name)
        if shape is None:
            shape = tuple(d if isinstance(d, int) else 1 for d in meta.shape)
        kind = _NUMPY_TYPES.get(meta.type)
        if kind is None:
            raise InputError(f"input {meta.name!r} has type {meta.type}; random inputs cover numeric tensors "
                             "only: give --data inputs.npz")
        if kind.startswith("float"):
            out[meta.name] = rng.standard_normal(shape).astype(kind)
        elif kind == "bool":
            out[meta.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            out[meta.name] = rng.integers(0, 2, shape).astype(kind)
    return out, f"random (seed {seed})"


def _load_data(path: Path, inputs: Sequence[Any]) -> dict[str, np.ndarray]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"not a .npz of input arrays: {first_line(exc)}", path) from None
    names = [i.name for i in inputs]
    if len(names) == 1 and len(arrays) == 1 and names[0] not in arrays:
        arrays = {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise InputError(f"no array for input {missing[0]!r} (the file has {', '.join(arrays) or 'none'})", path)
    out = {}
    for meta in inputs:
        kind = _NUMPY_TYPES.get(meta.type)
        out[meta.name] = arrays[meta.name].astype(kind) if kind else arrays[meta.name]
    return out


class OriginalDoesNotRun(Exception):
    """onnxruntime cannot load or run the original model (not the rewrite's fault): the proof is skipped."""


def compare(original: Path, rewritten: Path, shapes: Mapping[str, Shape], data: Path | None,
            seed: int, threads: int = 0) -> tuple[dict[str, float], dict[str, tuple[list[int], list[int]]], str, Any,
                                                  Any, dict]:
    """Run both models on the same inputs: per output its relative error and both shapes; also the
    inputs' description, both sessions and the feeds (for timing).

    Raises OriginalDoesNotRun where onnxruntime cannot run the original on random inputs (an op or
    dtype it lacks), InputError where it cannot run it on the user's --data. `threads`: onnxruntime's
    intra-op threads (0: its default, one per core).
    """
    try:
        before = session(original, threads)
    except Exception as exc:  # onnxruntime's own errors
        raise OriginalDoesNotRun(f"onnxruntime cannot load the original model: {first_line(exc)}") from None
    inputs, described = feeds(before, shapes, data, seed)
    try:
        ref = before.run(None, inputs)
    except Exception as exc:
        if data is not None:
            raise InputError(f"onnxruntime cannot run the model on these inputs: {first_line(exc)}", data) from None
        raise OriginalDoesNotRun(f"onnxruntime cannot run the original model: {first_line(exc)}") from None
    after = session(rewritten, threads)
    got = after.run(None, inputs)
    names = [o.name for o in before.get_outputs()]
    errors = {n: relative_error(a, b) for n, a, b in zip(names, ref, got, strict=True)}
    shapes_out = {n: (list(a.shape), list(b.shape)) for n, a, b in zip(names, ref, got, strict=True)}
    return errors, shapes_out, described, before, after, inputs


def bench(before: Any, after: Any, inputs: Mapping[str, Any], seconds: float = 2.0, min_runs: int = 5) -> Timing:
    """Median latency of each session, run alternately (so a drift of the host hits both alike)."""
    import onnxruntime as ort

    for _ in range(2):
        before.run(None, dict(inputs))
        after.run(None, dict(inputs))
    a: list[float] = []
    b: list[float] = []
    start = time.perf_counter()
    while len(a) < min_runs or (time.perf_counter() - start < seconds and len(a) < 1000):
        for sess, times in ((before, a), (after, b)):
            t0 = time.perf_counter()
            sess.run(None, dict(inputs))
            times.append((time.perf_counter() - t0) * 1e3)
    threads = before.get_session_options().intra_op_num_threads or os.cpu_count() or 1
    return Timing(f"onnxruntime {ort.__version__}", statistics.median(a), statistics.median(b), len(a),
                  int(threads))
