"""Where bytes go: a sink with ``pwrite(data, offset)``, created safely.

A dump file is created mode 0600 under a temporary ``<name>.incomplete`` name
(no symlink followed, never an existing file), written, fsynced and renamed to
its final name only when complete.  An unfinished dump keeps the temporary name.

Every sink has ``barrier()``: the writers call it once the header (flagged
incomplete), notes and bitmaps are written and before any page data, and it
puts them on the disk first, so a kill or a full disk at any later moment
leaves a file that readers open as an incomplete dump.
"""

import errno
import os

from .. import safefile
from ..errors import FastdumpError, NoSpaceError, TargetError
from ..safefile import INCOMPLETE_SUFFIX


def _pwrite_all(fd, data, offset, what):
    view = memoryview(data)
    while view:
        try:
            n = os.pwrite(fd, view, offset)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise NoSpaceError(f"{what}: no space left on device") from None
            raise TargetError(f"{what}: write failed: {e.strerror}") from None
        view = view[n:]
        offset += n


class FileSink:
    """A regular file written at offsets; renamed into place by ``commit``."""

    def __init__(self, path, *, force=False, temp_path=None):
        self.path = path
        self.temp_path = temp_path or path + INCOMPLETE_SUFFIX
        self.bytes_written = 0
        self.size = 0
        self.force = force
        safefile.check_free(path, force=force)
        self.fd = safefile.create(self.temp_path, force=force)

    def pwrite(self, data, offset):
        _pwrite_all(self.fd, data, offset, self.temp_path)
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        self.bytes_written += n
        self.size = max(self.size, offset + n)

    def reserve(self, size, *, allocate=False):
        """Make the file ``size`` bytes long now, so what is laid out up front reads as
        zeros ("nothing there"), not as past the end, whenever the run stops.  With
        ``allocate`` the blocks are taken too (headers, bitmaps, descriptors: small),
        so a disk that fills up later still takes every descriptor of the pages written."""
        if size <= self.size:
            return
        full = False
        try:
            # the length first: allocating takes time (page by page on tmpfs) and a kill
            # during it must find the file laid out, not cut short inside the bitmaps
            os.ftruncate(self.fd, max(size, os.fstat(self.fd).st_size))
            if allocate:
                try:
                    os.posix_fallocate(self.fd, 0, size)
                except OSError as e:
                    if e.errno == errno.ENOSPC:
                        full = True    # the file is laid out (holes read as zeros): fail now
                    # not supported: EBADF is glibc's stand-in where the file system has no
                    # fallocate (NFS before 4.2): it reads each block first, which our write-only
                    # file refuses before anything is written
                    elif e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF):
                        raise
        except OSError as e:
            raise TargetError(f"{self.temp_path}: {e.strerror}") from None
        self.size = size
        if full:
            raise NoSpaceError(f"{self.temp_path}: no space left on device")

    def settle(self):
        """After a failure: the byte ranges written but lost (none here: a write that
        fails raises at once, before the writer counts it as done)."""
        return []

    def barrier(self):
        """What is written so far reaches the disk before anything written later."""
        try:
            os.fdatasync(self.fd)
        except OSError as e:
            raise TargetError(f"{self.temp_path}: {e.strerror}") from None

    def commit(self):
        """fsync and move into place under the final name."""
        try:
            os.ftruncate(self.fd, self.size)
            os.fsync(self.fd)
        except OSError as e:
            raise TargetError(f"{self.temp_path}: {e.strerror}") from None
        try:
            return safefile.publish(self.temp_path, self.path, force=self.force)   # still locked
        finally:
            os.close(self.fd)
            self.fd = -1

    def abandon(self):
        """Leave what was written under the temporary name (marked incomplete by the writer)."""
        if self.fd >= 0:
            try:
                os.fsync(self.fd)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = -1
            safefile.fsync_dir(os.path.dirname(os.path.abspath(self.temp_path)))   # the name survives a reboot
        return self.temp_path


