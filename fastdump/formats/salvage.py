"""Leave a kdump file that stopped half way readable: flagged incomplete, claiming
only pages that are really in it.

The main writer knows which pages it wrote; ``-R`` (records in whatever order
the stream brings them) and ``--reassemble`` look at what reached the file
instead: a 2nd-bitmap bit whose descriptor is missing (zeros, or past the end)
or points past the end of the file is cleared, so readers (crash, libkdumpfile,
fastdump) report the page as not dumped instead of reading beyond the file.
"""

import os
import struct

from .. import _core
from ..errors import FastdumpError
from . import kdump

STATUS_AT = kdump.HEADER.size - 40        # disk_dump_header.status
CHUNK = 1 << 14                           # descriptors per read


def flag_incomplete(head):
    """``head`` (the header's bytes) with the incomplete status bit set."""
    head = bytearray(head)
    status = struct.unpack_from("<I", head, STATUS_AT)[0]
    struct.pack_into("<I", head, STATUS_AT, status | kdump.STATUS_INCOMPLETE)
    return bytes(head)


def seal(sink):
    """Mark the kdump file a ``FileSink`` holds as incomplete and unclaim the pages
    it does not hold.  Anything that is not (yet) a kdump file is left as it is.
    Only bytes already written are rewritten (header, bitmap): this works on a full disk."""
    try:
        d = kdump.KdumpReader(f"/proc/self/fd/{sink.fd}")
    except FastdumpError:
        return _flag_header(sink)
    try:
        bitmap = bytearray(d.bitmap2())
        index, changed = 0, False
        for first, end in _core.bitmap_runs(bytes(bitmap), d.max_mapnr):
            first, end = max(first, d.start_pfn), min(end, d.end_pfn)
            for at in range(first, end, CHUNK):
                n = min(CHUNK, end - at)
                raw = _read_upto(d, d.desc_off + kdump.DESC.size * index, kdump.DESC.size * n)
                for i, (off, size, _, _) in enumerate(struct.iter_unpack("<qIIQ", raw)):
                    if off <= 0 or size > d.block_size or off + size > d.file_size:
                        pfn = at + i
                        bitmap[pfn >> 3] &= ~(1 << (pfn & 7)) & 0xFF
                        changed = True
                index += n
        if changed:
            sink.pwrite(bytes(bitmap), d.bitmap2_off)
    finally:
        d.close()
    _flag_header(sink)


def _flag_header(sink):
    fd = os.open(f"/proc/self/fd/{sink.fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = os.pread(fd, kdump.HEADER.size, 0)
    finally:
        os.close(fd)
    if len(head) == kdump.HEADER.size and head.startswith(kdump.SIGNATURE):
        sink.pwrite(flag_incomplete(head), 0)


def _read_upto(d, off, size):
    """Descriptor bytes, zeros where the file ends first (never written)."""
    have = max(0, min(size, d.file_size - off))
    return (d._read(off, have) if have else b"").ljust(size, b"\0")
