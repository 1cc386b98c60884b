"""Run a picklable function over many items in worker processes, with a per-item timeout.

StructureMatcher can take minutes on a pathological pair; an evaluation must count such a
pair as a miss and move on, never hang. A timed-out item yields ``default``; its pool is
terminated (killing the stuck worker) and a fresh pool continues with the rest.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any


def _default_signals() -> None:
    """Forked workers inherit the parent's SIGTERM handler; Lightning's only records the
    signal, so ``Pool.terminate`` would wait forever for workers that never exit."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _pool(num_workers: int):
    """A worker pool whose workers are born with SIGTERM's default action.

    The initializer alone leaves a window: a worker terminated before it has run it (a
    short map on a loaded machine) keeps the parent's handler and never exits, and the
    pool's ``join`` hangs. So the parent's handler is set aside while the workers fork.
    """
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    try:
        previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:  # not the main thread: the initializer has to do
        previous = None
    try:
        return ctx.Pool(num_workers, initializer=_default_signals)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def map_with_timeout(
    fn: Callable[[Any], Any],
    items: Sequence,
    timeout: float = 30.0,
    num_workers: int | None = None,
    default: Any = None,
    progress: Callable[[int], None] | None = None,
) -> list:
    """``[fn(x) for x in items]`` in parallel; an item over ``timeout`` s gives ``default``.

    ``num_workers=0`` runs in this process without timeouts (for debugging and tiny inputs).
    """
    if num_workers is None:
        num_workers = os.cpu_count() or 1
    if num_workers == 0:
        out = []
        for x in items:
            out.append(fn(x))
            if progress:
                progress(1)
        return out
    results: list = [default] * len(items)
    start = 0
    while start < len(items):
        pool = _pool(num_workers)
        pending = [(i, pool.apply_async(fn, (items[i],))) for i in range(start, len(items))]
        start = len(items)
        try:
            for i, res in pending:
                try:
                    results[i] = res.get(timeout=timeout)
                except mp.TimeoutError:
                    results[i] = default
                    start = i + 1  # restart the pool after the stuck item
                    break
                finally:
                    if progress:
                        progress(1)
        finally:
            pool.terminate()
            pool.join()
        # items between the stuck one and the end are resubmitted to a fresh pool
    return results
