"""How calibrate and bench sample: interleaved passes, cold calls, and a span that averages out drift."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from convcost.latency.measure import Timing, measure_many


def _recorder(name: str, log: list[str], seconds: float = 0.0):
    def fn() -> None:
        log.append(name)
        if seconds:
            time.sleep(seconds)

    return fn


#: Every function in a round of its own (round_s tiny), no retaken rounds, one call per sample.
SPLIT = Timing(warmup=1, repeats=3, round_s=1e-9, busy_limit=1.0, cold=True)


def test_passes_interleave_every_function() -> None:
    """Each pass samples every function once, so one function's samples are spread over the whole
    measurement instead of bunched together (a slow phase of the host spoils one sample of each)."""
    log: list[str] = []
    measure_many([_recorder("a", log), _recorder("b", log), _recorder("c", log)], SPLIT)
    warmup, sampled = log[:6], log[6:]  # warm-up: one call plus one timed call per function
    assert sorted(warmup) == ["a", "a", "b", "b", "c", "c"]
    assert sampled == ["a", "b", "c"] * 3


def test_span_keeps_sampling_until_the_time_has_gone_by() -> None:
    log: list[str] = []
    start = time.monotonic()
    ms = measure_many([_recorder("a", log, 0.005), _recorder("b", log, 0.010)],
                      replace(SPLIT, span_s=0.3)).ms
    elapsed = time.monotonic() - start
    samples = len(log) - 4
    assert elapsed >= 0.3
    assert samples > 2 * SPLIT.repeats  # more passes than --repeats asked for
    assert log[4:] == ["a", "b"] * (samples // 2)
    # Medians of what the functions really take (sleep overshoots a little, never undershoots).
    assert ms[0] == pytest.approx(5, abs=2.5) and ms[0] >= 5
    assert ms[1] == pytest.approx(10, abs=2.5) and ms[1] >= 10


def test_span_is_filled_when_the_first_pass_is_slow() -> None:
    # Two warm-up calls and the first pass take 0.15 s each, later passes 5 ms: a plan made on the
    # first pass's pace alone (0.4 s / 0.15 s = 3 passes) would stop after about 0.16 s of the span.
    calls: list[float] = []

    def fn() -> None:
        calls.append(time.monotonic())
        time.sleep(0.15 if len(calls) <= 3 else 0.005)

    measure_many([fn], replace(SPLIT, repeats=1, span_s=0.4))
    # from the first pass's start, the whole span (which starts microseconds before fn records it)
    assert time.monotonic() - calls[2] >= 0.4 - 1e-3
    assert len(calls) - 3 > 20  # at 5 ms a pass, the remaining ~0.25 s holds dozens of passes


def test_no_span_takes_exactly_the_repeats() -> None:
    log: list[str] = []
    measure_many([_recorder("a", log)], replace(SPLIT, repeats=5))
    assert len(log) == 2 + 5
