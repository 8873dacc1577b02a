"""Standard streams that are closed or fail, as a capture script may leave them: what is
said on stderr (progress, messages, the error line) is best effort and never fails a dump
or its status; a closed stdin or stdout fails, when a command needs it, with one line
(Python leaves them None, and ``print(file=None)`` would write into a ``-F`` stream)."""

import errno
import os
import sys


class BestEffort:
    """sys.stderr while fastdump runs (and where reports go): what is said there (progress,
    messages, the error line) is best effort.  A full, closed or vanished stream loses the
    words, never the dump nor its exit status.  Without a stream at all (the process started
    with it closed) nothing falls through to stdout as ``print(file=None)`` would, into a
    ``-F`` stream."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            if self._stream is not None:
                self._stream.write(text)
        except (OSError, ValueError):
            pass
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        try:
            if self._stream is not None:
                self._stream.flush()
        except (OSError, ValueError):
            pass

    def isatty(self):
        try:
            return bool(self._stream.isatty())
        except (AttributeError, OSError, ValueError):
            return False

    def __getattr__(self, name):
        return getattr(self._stream, name)


class Closed:
    """sys.stdin or sys.stdout when the process started with that descriptor closed (Python
    leaves them None): using one fails with an OSError that says so, one line like any
    other (not an AttributeError), and ``print()`` no longer drops a command's output
    silently, with status 0."""

    fastdump_closed = True    # read by is_closed, also through a wrapper (the kdump-tools shim's)
    encoding, errors = "utf-8", "strict"

    def __init__(self, which):
        self._what = f"standard {which} is closed"
        self.buffer = self

    def _fail(self, *args, **kwargs):
        raise OSError(errno.EBADF, self._what)

    write = writelines = read = read1 = readinto = readline = readlines = fileno = _fail

    def flush(self):
        pass

    def isatty(self):
        return False

    def close(self):
        pass


def is_closed(stream):
    return stream is None or getattr(stream, "fastdump_closed", False) is True


def hold_std_fds():
    """A standard descriptor closed at start is held on /dev/null (write-only for stdin,
    read-only for stdout, so using it still fails), so that no file of the run (the dump)
    takes its number and receives what anything writes to fd 2 or reads from fd 0."""
    for fd, flags in ((0, os.O_WRONLY), (1, os.O_RDONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        try:
            held = os.open(os.devnull, flags)
            if held != fd:
                os.dup2(held, fd)
                os.close(held)
            os.set_inheritable(fd, True)
        except OSError:
            return


def guard():
    """The stand-ins above in sys.stdin, sys.stdout and sys.stderr; returns what to put
    back (main() also runs inside other programs: capture scripts, tests)."""
    saved = (sys.stdin, sys.stdout, sys.stderr)
    hold_std_fds()
    if sys.stdin is None:
        sys.stdin = Closed("input")
    if sys.stdout is None:
        sys.stdout = Closed("output")
    if not isinstance(sys.stderr, BestEffort):
        sys.stderr = BestEffort(sys.stderr)
    return saved, (sys.stdin, sys.stdout, sys.stderr)


def restore(guarded):
    saved, installed = guarded
    for name, old, new in zip(("stdin", "stdout", "stderr"), saved, installed):
        if getattr(sys, name) is new:
            setattr(sys, name, old)
