"""Benchmark: which run of a probe's visit `calibrate --runtime onnxruntime` should sample.

One calibration measures every probe in visits of 6 runs back to back (interleaved with the other
probes, as calibrate does); the profile is then fitted once per run position (the 1st run of each
visit, the 2nd, ...), each with its footprint figures measured against that same run. Right after,
every model of the zoo runs end to end in onnxruntime (median over --seconds), and each profile's
whole-model estimate is compared with it. The reference is the real model; the probes are only
what the profiles are fitted on. The host's speed drifts by several percent between the calibration
and the models' runs, which moves every error alike: the spread (standard deviation of log(estimate
/ measured)) and the count within ±10% of the median error are what tell the run positions apart.

    python benchmarks/ort_sample_positions.py --threads 1 --seconds 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from convcost.latency.devices import DeviceProfile

#: Run positions (0 = the first run of a visit) whose samples each profile is fitted on.
POSITIONS = {"1st": 0, "2nd": 1, "3rd": 2, "4th": 3, "6th": 5}
BURST = 6


def profiles(threads: int) -> dict[str, DeviceProfile]:
    """One measurement, refitted per position set: {label: profile}."""
    import convcost.latency.ort_calibrate as oc
    from convcost.latency.ort_run import OrtTiming, Session, Timed, make_session, node_medians, time_sessions

    sweep = oc.ORT_SWEEPS["full"]
    oc.ORT_SWEEPS["bursts"] = oc.OrtSweep(sweep.convs, sweep.matmul_step, sweep.family_step,
                                          OrtTiming(warmup=3, repeats=6, span_s=60.0, burst=BURST))
    made: list[Session] = []
    calls = [0]
    timed: list[Timed] = []
    keep: set[int] = set()
    measure_footprint = oc.measure_footprint

    def cached_session(*args: Any, **kwargs: Any) -> Session:  # the same sessions for every refit
        i, calls[0] = calls[0], calls[0] + 1
        if i == len(made):
            made.append(make_session(*args, **kwargs))
        return made[i]

    def measured_once(sessions: list[Session], timing: OrtTiming, tick: Any = None) -> Timed:
        if not timed:
            timed.append(time_sessions(sessions, timing))
        return timed[0]

    def at_positions(session: Session, warmup: int) -> dict[str, float]:
        """node_medians over the sampled runs at the kept positions of each visit."""
        burst = session.burst or BURST
        position = itertools.count()
        flags = [sampled and (burst == 1 or next(position) % burst in keep) for sampled in session.sampled]
        return node_medians(replace(session, sampled=flags), warmup)

    def footprint_at_position(*args: Any, **kwargs: Any) -> Any:
        return measure_footprint(*args, **{**kwargs, "sampled_run": min(keep)})

    oc.make_session, oc.time_sessions, oc.node_medians = cached_session, measured_once, at_positions
    oc.measure_footprint = footprint_at_position
    out = {}
    for label, position in POSITIONS.items():
        keep.clear()
        keep.add(position)
        calls[0] = 0
        out[label] = oc.ort_profile(oc.calibrate_ort("bursts", threads), label)
    return out


def estimate_ms(model: Path, profile: Path) -> float:
    done = subprocess.run([sys.executable, "-m", "convcost", "analyze", str(model), "-d", str(profile), "-V", "none",
                           "--no-approx", "-f", "json"], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(next(iter(json.loads(done.stdout)["totals"]["latency_ms"].values())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--folder", type=Path, default=Path("/tmp/convcost-zoo"))
    args = ap.parse_args()
    from benchmarks.ort_models import export_zoo
    from convcost.analysis.ort_bench import measure_whole
    from convcost.latency.devices import dump_profile

    zoo = export_zoo(args.folder, None)
    paths = {}
    for label, profile in profiles(args.threads).items():
        paths[label] = args.folder / f"positions-{args.threads}t-{label}.yaml"
        paths[label].write_text(dump_profile(profile))
    measured = {z.name: measure_whole(z.path, {}, args.threads, args.seconds)[0] for z in zoo}
    print(f"| run sampled | models within ±10% ({args.threads} thread(s)) | median error | spread | "
          "within ±10% of the median |\n|---|---:|---:|---:|---:|")
    for label, path in paths.items():
        errors = [estimate_ms(z.path, path) / measured[z.name] - 1 for z in zoo]
        ok = sum(abs(e) <= 0.10 for e in errors)
        logs = [math.log1p(e) for e in errors]
        mid = statistics.median(logs)
        centred = sum(abs(math.expm1(x - mid)) <= 0.10 for x in logs)
        print(f"| {label} | {ok}/{len(errors)} | {statistics.median(errors):+.1%} | {statistics.pstdev(logs):.3f} | "
              f"{centred}/{len(errors)} |", flush=True)


if __name__ == "__main__":
    main()
