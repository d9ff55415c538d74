"""One function over several items (models), in forked worker processes, results in item order.

`analyze A B C ...` and `check A B C ...` pay the interpreter's and the imports' start-up once: the
parent imports what the work needs, then forks the workers, which inherit every module already
imported (a fork costs milliseconds, a fresh interpreter with onnx or torch a second or more).
The function and the items reach the workers through that fork too, not through pickling, so
closures work; only each item's result travels back, pickled.

One overall progress bar counts finished items; each item's own bars stay off (`progress.quiet`),
in the workers and in the serial path alike, so bars never garble.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from convcost.util.progress import progress, quiet

T = TypeVar("T")
R = TypeVar("R")

#: Below this many items, `default_jobs` runs them in this process: forking and pickling results
#: back cost more than a few models' work saves.
PARALLEL_FROM = 4

#: The work of the running `map_ordered`, read by the forked workers (set before they fork).
_work: tuple[Callable[[Any], Any], Sequence[Any]] | None = None
#: True in a worker process of `map_ordered`.
_in_worker = False


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def spare_cores() -> int:
    """Cores beyond this process's own thread for threads it may start (0 in a worker process of
    `map_ordered`, where every core already has a worker)."""
    return 0 if _in_worker else cores() - 1


def default_jobs(items: int) -> int:
    """Worker processes when the user does not say (--jobs): one per core for PARALLEL_FROM or
    more items, else none (the items run in this process)."""
    return min(cores(), items) if items >= PARALLEL_FROM else 1


def can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def _call(index: int) -> Any:
    assert _work is not None, "a worker runs only inside map_ordered"
    fn, items = _work
    return fn(items[index])


def _start_worker() -> None:
    """Workers leave Ctrl-C to the parent, which stops them: one message, no traceback per worker;
    and they start no threads of their own (`spare_cores`)."""
    import signal

    global _in_worker
    _in_worker = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class WorkerDied(RuntimeError):
    """A worker process ended without a result (killed, out of memory, a crash in native code)."""


def map_ordered(fn: Callable[[T], R], items: Sequence[T], jobs: int, description: str,
                sizes: Sequence[float] | None = None) -> list[R]:
    """`[fn(item) for item in items]`, with `jobs` forked workers when jobs > 1 (and the platform
    forks), under one progress bar. The first failure stops the work: the items not started are
    dropped, and the error of the earliest failed item (in item order) is raised.

    `sizes` guess each item's work: workers take the largest first, so that a large item handed
    out last does not keep one worker busy while the others idle (the results keep item order)."""
    if jobs <= 1 or len(items) <= 1 or not can_fork():
        results: list[R] = []
        with progress(description) as tick, quiet():
            tick(0, len(items))
            for item in items:
                results.append(fn(item))
                tick(len(results), len(items))
        return results
    order = sorted(range(len(items)), key=lambda i: -sizes[i]) if sizes else list(range(len(items)))
    return _in_workers(fn, items, min(jobs, len(items)), description, order)


def _in_workers(fn: Callable[[T], R], items: Sequence[T], jobs: int, description: str,
                order: list[int]) -> list[R]:
    import gc
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    global _work
    done: dict[int, R] = {}
    with quiet():
        # The workers' garbage collections then skip every object the parent made (modules,
        # classes, the items): collecting them would walk, and copy, the parent's whole heap.
        gc.freeze()
        _work = (fn, items)
        pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_start_worker)
        try:
            # With fork (Python 3.11+), every worker starts at the first submit: before the bar's refresh thread,
            # so no thread is running in the parent when it forks.
            futures: dict[Future[R], int] = {pool.submit(_call, i): i for i in order}
        finally:
            _work = None  # the workers hold their own copy from here on
    try:
        with progress(description) as tick:
            tick(0, len(items))
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                failed = [f for f in finished if f.exception() is not None]
                for f in finished:
                    if f.exception() is None:
                        done[futures[f]] = f.result()
                tick(len(done), len(items))
                if failed:
                    for f in pending:
                        f.cancel()
                    wait(pending)  # those already running finish; an earlier item may fail too
                    break
    except BaseException:  # Ctrl-C: stop the workers now rather than after their current item
        _stop(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        gc.unfreeze()
    errors = sorted((i, f.exception()) for f, i in futures.items()
                    if f.done() and not f.cancelled() and f.exception() is not None)
    if errors:
        index, exc = errors[0]
        if isinstance(exc, BrokenProcessPool):
            raise WorkerDied(f"a worker process died while working on {items[index]} (out of memory? "
                             "--jobs 1 runs the models one after another)") from None
        assert exc is not None
        raise exc
    return [done[i] for i in range(len(items))]


def _stop(pool: Any) -> None:
    """Terminate a pool's workers (the executor has no public way to before Python 3.14)."""
    if hasattr(pool, "terminate_workers"):
        pool.terminate_workers()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
