"""Where bytes go: a sink with ``pwrite(data, offset)``, created safely.

A dump file is created mode 0600 under a temporary ``<name>.incomplete`` name
(no symlink followed, never an existing file), written, fsynced and renamed to
its final name only when complete.  An unfinished dump keeps the temporary name.
"""

import errno
import os

from .errors import NoSpaceError, TargetError

INCOMPLETE_SUFFIX = ".incomplete"


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
        for p in (path, self.temp_path):
            if os.path.lexists(p):
                if not force:
                    raise TargetError(f"{p} exists; use -f/--force to overwrite it")
                if os.path.isdir(p) and not os.path.islink(p):
                    raise TargetError(f"{p} is a directory")
                os.unlink(p)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self.fd = os.open(self.temp_path, flags, 0o600)
        except OSError as e:
            raise TargetError(f"cannot create {self.temp_path}: {e.strerror}") from None
        os.fchmod(self.fd, 0o600)  # whatever the umask said

    def pwrite(self, data, offset):
        _pwrite_all(self.fd, data, offset, self.temp_path)
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        self.bytes_written += n
        self.size = max(self.size, offset + n)

    def commit(self):
        """fsync and move into place under the final name."""
        try:
            os.ftruncate(self.fd, self.size)
            os.fsync(self.fd)
        except OSError as e:
            raise TargetError(f"{self.temp_path}: {e.strerror}") from None
        os.close(self.fd)
        self.fd = -1
        os.rename(self.temp_path, self.path)
        return self.path

    def abandon(self):
        """Leave what was written under the temporary name (marked incomplete by the writer)."""
        if self.fd >= 0:
            try:
                os.fsync(self.fd)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = -1
        return self.temp_path
