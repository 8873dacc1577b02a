"""The copy engine: windows of pages run on N threads, committed in order.

Python only hands out windows and commits finished ones (one call per window of
hundreds of pages); the work inside a window is the Cython core's, with the GIL
released, so N threads really run in parallel.  A fixed set of jobs (buffers and
codec states) is reused: memory is ``jobs x window`` whatever the dump size.
"""

import os
import stat
from collections import deque

from .. import _core
from ..errors import SourceError
from ..formats import codecs
from ..workers import Pool

DEFAULT_WINDOW_BYTES = 2 << 20
BUFFER_BUDGET = 24 << 20  # all jobs' buffers together (in + out), whatever the thread count
# Source bytes all jobs keep mapped together (a mapped page of a saved file counts in RSS).
# Each job maps a power of two from 1 to 4 MiB: measured on 2 cores, 4 MiB windows instead
# of 1 MiB took 7-9 % less CPU (half the mmap/munmap pairs, fewer TLB shootdowns); 8 MiB
# gained nothing more.
MAPPED_BUDGET = 16 << 20
MAP_WINDOW_RANGE = (1 << 20, 4 << 20)


def map_window_bytes(njobs):
    """The largest power of two in MAP_WINDOW_RANGE that keeps ``njobs`` mapped windows
    within MAPPED_BUDGET."""
    lo, hi = MAP_WINDOW_RANGE
    share = max(lo, min(hi, MAPPED_BUDGET // max(1, njobs)))
    return 1 << (share.bit_length() - 1)


def _mappable(source):
    """mmap windows for /proc/vmcore and for saved vmcores (regular files); pread for devices
    such as /dev/oldmem.  /proc/vmcore's read() copies page by page in the kernel and its
    mapping is the old memory itself, so the codec reads the pages in place.  For a saved
    vmcore in the page cache, mapping costs page-table work where pread costs a copy of
    every byte: on 2026-12-01's machine (Linux 6.18) mapping took 0.26 against 0.41 CPU-s
    at -l -d 31 of kernel-2G, and 0.9 against 1.25 CPU-s of the 16 GiB real guest; an
    earlier machine measured the opposite on kernel-8G (0.50 against 0.33), so
    ``--non-mmap`` stays.  A SIGBUS in a mapping (a file cut short while it is read, an
    NFS error) is caught by the core, and the window is read again with pread."""
    is_proc_vmcore = getattr(source, "is_proc_vmcore", None)
    if is_proc_vmcore and is_proc_vmcore():
        return True
    try:
        return stat.S_ISREG(os.fstat(source.fd).st_mode)
    except (AttributeError, OSError, TypeError, ValueError):
        return False


def default_threads():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class CopyEngine:
    """Runs windows through a pool of reusable jobs and commits them in order."""

    def __init__(self, source, *, codec="none", threads=None, window_bytes=None, use_mmap=None):
        # more compressing threads than CPUs only adds switches and cache misses (measured:
        # 8 threads on 2 cores ran about 8 % slower than 2), so a larger request is capped
        self.threads = min(max(1, threads or default_threads()), default_threads())
        njobs = self.threads + 2
        page = source.page_size
        window = window_bytes or DEFAULT_WINDOW_BYTES
        window = min(window, max(BUFFER_BUDGET // (2 * njobs), 64 * page))
        self.window_pages = max(16, window // page)
        if use_mmap is None:
            use_mmap = _mappable(source)
        self.use_mmap = bool(use_mmap)
        self.core_source = _core.Source(source.fd, source.extent_array(), page, bool(use_mmap),
                                        map_window_bytes(njobs))
        self.codec = codecs.by_name(codec).core
        self.jobs = [_core.Job(self.core_source, self.codec, self.window_pages) for _ in range(njobs)]
        self.source = source

    def run(self, windows, commit, *, zero_check=False, dense=False, scan_only=False):
        """``windows`` yields ``(bitmap, base_pfn, start, end)``; ``commit(job)`` is
        called in window order on this thread.  Returns when all are committed."""
        free = deque(self.jobs)
        pending = deque()
        with Pool(self.threads, "fastdump") as pool:
            try:
                for bitmap, base, start, end in windows:
                    if not free:
                        self._finish(pending.popleft(), commit, free)
                    job = free.popleft()
                    job.setup(bitmap, base, start, end)
                    job.zero_check, job.dense, job.scan_only = zero_check, dense, scan_only
                    pending.append((job, pool.submit(job.run)))
                while pending:
                    self._finish(pending.popleft(), commit, free)
            except BaseException:
                for _, fut in pending:
                    fut.cancel()
                for _, fut in pending:
                    try:
                        fut.result()
                    except BaseException:
                        pass
                raise

    def _finish(self, item, commit, free):
        job, fut = item
        rc = fut.result()
        if rc:
            raise SourceError(f"{self.source.path}: cannot read page at pfn {job.err_pfn:#x}: "
                              f"{os.strerror(rc)}")
        commit(job)
        free.append(job)

    def windows(self, bitmap, base_pfn, nbits, *, start=0, dense=False):
        """Split one cycle's bitmap (bits ``start``..``nbits``) into windows of at most
        ``window_pages`` pages."""
        while start < nbits:
            if dense:
                end = min(nbits, start + self.window_pages)
            else:
                end = _core.plan_window(bitmap, start, nbits, self.window_pages)
            if end == start:
                break
            yield bitmap, base_pfn, start, end
            start = end
