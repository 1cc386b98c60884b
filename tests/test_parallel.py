"""Worker pools with a per-item timeout (crystalrl.metrics.parallel) and the paused
garbage collector they may be forked under (crystalrl.gc_pause).

The pool tests fork and kill worker processes and wait out timeouts, so they are slow
tests; the metrics tests use the same pools on every run of the fast tier.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_worker_pool_finishes_under_a_parent_that_ignores_sigterm():
    """A training process (Lightning) handles SIGTERM without exiting; forked matcher
    workers must not inherit that, or terminating their pool hangs the RL step."""
    import subprocess
    import sys

    code = (
        "import signal; signal.signal(signal.SIGTERM, lambda *a: None)\n"
        "from crystalrl.metrics.parallel import map_with_timeout\n"
        "print(map_with_timeout(abs, [-1, -2, -3], num_workers=2))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[1, 2, 3]"


@pytest.mark.slow
def test_a_signal_to_the_whole_process_group_stops_the_parent_instead_of_hanging_it():
    """A scheduler (or ``pkill -f``) sends SIGTERM to the training process and its workers
    together. The workers die; one of them held the task queue's read lock, on which
    ``Pool.terminate`` used to wait forever, both when the next call timed out and at exit.
    The parent here handles SIGTERM as Lightning does (it only records it) and exits after
    its next call, as a training run saves and exits after its step."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import signal, sys, time\n"
        "got = []\n"
        "signal.signal(signal.SIGTERM, lambda *a: got.append(1))\n"
        "from crystalrl.metrics.parallel import map_with_timeout\n"
        "while True:\n"
        "    print(map_with_timeout(abs, [-1], timeout=2.0, num_workers=2, default='x'),"
        " flush=True)\n"
        "    if got:\n"
        "        print('saved', flush=True)\n"
        "        sys.exit(143)\n"
        "    time.sleep(0.2)\n"
    )
    run = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert run.stdout.readline().strip() == "[1]"  # the pool is up, one worker idle
        time.sleep(0.5)
        os.killpg(run.pid, signal.SIGTERM)  # the parent and both workers
        assert run.wait(timeout=60) == 143
        assert run.stdout.read().splitlines()[-1] == "saved"
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)


def _sleep_if_negative(item: tuple[int, str]) -> int:
    import os
    import time

    x, folder = item
    if x < 0:
        Path(folder, "stuck.pid").write_text(str(os.getpid()))
        time.sleep(60)
    return 2 * x


@pytest.mark.slow
def test_worker_pool_gives_the_stuck_item_the_default_and_the_rest_their_results(tmp_path):
    import os

    from crystalrl.metrics.parallel import map_with_timeout

    items = [(x, str(tmp_path)) for x in [1, 2, -1, 3, 4, 5, 6, 7, 8, 9]]
    done = []  # chunks of three: the stuck item shares one
    out = map_with_timeout(
        _sleep_if_negative,
        items,
        timeout=2.0,
        num_workers=1,
        default="timeout",
        progress=done.append,
    )
    assert out == [2, 4, "timeout", 6, 8, 10, 12, 14, 16, 18]
    assert sum(done) == len(items)
    with pytest.raises(ProcessLookupError):  # the stuck worker was killed with its pool
        os.kill(int((tmp_path / "stuck.pid").read_text()), 0)


def _fail_on_zero(x: int) -> int:
    import time

    if x == 0:
        raise ValueError("bad item")
    time.sleep(0.5)
    return x


@pytest.mark.slow
def test_worker_pool_after_an_error_serves_the_next_call_fresh():
    from crystalrl.metrics.parallel import map_with_timeout

    with pytest.raises(ValueError, match="bad item"):
        map_with_timeout(_fail_on_zero, range(40), num_workers=2)
    # the failed call's chunks (10 s of work) must not sit ahead of this call's
    assert map_with_timeout(abs, [-1, -2], timeout=5.0, num_workers=2, default="x") == [1, 2]


def _collector_enabled(_: int) -> bool:
    import gc

    return gc.isenabled()


@pytest.mark.slow
def test_worker_pool_forked_while_scoring_collects_garbage():
    from crystalrl.gc_pause import collector_paused
    from crystalrl.metrics.parallel import map_with_timeout

    with collector_paused():  # a reward forks the pool here; its workers live on
        assert map_with_timeout(_collector_enabled, [0, 1, 2], num_workers=3) == [True] * 3


def test_collector_paused_restores_the_callers_collector_state():
    import gc

    from crystalrl.gc_pause import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # nested: the outer pause owns the collector
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()  # a caller that manages the collector itself keeps it off
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
