"""Time the weight-based approximation errors on a ResNet-50-size model (issue 8: < 3 s).

Weights are tests/archs.resnet50's random init (53 convs, 23.5 M conv weights); errors do not
depend on the values' training, only the shapes drive the time. Reported separately:
- "svd": the spectra of all convs for the spatial (rank R, every R at once) and depthwise
  (multiplier m) variants -- the SVD work the issue's 3 s target is about;
- "grouped": the off-block mass for G = 4, and the channel-permutation heuristic on top;
- "analyze": convcost's whole analysis with the errors on (default) and with --rank auto.

Re-run:  python -m benchmarks.bench_approx [--repeat 3]
The machine has 2 cores; other work on it slows OpenBLAS's threads badly, so the load average
is printed, and OPENBLAS_NUM_THREADS=1 is worth a second run when the machine is busy.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from convcost.analysis.analyzer import analyze
from convcost.ir.model import Conv, Model
from convcost.variants.approximator import Approximator
from convcost.variants.autorank import AutoRank
from convcost.variants.base import VariantOptions


def resnet50_convs() -> list[Conv]:
    import torch

    from tests.archs import module_convs, resnet50

    torch.manual_seed(0)
    return module_convs(resnet50(), torch.zeros(1, 3, 224, 224))


CPU: list[float] = []  # CPU seconds of the best run of each best_of() call, in order


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """Best wall time; its CPU time goes to CPU (with one BLAS thread, the wall time a quiet
    machine would show)."""
    runs = []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - start, time.process_time() - cpu))
    wall, cpu_s = min(runs)
    CPU.append(cpu_s)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    convs = resnet50_convs()
    options = VariantOptions()
    weights = sum(c.weight().size for c in convs if c.weight)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "-")
    print(f"ResNet-50: {len(convs)} convs, {weights / 1e6:.1f} M conv weights; "
          f"load average {os.getloadavg()[0]:.2f}; OPENBLAS_NUM_THREADS={threads}")

    def variant(name: str, permute: bool = True) -> Callable[[], None]:
        def go() -> None:
            approx = Approximator(permute=permute)
            for conv in convs:
                approx(name, conv, options)
        return go

    spatial = best_of(args.repeat, variant("spatial"))
    depthwise = best_of(args.repeat, variant("depthwise"))
    grouped = best_of(args.repeat, variant("grouped", permute=False))
    permuted = best_of(args.repeat, variant("grouped", permute=True))
    model = Model("resnet50", "pytorch", "tests.archs.resnet50", {"x": (1, 3, 224, 224)}, convs)
    plain = best_of(args.repeat, lambda: analyze(model))
    full = best_of(args.repeat, lambda: analyze(model, approx=Approximator()))
    approx = Approximator()
    auto = best_of(args.repeat, lambda: analyze(model, settings=None, approx=approx,
                                                 options_for=AutoRank(approx, 0.05)))
    print(f"svd (spatial + depthwise spectra, all ranks): {spatial + depthwise:.2f} s "
          f"(spatial {spatial:.2f}, depthwise {depthwise:.2f}); CPU {CPU[0] + CPU[1]:.2f} s")
    print(f"grouped G=4 off-block mass: {grouped:.3f} s; with the permutation heuristic: {permuted:.2f} s "
          f"(CPU {CPU[3]:.2f} s)")
    print(f"analyze: {plain:.2f} s without errors, {full:.2f} s with them (default), "
          f"{auto:.2f} s with --rank auto --tol 0.05 (CPU {CPU[5]:.2f} / {CPU[6]:.2f} s)")


if __name__ == "__main__":
    main()
