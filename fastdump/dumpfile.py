"""What every reader of a dump or vmcore file shares: opening it read-only, and
closing it again if parsing fails, or when the ``with`` block ends."""

import os

from .errors import FastdumpError


class ReadOnlyFile:
    error = FastdumpError   # the one-line error class for "cannot open"

    def _open(self, path, load, *args):
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise self.error(f"cannot open {path}: {e.strerror}") from None
        try:
            load(*args)
        except BaseException:
            os.close(self.fd)
            self.fd = -1
            raise

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
