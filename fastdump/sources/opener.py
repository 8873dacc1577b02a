"""``fastdump.open``: any dump we can read, behind one small interface.

Every reader has ``format``, ``page_size``, ``vmcoreinfo``, ``notes``,
``note_bytes``, ``max_mapnr``/``max_pfn``, ``pfns()``, ``is_dumped(pfn)``,
``read_pfn(pfn)``, ``read_phys(addr, size)``, ``describe()`` and ``close()``, and
``kernel``: the crashed kernel's symbols and types (:mod:`fastdump.kernel.types`).
"""

import os

from .files import open_input
from ..errors import FormatError
from ..formats.kdump import SIGNATURE as KDUMP_SIGNATURE, KdumpReader
from ..kernel.types.kernel import Kernel
from ..options import path_arg
from .vmcore import ElfSource

FLAT_SIGNATURE = b"makedumpfile\0"


def sniff(path):
    fd = open_input(path, FormatError)
    try:
        head = os.pread(fd, 16, 0)
    except OSError as e:
        raise FormatError(f"cannot read {path}: {e.strerror}") from None
    finally:
        os.close(fd)
    if head.startswith(KDUMP_SIGNATURE):
        return "kdump"
    if head.startswith(b"\x7fELF"):
        return "elf"
    if head.startswith(FLAT_SIGNATURE):
        return "flattened"
    if head.startswith(b"DISKDUMP"):
        return "diskdump"
    return None


def open_dump(path):
    """Open a vmcore or dump file for reading; raises FormatError for anything else.

    ``path`` is a path (str, bytes, os.PathLike).  A file descriptor (int) is refused
    with a UsageError: the reader closes what it opens, and an fd is the caller's."""
    path = path_arg(path, "dump file")
    kind = "s3" if isinstance(path, str) and path.startswith("s3://") else sniff(path)
    if kind == "s3":            # a dump in an object store, read in place (ranged GETs)
        from .s3object import S3KdumpReader
        reader = S3KdumpReader(path)
    elif kind == "kdump":
        reader = KdumpReader(path)
    elif kind == "elf":
        reader = ElfSource(path)
        reader.max_mapnr = reader.max_pfn
    else:
        reader = None
    if reader is not None:
        reader.kernel = Kernel(reader)
        return reader
    if kind == "flattened":
        raise FormatError(f"{path} is a flattened stream: rebuild it first (makedumpfile -R)")
    if kind == "diskdump":
        raise FormatError(f"{path} is an old DISKDUMP file, which fastdump does not read")
    raise FormatError(f"{path}: not a vmcore or dump file fastdump knows")
