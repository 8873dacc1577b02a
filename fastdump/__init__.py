"""fastdump: copy a Linux crash dump (/proc/vmcore) fast, filtered and compressed.

Python API for capture scripts::

    import fastdump
    stats = fastdump.dump("/proc/vmcore", "/var/crash/vmcore", level=31, compress="zstd")
    with fastdump.open("/var/crash/vmcore") as d:
        page = d.read_pfn(0x1000)

Paths may be str, bytes or os.PathLike; a file descriptor (int) is refused, never
closed.  Every error is a ``fastdump.errors.FastdumpError`` (bad arguments: UsageError).
"""

__version__ = "0.1.0"

from .errors import FastdumpError  # noqa: E402
from .copy.pipeline import Stats, dump  # noqa: E402
from .sources.opener import open_dump as open  # noqa: E402,A001

__all__ = ["dump", "open", "Stats", "FastdumpError", "__version__"]
