"""What the machine is and how busy it is while convcost measures (Linux /proc and sysfs): shared
by the torch and the onnxruntime calibrations, so it imports neither."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

#: The suffixes sysfs writes cache sizes with.
_SIZE_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3}


class LoadMonitor:
    """How much CPU other processes took while we measured (Linux /proc; None elsewhere).

    Timings taken while another process competes for the cores are slow by an unknown amount;
    `calibrate` and `bench` report this figure so that a reader can tell.
    """

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        import os

        try:
            with open("/proc/stat") as fh:
                fields = [float(v) for v in fh.readline().split()[1:]]
            with open("/proc/self/stat") as fh:
                own = fh.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)
        mine = float(own[11]) + float(own[12])  # utime + stime, all threads, in clock ticks
        return busy, mine, time.monotonic() * os.sysconf("SC_CLK_TCK")

    def others(self) -> float | None:
        """Share of all cores' time used by other processes since the monitor started (0..1)."""
        import os

        end = self._read()
        if self._start is None or end is None:
            return None
        busy, mine, ticks = (e - s for e, s in zip(end, self._start, strict=True))
        cores = os.cpu_count() or 1
        return max(0.0, min(1.0, (busy - mine) / max(ticks * cores, 1e-9)))


def machine() -> str:
    """CPU model, core count and OS, as a person would write them down (calibrations record it)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def cache_mb_per_core(level: int = 2) -> float | None:
    """The size of one core's data cache at `level` in units of 1e6 bytes (Linux sysfs; None elsewhere)."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if int((index / "level").read_text()) != level or (index / "type").read_text().strip() == "Instruction":
                continue
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        try:
            return float(size[:-1]) * _SIZE_UNITS[size[-1]] / 1e6 if size[-1] in _SIZE_UNITS else float(size) / 1e6
        except ValueError:
            return None
    return None


def cache_start_mb(threads: int) -> float:
    """Where a calibration's fit of the weight cache starts: each thread's core brings its own L2
    (1 MB where the machine does not say)."""
    return (cache_mb_per_core() or 1.0) * max(1, min(threads, os.cpu_count() or 1))


def free_bytes() -> float:
    """Memory the system has free now, in bytes (POSIX sysconf; unbounded where it does not say)."""
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return float("inf")