class DirectFileSink(FileSink):
    """``--direct-io``: the long sequential streams (descriptors, page data) go to disk
    with O_DIRECT from page-aligned buffers, so a multi-GB dump does not fill the
    capture kernel's page cache.  Everything else (everything before the
    ``barrier``: headers, notes, bitmaps; later small patches; and the unaligned
    first and last block of each stream) is written normally; the two never touch
    the same block."""

    BUFFER = 1 << 20
    BLOCK = 4096

    def __init__(self, path, *, force=False, temp_path=None):
        import mmap
        super().__init__(path, force=force, temp_path=temp_path)
        try:
            # the file just created, not whatever the name points at by now
            self.dfd = os.open(f"/proc/self/fd/{self.fd}", os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
        except OSError as e:  # tmpfs and some others refuse O_DIRECT: write normally then
            self.dfd = -1
            self.direct_error = e.strerror
        self._mmap = mmap
        self.streams = []     # [start_offset, end_offset, buffer (mmap), fill, flushed_to]
        self.direct_bytes = 0
        self.past_barrier = False   # before it, nothing waits in a stream buffer

    def barrier(self):
        self._drain()
        super().barrier()
        self.past_barrier = True

    def _stream_for(self, offset):
        for s in self.streams:
            if s[1] == offset:
                return s
        return None

    def pwrite(self, data, offset):
        n = data.nbytes if isinstance(data, memoryview) else len(data)
        if self.dfd < 0 or n == 0 or not self.past_barrier:
            return super().pwrite(data, offset)
        s = self._stream_for(offset)
        if s is None:
            self._patch_pending(data, offset, n)
            if n < self.BLOCK:         # small random writes (header patches): buffered
                return super().pwrite(data, offset)
            buf = self._mmap.mmap(-1, self.BUFFER + self.BLOCK)
            base = offset - offset % self.BLOCK
            s = [offset, offset, buf, offset - base, base]   # start, end, buffer, fill, buffer base
            self.streams.append(s)
            if s[3]:                   # head of an unaligned stream: its block goes buffered later
                pass
        view = memoryview(data).cast("B")
        while view:
            room = self.BUFFER + self.BLOCK - s[3]
            take = min(room, len(view))
            s[2][s[3]:s[3] + take] = view[:take]
            s[3] += take
            s[1] += take
            view = view[take:]
            if s[3] >= self.BUFFER:
                self._flush(s, final=False)
        self.bytes_written += n
        self.size = max(self.size, offset + n)

    def _patch_pending(self, data, offset, n):
        """A write into bytes still waiting in a stream buffer must change them there too."""
        view = memoryview(data).cast("B")
        for start, end, buf, fill, base in self.streams:
            lo, hi = max(offset, start, base), min(offset + n, end)
            if lo < hi:
                buf[lo - base:hi - base] = view[lo - offset:hi - offset]

    def _flush(self, s, *, final):
        """Write the buffer's whole blocks with O_DIRECT (the stream's unaligned head
        and tail blocks with the normal fd), keep the partial tail block."""
        start, end, buf, fill, base = s
        whole = fill - fill % self.BLOCK
        lo = 0
        if base < start:               # partial head block: normal write of just the stream's bytes
            head = min(fill, self.BLOCK)
            _pwrite_all(self.fd, buf[start - base:head], start, self.temp_path)
            lo = self.BLOCK
        if whole > lo:
            try:
                done = os.pwrite(self.dfd, memoryview(buf)[lo:whole], base + lo)
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise NoSpaceError(f"{self.temp_path}: no space left on device") from None
                raise TargetError(f"{self.temp_path}: write failed: {e.strerror}") from None
            if done != whole - lo:
                _pwrite_all(self.fd, buf[lo + done:whole], base + lo + done, self.temp_path)
            self.direct_bytes += whole - lo
        if final:
            if fill > max(whole, lo):
                _pwrite_all(self.fd, buf[max(whole, lo):fill], base + max(whole, lo), self.temp_path)
            return
        tail = buf[whole:fill]
        buf[:len(tail)] = tail
        s[4] = base + whole
        s[0] = max(start, s[4])
        s[3] = len(tail)

    def _drain(self):
        for s in self.streams:
            self._flush(s, final=True)
            s[2].close()
        self.streams = []

    def settle(self):
        """Stream buffers hold bytes the writer already counts as written: put them on
        disk as far as it takes them; returns the ``(start, end)`` ranges it did not."""
        lost = []
        for s in self.streams:
            try:
                self._flush(s, final=True)
            except FastdumpError:
                lost.append((s[0], s[1]))
            s[2].close()
        self.streams = []
        return lost

    def commit(self):
        self._drain()
        if self.dfd >= 0:
            os.close(self.dfd)
            self.dfd = -1
        return super().commit()

    def abandon(self):
        try:
            self._drain()
        except FastdumpError:
            pass
        if self.dfd >= 0:
            os.close(self.dfd)
            self.dfd = -1
        return super().abandon()


class LimitedSink:
    """makedumpfile's ``-L SIZE``: the dump never grows past ``limit`` bytes.  A write that
    would is refused as a full disk, so the run ends the way it does when the target fills
    up: the next dump level of a list, else a dump left flagged incomplete."""

    def __init__(self, sink, limit):
        self._sink, self.limit = sink, limit

    def pwrite(self, data, offset):
        n = data.nbytes if isinstance(data, memoryview) else len(data)
        if offset + n > self.limit:
            raise NoSpaceError(f"the dump reached its size limit of {self.limit} bytes (-L)")
        self._sink.pwrite(data, offset)

    def reserve(self, size, *, allocate=False):
        self._sink.reserve(min(size, self.limit), allocate=allocate)

    def __getattr__(self, name):
        return getattr(self._sink, name)


class InOrderSink:
    """A sink whose bytes leave in the order they are written (a stream, or nowhere):
    there is nothing to lay out in advance, to settle, or to order, only to count."""

    def __init__(self, name):
        self.name = name
        self.bytes_written = self.size = 0

    def _count(self, data, offset):
        """Count one write; returns its size."""
        n = data.nbytes if isinstance(data, memoryview) else len(data)
        self.bytes_written += n
        self.size = max(self.size, offset + n)
        return n

    def reserve(self, size, *, allocate=False):
        """Nothing to lay out."""

    def settle(self):
        """Writes go out in order: a failed one raised before the writer counted it."""
        return []

    def barrier(self):
        """The order of writes is the order they arrive in."""


class NullSink(InOrderSink):
    """``--dry-run``: everything is computed and counted, nothing is written."""

    fd, temp_path, path = -1, None, None

    def pwrite(self, data, offset):
        self._count(data, offset)

    def commit(self):
        return self.name

    def abandon(self):
        return f"{self.name} (dry run: not written)"
