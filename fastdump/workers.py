"""Worker threads for the compiled core's work (page windows, struct page scans), which
runs without the GIL.

``concurrent.futures`` would do, but importing it brings ``logging`` and ``traceback``:
about 9 ms of every start, which the dump of a small machine in a capture kernel pays
in full.  This pool has what the copy engine and the page judge use of it: submit,
result, cancel, and a ``with`` block that waits for every submitted task."""

import threading
from _thread import allocate_lock
from queue import SimpleQueue


class Cancelled(Exception):
    """A task was cancelled before a worker started it."""


class Task:
    """One submitted call; ``result()`` waits for it and returns or raises what it did."""

    __slots__ = ("_call", "_done", "_value", "_error", "_cancelled")

    def __init__(self, call):
        self._call, self._value, self._error, self._cancelled = call, None, None, False
        self._done = allocate_lock()
        self._done.acquire()                 # released once the task has run (or was skipped)

    def _run(self):
        try:
            if self._cancelled:
                self._error = Cancelled()
            else:
                self._value = self._call()
        except BaseException as e:           # handed to whoever waits for it, as a future does
            self._error = e
        finally:
            self._call = None
            self._done.release()

    def cancel(self):
        """Skip the call if no worker has started it yet."""
        self._cancelled = True

    def result(self):
        with self._done:
            pass
        if self._error is not None:
            raise self._error
        return self._value


class Pool:
    """``threads`` workers taking tasks in submission order."""

    def __init__(self, threads, name):
        self._tasks = SimpleQueue()
        self._workers = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True)
                         for i in range(max(1, threads))]
        for w in self._workers:
            w.start()

    def _work(self):
        while True:
            task = self._tasks.get()
            if task is None:
                return
            task._run()

    def submit(self, fn, *args):
        task = Task(lambda: fn(*args))
        self._tasks.put(task)
        return task

    def close(self):
        """Let the workers finish what was submitted, then end them."""
        for _ in self._workers:
            self._tasks.put(None)
        for w in self._workers:
            w.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
