"""How much does this machine's speed drift while nothing changes? (Issue 6, why calibrate samples for a minute.)

Times the same four workloads every few seconds for a while, in this thread's CPU time (other
processes cannot inflate it), and prints each sample against the workload's median:

    python benchmarks/drift.py --seconds 150

ResNet-18's and MobileNet v2's convs (each conv on its own input, back to back), one depthwise and
one dense 3x3 conv at 256 channels on a 14x14 map; one thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=150.0)
    args = ap.parse_args()

    import torch

    from convcost.latency.calibrate import _conv
    from convcost.latency.measure import Timing, measure_many, runner, steady_allocator
    from tests import archs

    torch.set_num_threads(1)
    steady_allocator()
    names, fns = [], []
    for name in ("resnet18", "mobilenet_v2"):
        factory, shape = archs.ALL_MODELS[name]
        model = archs.to_model(factory(), shape, name)
        names.append(name)
        fns.append(runner([*model.convs, *model.matmuls], chained=False))
    for label, groups in (("depthwise 256 @14", 256), ("dense 256 @14", 1)):
        names.append(label)
        fns.append(runner([_conv(256, 256, 3, 14, groups=groups)]))
    rows: list[tuple[float, list[float]]] = []
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        ms = measure_many(fns, Timing(warmup=1, repeats=3, cold=True, clock="thread")).ms
        rows.append((time.monotonic() - start, ms))
    medians = [statistics.median(r[1][i] for r in rows) for i in range(len(fns))]
    print("| s | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for t, ms in rows:
        print(f"| {t:.0f} | " + " | ".join(f"{m / med - 1:+.0%}" for m, med in zip(ms, medians, strict=True)) + " |")
    print("\n| workload | median ms | lowest | highest |\n|---|---:|---:|---:|")
    for i, name in enumerate(names):
        col = [r[1][i] for r in rows]
        print(f"| {name} | {medians[i]:.3g} | {min(col) / medians[i] - 1:+.0%} | {max(col) / medians[i] - 1:+.0%} |")


if __name__ == "__main__":
    main()
