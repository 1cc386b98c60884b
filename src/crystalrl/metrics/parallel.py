"""Run a picklable function over many items in worker processes, with a per-item timeout.

StructureMatcher can take minutes on a pathological pair; an evaluation must count such a
pair as a miss and move on, never hang. A timed-out item yields ``default``; its pool is
terminated (killing the stuck worker) and a fresh pool continues with the rest.

An RL run scores a batch every few seconds, so the pool outlives a call (one per worker
count, forked on first use; starting one costs about 0.07 s in a process that holds a
model and a reference), and items travel in chunks, a few per worker, rather than one
message each. A chunk that takes longer than the timeout is retried item by item, so an
item still gets ``default`` only when it alone runs over the timeout.
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


#: Pools kept between calls, by worker count.
_POOLS: dict[int, Any] = {}
#: Chunks per worker: enough to even out items of unequal cost.
CHUNKS_PER_WORKER = 4


def _shared_pool(num_workers: int):
    pool = _POOLS.get(num_workers)
    if pool is None:
        pool = _POOLS[num_workers] = _pool(num_workers)
    return pool


def _discard_pool(num_workers: int) -> None:
    """Terminate a pool (and a stuck worker with it); the next call forks a fresh one."""
    pool = _POOLS.pop(num_workers, None)
    if pool is not None:
        pool.terminate()
        pool.join()


def _run_chunk(fn: Callable[[Any], Any], items: list) -> list:
    return [fn(x) for x in items]


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
    size = max(1, -(-len(items) // (CHUNKS_PER_WORKER * num_workers)))
    todo = [list(range(i, min(i + size, len(items)))) for i in range(0, len(items), size)]
    while todo:
        pool = _shared_pool(num_workers)
        pending = [
            (idx, pool.apply_async(_run_chunk, (fn, [items[i] for i in idx]))) for idx in todo
        ]
        todo = []
        for k, (idx, res) in enumerate(pending):
            try:
                for i, r in zip(idx, res.get(timeout=timeout), strict=True):
                    results[i] = r
            except mp.TimeoutError:
                _discard_pool(num_workers)
                if len(idx) > 1:  # which item is stuck: retry them one by one
                    todo = [[i] for i in idx]
                elif progress:
                    progress(1)
                todo += [rest for rest, _ in pending[k + 1 :]]  # resubmitted to a fresh pool
                break
            if progress:
                progress(len(idx))
    return results
