"""Issue 6, offline: score variants of the latency model against one set of measurements.

A benchmark run (bench_latency.py) calibrates and then measures the models minutes later; on a
shared host whose speed drifts by 5-10% over minutes, two runs of the same code differ by more
than most changes to the model do. Offline scoring takes drift out of the comparison: the models
are measured once, the machine is calibrated several times around that, and every variant of the
fit is scored against the same measurements with the same calibration samples.

    python benchmarks/latency_offline.py collect DIR [--calibrations 3]   # ~14 minutes
    python benchmarks/latency_offline.py score DIR [DIR ...]              # ~10 s per set

`collect` writes DIR/measured.json (every model's layers and whole-model time, measured as
`bench` measures them) and DIR/calibrations.json (each calibration's swept convs, median times,
peak and copy bandwidth), one calibration before the models and the rest after. `score` fits
each calibration under each model variant (CONFIGS) and prints how many models are within 10%
and layers within 25%. The sets measured for benchmarks/RESULTS.md are in
benchmarks/data/latency_offline/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from convcost.ir.model import Conv  # noqa: E402
from convcost.latency.kinds import KINDS  # noqa: E402

if TYPE_CHECKING:
    from convcost.latency.calibrate import Calibration

#: name -> (fill terms left out, kinds fitted with the work-per-pixel factor, kinds with a memory share).
CONFIGS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "third session (no work, no memory share)": (("work", "memory"), (), ()),
    "memory share (every kind) only": (("work",), (), KINDS),
    "work: dense, no memory share": (("memory",), ("dense",), ()),
    "work: dense, pointwise + memory share (every kind)": ((), ("dense", "pointwise"), KINDS),
    "work: dense + memory share (every kind): fourth session": ((), ("dense",), KINDS),
    "work: dense + memory share (depthwise): shipped": ((), ("dense",), ("depthwise",)),
}


def conv_to_json(op: Conv) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(op).items() if k != "weight"}


def conv_from_json(d: dict[str, Any]) -> Conv:
    return Conv(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def collect(folder: Path, calibrations: int, seconds: float) -> None:
    import torch
    from bench_latency import models

    from convcost.analysis.bench import run_bench
    from convcost.analysis.result import Settings
    from convcost.latency.calibrate import calibrate, calibrated_profile
    from convcost.latency.measure import Timing

    torch.set_num_threads(1)
    folder.mkdir(parents=True, exist_ok=True)
    cals: list[Calibration] = []

    def one() -> None:
        cals.append(calibrate("full", 1, "thread"))
        print(f"calibration {len(cals)}: peak {cals[-1].peak_gflops:.1f} GFLOP/s, copy "
              f"{cals[-1].bandwidth_gbs:.1f} GB/s", file=sys.stderr)

    one()
    profile = calibrated_profile(calibrate("smoke", 1, "thread"), "here")  # bench wants one; not scored
    measured = {}
    for m in models(ROOT / "configs" / "models", None):
        r = run_bench(m, profile, Settings(variants=()), Timing(repeats=11, span_s=seconds))
        measured[m.name] = {"whole": float(f"{r.whole_measured_ms:.5g}"),
                            "layers": [float(f"{layer.measured_ms:.5g}") for layer in r.layers]}
        print(f"{m.name}: {r.whole_measured_ms:.2f} ms", file=sys.stderr)
    (folder / "measured.json").write_text(json.dumps(measured, indent=1) + "\n")
    for _ in range(calibrations - 1):
        one()
    (folder / "calibrations.json").write_text(calibrations_json(cals))


def calibrations_json(cals: list[Calibration]) -> str:
    """Each swept conv once (its shapes), then per calibration its conditions and median times."""
    ops = {s.op.name: conv_to_json(s.op) for cal in cals for s in cal.samples}
    return json.dumps({"ops": ops, "calibrations": [
        {"date": c.date, "machine": c.machine, "peak_gflops": c.peak_gflops, "bandwidth_gbs": c.bandwidth_gbs,
         "points_ms": {s.op.name: float(f"{s.ms:.5g}") for s in c.samples}} for c in cals]},
        separators=(",", ":")) + "\n"


def score(folders: list[Path]) -> None:
    from bench_latency import models

    from convcost.analysis.analyzer import analyze
    from convcost.analysis.result import Settings
    from convcost.latency.devices import DeviceProfile
    from convcost.latency.fit import FILLS, Sample, fit_roofline

    every = {m.name: m for m in models(ROOT / "configs" / "models", None)}
    sets = []
    for folder in folders:
        measured = json.loads((folder / "measured.json").read_text())
        doc = json.loads((folder / "calibrations.json").read_text())
        ops = {name: conv_from_json(d) for name, d in doc["ops"].items()}
        cals = [(c, [Sample(ops[name], ms) for name, ms in c["points_ms"].items()]) for c in doc["calibrations"]]
        sets.append((folder.name, measured, cals))
    print("| model variant | models within ±10% | calibrations with ≥ 90% of models | layers within ±25% |"
          " models within 10%, per set and calibration |")
    print("|---|---:|---:|---:|---|")
    for label, (left_out, work_kinds, memory_kinds) in CONFIGS.items():
        fills = tuple(f for f in FILLS if f not in left_out)
        ok = total = layers_ok = layers = good_cals = n_cals = 0
        per_set = []
        for name, measured, cals in sets:
            counts = []
            for cal, samples in cals:
                roof = fit_roofline(samples, cal["peak_gflops"], cal["bandwidth_gbs"], fills=fills,
                                    work_kinds=work_kinds, memory_kinds=memory_kinds).roofline
                device = DeviceProfile(name="here", description="", roofline=roof, path="", sources={})
                within = 0
                for model_name, got in measured.items():
                    a = analyze(every[model_name], Settings(variants=()), [device])
                    within += abs(a.totals.latency["here"] / got["whole"] - 1) <= 0.10
                    for layer, ms in zip(a.layers, got["layers"], strict=True):
                        layers += 1
                        layers_ok += abs(layer.latency["here"].ms / ms - 1) <= 0.25
                counts.append(within)
                ok, total = ok + within, total + len(measured)
                good_cals += within >= 0.9 * len(measured)
                n_cals += 1
            per_set.append(f"{name}: {', '.join(map(str, counts))}")
        print(f"| {label} | {ok}/{total} ({ok / total:.1%}) | {good_cals}/{n_cals} | {layers_ok / layers:.1%} | "
              f"{'; '.join(per_set)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect")
    c.add_argument("folder", type=Path)
    c.add_argument("--calibrations", type=int, default=3)
    c.add_argument("--seconds", type=float, default=30.0)
    s = sub.add_parser("score")
    s.add_argument("folders", type=Path, nargs="+")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.command == "collect":
        collect(args.folder, args.calibrations, args.seconds)
    else:
        score(args.folders)


if __name__ == "__main__":
    main()
