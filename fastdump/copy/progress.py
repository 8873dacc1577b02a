"""Progress: a tqdm bar on a terminal, plain periodic lines on a serial console.

A capture kernel's console is a serial line that scrolls and is logged, so when
stderr is not a TTY we print one short line every few seconds instead of a bar.
tqdm is optional (a capture initramfs does not hold it): without it a terminal gets the
plain lines too, never an ImportError in the middle of a dump.
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
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if hasattr(self.stream, "isatty") and self.stream.isatty() else "lines"
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
            self._bar = tqdm(total=self.total * unit_bytes, desc=name, unit="B", unit_scale=True,
                             unit_divisor=1024, file=self.stream, leave=False)

    def update(self, units):
        self.done += units
        if self._bar is not None:
            self._bar.update(units * self.unit_bytes)
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
        print(f"fastdump: {self.name} {pct:5.1f}% {rate / 1e6:8.1f} MB/s ETA {_fmt_eta(left)}",
              file=self.stream, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "lines" and self.name and self.done:
            self._line(time.monotonic())
        self.name = ""

    def message(self, text):
        if self.mode != "quiet":
            print(f"fastdump: {text}", file=self.stream, flush=True)
