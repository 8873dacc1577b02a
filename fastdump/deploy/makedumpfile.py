"""fastdump with makedumpfile's face, as the kdump-tools shim runs it (``python -m fastdump.deploy.makedumpfile``).

Two things differ from ``fastdump``: the exit status has makedumpfile's classes (0 success,
1 any failure, usage errors included), and, when the shim names a marker file in
FASTDUMP_SHIM_MARK, one byte is written into it before the first byte reaches stdout.  The
shim reads that marker to decide whether the distribution's makedumpfile may still be run
(see fastdump.deploy.kdump_tools).  If the marker cannot be written, nothing is written to
stdout either: the run fails as "nothing written", and the shim falls back.
"""

import os
import sys

from ..errors import TargetError


class _MarkFirstWrite:
    """A binary stream that writes the marker before its first byte, then passes through."""

    def __init__(self, stream, mark):
        self._stream, self._mark = stream, mark

    def write(self, data):
        if self._mark:
            _touch(self._mark)
            self._mark = None
        return self._stream.write(data)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _Stdout:
    """sys.stdout whose ``buffer`` marks its first write."""

    def __init__(self, text, mark):
        self._text = text
        self.buffer = _MarkFirstWrite(text.buffer, mark)

    def write(self, s):
        return self.buffer.write(s.encode(self._text.encoding, self._text.errors))

    def __getattr__(self, name):
        return getattr(self._text, name)


def _touch(mark):
    try:
        fd = os.open(mark, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)
    except OSError as e:
        raise TargetError(f"cannot mark the shim's file {mark} ({e.strerror}): nothing written") from None


def main(argv=None):
    from ..commands.cli import main as fastdump_main

    mark = os.environ.pop("FASTDUMP_SHIM_MARK", None)
    if mark:
        sys.stdout = _Stdout(sys.stdout, mark)
    return 0 if fastdump_main(argv) == 0 else 1


if __name__ == "__main__":
    from ..commands.cli import run
    run(main)
