"""Progress: a tqdm bar on a terminal, plain periodic lines on a serial console.

A capture kernel's console is a serial line that scrolls and is logged, so when
stderr is not a TTY we print one short line every few seconds instead of a bar.
tqdm is optional (a capture initramfs does not hold it): without it a terminal gets the
plain lines too, never an ImportError in the middle of a dump.

Progress is best effort: a stream that fails (a full or closed stderr, a console gone)
silences it for the rest of the run and never reaches the dump.  Without a stream at all
(the process started with stderr closed) there is no progress: ``print(file=None)`` would
write it to stdout, where a ``-F`` stream goes.
"""

import sys
import time


def _fmt_eta(seconds):
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _have_tqdm():
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class Progress:
    def __init__(self, mode="auto", stream=None, interval=5.0):
        self.stream = stream if stream is not None else sys.stderr
        if self.stream is None:
            mode = "quiet"
        if mode == "auto":
            mode = "bar" if _isatty(self.stream) else "lines"
        if mode == "bar" and not _have_tqdm():
            mode = "lines"
        self.mode = mode
        self.interval = interval
        self._bar = None
        self.name, self.total, self.done, self.unit_bytes = "", 0, 0, 4096

    def phase(self, name, total, unit_bytes=4096):
        self.close()
        self.name, self.total, self.done, self.unit_bytes = name, max(1, total), 0, unit_bytes
        self.started = self._last = time.monotonic()
        if self.mode == "bar":
            from tqdm import tqdm
            try:
                self._bar = tqdm(total=self.total * unit_bytes, desc=name, unit="B", unit_scale=True,
                                 unit_divisor=1024, file=self.stream, leave=False)
            except (OSError, ValueError):
                self._silence()

    def update(self, units):
        self.done += units
        if self._bar is not None:
            try:
                self._bar.update(units * self.unit_bytes)
            except (OSError, ValueError):
                self._silence()
        elif self.mode == "lines":
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self._line(now)

    def _line(self, now):
        elapsed = max(1e-6, now - self.started)
        rate = self.done * self.unit_bytes / elapsed
        left = (self.total - self.done) * self.unit_bytes / rate if rate else 0
        pct = 100.0 * self.done / self.total
        self._print(f"fastdump: {self.name} {pct:5.1f}% {rate / 1e6:8.1f} MB/s ETA {_fmt_eta(left)}")

    def close(self):
        if self._bar is not None:
            bar, self._bar = self._bar, None
            try:
                bar.close()
            except (OSError, ValueError):
                self._silence()
        elif self.mode == "lines" and self.name and self.done:
            self._line(time.monotonic())
        self.name = ""

    def message(self, text):
        if self.mode != "quiet":
            self._print(f"fastdump: {text}")

    def _print(self, text):
        try:
            print(text, file=self.stream, flush=True)
        except (OSError, ValueError):   # a full, closed or gone stream: the dump goes on
            self._silence()

    def _silence(self):
        """The stream failed: no more progress on it (the dump does not depend on it)."""
        self.mode = "quiet"
        self._bar = None


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False
