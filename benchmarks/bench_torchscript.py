"""Issue 5 benchmark: whole-process time to count a ResNet-50 TorchScript archive.

Run: python benchmarks/bench_torchscript.py [--runs 7]

Compares `python -m convcost analyze resnet50.pt -i 1x3x224x224 -f json` with a script that loads
the same archive and runs torch's `FlopCounterMode` (as given in its docs, and under
`torch.no_grad()`), and with `python -c "import torch"`, the floor every torch-based tool pays.
Runs are interleaved (one of each per round) so background load hits all commands alike; the
table gives the median and the fastest wall time, and the median CPU time (user + sys of the
process), which a busy machine disturbs less. The archive is the test suite's ResNet-50
(tests/archs.py, torchvision's layer shapes, random weights), traced and saved to a temp dir.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FLOP_COUNTER = """
import sys, torch
from torch.utils.flop_counter import FlopCounterMode
model = torch.jit.load(sys.argv[1], map_location="cpu").eval()
x = torch.zeros(1, 3, 224, 224)
with {context}FlopCounterMode(display=False) as counter:
    model(x)
print(counter.get_total_flops())
"""


def make_archive(folder: Path) -> Path:
    import torch

    sys.path.insert(0, str(ROOT))
    from tests.archs import resnet50

    path = folder / "resnet50.pt"
    model = resnet50().eval()
    with torch.no_grad():
        torch.jit.trace(model, torch.zeros(1, 3, 224, 224)).save(str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        archive = str(make_archive(Path(tmp)))
        commands = {
            'python -c "import torch" (floor)': [py, "-c", "import torch"],
            "FlopCounterMode script": [py, "-c", FLOP_COUNTER.format(context=""), archive],
            "FlopCounterMode script, under torch.no_grad()": [
                py, "-c", FLOP_COUNTER.format(context="torch.no_grad(), "), archive],
            "convcost analyze resnet50.pt -i 1x3x224x224 -f json": [
                py, "-m", "convcost", "analyze", archive, "-i", "1x3x224x224", "-f", "json"],
        }
        outputs = {label: subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
                   for label, cmd in commands.items()}  # warm-up, and the figures to compare
        times: dict[str, list[float]] = {label: [] for label in commands}
        cpu: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(args.runs):
            for label, cmd in commands.items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(cmd, capture_output=True, check=True, cwd=ROOT)
                times[label].append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[label].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)

    print(f"| command | median wall (s), {args.runs} runs | fastest wall (s) | median CPU (s) |")
    print("|---|---:|---:|---:|")
    for label, ts in times.items():
        print(f"| `{label}` | {statistics.median(ts):.2f} | {min(ts):.2f} | {statistics.median(cpu[label]):.2f} |")
    ours = json.loads(outputs["convcost analyze resnet50.pt -i 1x3x224x224 -f json"])["totals"]
    theirs = int(outputs["FlopCounterMode script"].strip())
    print(f"\nconvcost totals.macs = {ours['macs']:,}; FlopCounterMode flops / 2 = {theirs // 2:,}; "
          f"equal: {ours['macs'] * 2 == theirs}")
    floor = statistics.median(times['python -c "import torch" (floor)'])
    for label in list(times)[1:]:
        print(f"{label}: {statistics.median(times[label]) - floor:.2f} s above the import-torch floor")


if __name__ == "__main__":
    main()
