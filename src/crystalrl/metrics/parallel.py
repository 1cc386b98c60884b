"""Run a picklable function over many items in worker processes, with a per-item timeout.

StructureMatcher can take minutes on a pathological pair; an evaluation must count such a
pair as a miss and move on, never hang. A timed-out item yields ``default``; its pool is
terminated (killing the stuck worker) and a fresh pool continues with the rest.

An RL run scores a batch every few seconds, so the pool outlives a call (one per worker
count, forked on first use; starting one costs about 0.07 s in a process that holds a
model and a reference), and items travel in chunks, a few per worker, rather than one
message each. A chunk that takes longer than the timeout is retried item by item, so an
item still gets ``default`` only when it alone runs over the timeout; a stuck item costs up
to twice the timeout (its chunk, then itself), and chunks that had finished meanwhile keep
their results. Pools belong to the process and thread that made them: a forked child or
another thread gets its own, so one caller's timeout never kills another's work.
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any


def _default_signals() -> None:
    """Forked workers inherit the parent's SIGTERM handler; Lightning's only records the
    signal, so ``Pool.terminate`` would wait forever for workers that never exit. They also
    inherit a paused garbage collector (:mod:`crystalrl.gc_pause`) when forked while a batch
    is scored, and they live for the whole run."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    gc.enable()


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
        pool = ctx.Pool(num_workers, initializer=_default_signals)
        _FIRST_WORKERS[id(pool)] = list(pool._pool)  # never exit on their own
        return pool
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


#: Pools kept between calls, by (worker count, thread).
_POOLS: dict[tuple[int, int], Any] = {}
#: Each pool's first workers, by ``id(pool)``: one that has exited was killed from outside.
_FIRST_WORKERS: dict[int, list] = {}
#: Chunks per worker: enough to even out items of unequal cost.
CHUNKS_PER_WORKER = 4
# a forked child has the parent's pools without their handler threads: it makes its own
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOLS.clear)
    os.register_at_fork(after_in_child=_FIRST_WORKERS.clear)


def _shared_pool(num_workers: int):
    key = num_workers, threading.get_ident()
    pool = _POOLS.get(key)
    if pool is None:
        pool = _POOLS[key] = _pool(num_workers)
    return pool


def _close(pool) -> None:
    """Terminate ``pool``, also when some of its workers were killed from outside.

    A signal to the whole process group (a scheduler stopping the job, ``pkill -f``) kills
    the workers with the parent. A worker idle at that moment held the task queue's read
    lock, and one sending a result held the result queue's write lock; ``Pool.terminate``
    takes both, so it would wait for a dead process forever and the run would hang
    instead of saving its checkpoint. When a worker the pool started with has died, those
    two locks are freed before terminating. (A healthy pool is terminated as it is:
    killing live workers first could orphan the same locks.)"""
    first = _FIRST_WORKERS.pop(id(pool), [])
    if any(worker.exitcode is not None for worker in first):
        for lock in (pool._inqueue._rlock, pool._outqueue._wlock):
            lock.acquire(timeout=1.0)  # free, or held by a dead worker: free it either way
            lock.release()
    pool.terminate()
    pool.join()


def _discard_pool(num_workers: int) -> None:
    """Terminate a pool (and a stuck worker with it); the next call forks a fresh one."""
    pool = _POOLS.pop((num_workers, threading.get_ident()), None)
    if pool is not None:
        _close(pool)


@atexit.register
def _close_all() -> None:
    """Close the pools at exit before ``multiprocessing`` does (handlers registered later
    run first): its own exit hook calls ``Pool.terminate``, which hangs on a lock left
    held by a killed worker, so a run stopped by a signal to its process group would save
    its checkpoint and then never exit."""
    while _POOLS:
        _close(_POOLS.popitem()[1])


def _run_chunk(fn: Callable[[Any], Any], items: list) -> list:
    return [fn(x) for x in items]


def _store(results: list, idx: list[int], values: list, progress: Callable | None) -> None:
    for i, v in zip(idx, values, strict=True):
        results[i] = v
    if progress:
        progress(len(idx))


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
    try:
        while todo:
            pool = _shared_pool(num_workers)
            pending = [
                (idx, pool.apply_async(_run_chunk, (fn, [items[i] for i in idx]))) for idx in todo
            ]
            todo = []
            for k, (idx, res) in enumerate(pending):
                try:
                    chunk = res.get(timeout=timeout)
                except mp.TimeoutError:
                    if len(idx) > 1:  # which item is stuck: retry them one by one
                        todo = [[i] for i in idx]
                    elif progress:
                        progress(1)
                    for rest, later in pending[k + 1 :]:  # finished ones keep their results
                        if later.ready() and later.successful():
                            _store(results, rest, later.get(), progress)
                        else:
                            todo.append(rest)
                    _discard_pool(num_workers)  # the rest go to a fresh pool
                    break
                _store(results, idx, chunk, progress)
    except BaseException:
        # an error (or an interrupt) leaves this call's chunks queued in the pool, ahead of
        # the next call's: the next call gets a fresh pool
        _discard_pool(num_workers)
        raise
    return results
