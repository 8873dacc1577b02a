"""fastdump.workers: the thread pool the copy engine and the page judge share."""

import threading
import time

import pytest

from fastdump.workers import Cancelled, Pool


def test_results_come_back_and_errors_reach_the_caller():
    with Pool(2, "t") as pool:
        tasks = [pool.submit(pow, i, 2) for i in range(50)]
        bad = pool.submit(int, "x")
        assert [t.result() for t in tasks] == [i * i for i in range(50)]
        with pytest.raises(ValueError):
            bad.result()


def test_work_runs_on_several_threads_at_once():
    both = threading.Barrier(2, timeout=10)      # broken (an error) unless two run together
    with Pool(2, "t") as pool:
        tasks = [pool.submit(both.wait) for _ in range(2)]
        assert sorted(t.result() for t in tasks) == [0, 1]


def test_a_cancelled_task_is_skipped_and_the_block_waits_for_the_rest():
    gate, ran = threading.Event(), []
    with Pool(1, "t") as pool:
        first = pool.submit(gate.wait, 10)
        later = pool.submit(ran.append, 1)
        last = pool.submit(lambda: time.sleep(0.05) or ran.append(2))
        later.cancel()
        gate.set()
    assert first.result() is True and ran == [2] and last.result() is None
    with pytest.raises(Cancelled):
        later.result()
