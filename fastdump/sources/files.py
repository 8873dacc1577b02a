"""What every reader of a dump or vmcore file shares: opening it read-only, and
closing it again if parsing fails, or when the ``with`` block ends."""

import fcntl
import os
import stat

from ..errors import FastdumpError

#: what a vmcore, a dump or a memory image can be read from
_READABLE = frozenset((stat.S_IFREG, stat.S_IFBLK, stat.S_IFCHR))


def open_input(path, error=FastdumpError):
    """A read-only fd of ``path``, refusing what cannot hold a dump: a FIFO or socket
    (opened without blocking, so a FIFO with no writer cannot hang the run) or a
    directory.  Raises ``error`` with one line."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise error(f"cannot open {path}: {e.strerror}") from None
    try:
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind == stat.S_IFDIR:
            raise error(f"{path} is a directory")
        if kind not in _READABLE:
            raise error(f"{path} is a {'FIFO' if kind == stat.S_IFIFO else 'socket or special file'}, "
                        f"not a vmcore or dump file (it has no size and cannot be read twice)")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..kernel.types.kernel import Kernel


class ReadOnlyFile:
    error = FastdumpError   # the one-line error class for "cannot open"
    closed = False          # set by close(): a read after it is refused (an S3 reader has no fd)

    def _open(self, path, load, *args):
        self.path = path
        self.fd = open_input(path, self.error)
        try:
            load(*args)
        except BaseException:
            os.close(self.fd)
            self.fd = -1
            raise

    def close(self):
        self.closed = True
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @property
    def kernel(self) -> "Kernel":
        """The crashed kernel's symbols and types (:mod:`fastdump.kernel.types`), read on first use."""
        k = self.__dict__.get("_kernel")
        if k is None:
            from ..kernel.types.kernel import Kernel
            k = self.__dict__["_kernel"] = Kernel(self)
        return k

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
