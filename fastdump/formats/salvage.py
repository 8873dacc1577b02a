"""Leave a kdump file that stopped half way readable: flagged incomplete, claiming
only pages that are really in it.

The main writer knows which pages it wrote; ``-R`` (records in whatever order
the stream brings them) and ``--reassemble`` look at what reached the file
instead: a 2nd-bitmap bit whose descriptor is missing (zeros, or past the end)
or points past the end of the file is cleared, so readers (crash, libkdumpfile,
fastdump) report the page as not dumped instead of reading beyond the file.
"""

import os

from ..errors import FastdumpError
from . import kdump

CHUNK = 1 << 14                           # descriptors per read


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
        for first, end in d.dumped_runs():
            for at in range(first, end, CHUNK):
                n = min(CHUNK, end - at)
                descs = d.read_descriptors(index, n, partial=True)
                for i in range(n):       # a descriptor past the end of the file was never written
                    off, size = (descs.offsets[i], descs.sizes[i]) if i < len(descs) else (0, 0)
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
        sink.pwrite(kdump.flag_incomplete(head), 0)
