"""Split kdump dumps: ``--reassemble`` joins the parts of a ``--split`` dump.

Parts (fastdump's or makedumpfile's) share a byte-identical disk_dump_header and
full bitmaps; each holds the descriptors and data of one pfn range.  The result
is one ordinary kdump-compressed file: the part-0 sub header with the split
fields cleared, the same notes and bitmaps, then all descriptors and data with
offsets rewritten.  A part's zero pages (descriptors pointing at its own zero
block) point at the new file's shared zero block.
"""

import contextlib
import os
import struct

from ..errors import FastdumpError, FormatError
from ..output import FileSink
from . import kdump, salvage

CHUNK = 1 << 10  # descriptors per step (on a full disk, what is lost is at most one step)


def _load_parts(paths):
    if len(set(os.path.realpath(p) for p in paths)) != len(paths):
        raise FormatError("the same part is named twice")
    parts = [kdump.KdumpReader(p) for p in paths]
    heads = set()
    for p in parts:
        heads.add(p._read(0, kdump.HEADER.size))
        if not p.split:
            raise FormatError(f"{p.path} is not a part of a split dump")
    if len(heads) != 1:
        raise FormatError("the parts' headers differ: they are not from one split dump")
    parts.sort(key=lambda p: p.start_pfn)
    if parts[0].start_pfn != 0 or parts[-1].end_pfn != parts[0].max_mapnr or any(
            a.end_pfn != b.start_pfn for a, b in zip(parts, parts[1:])):
        ranges = ", ".join(f"[{p.start_pfn:#x}, {p.end_pfn:#x})" for p in parts)
        raise FormatError(f"the parts do not cover memory exactly once: {ranges}")
    return parts


def reassemble(paths, target, *, force=False):
    """Join split parts into ``target``; returns the number of pages."""
    parts = _load_parts(paths)
    first = parts[0]
    try:
        head = bytearray(first._read(0, (1 + first.sub_hdr_size) * first.block_size))
        sub = list(kdump.SUB_HEADER.unpack_from(head, first.block_size))
        sub[2] = 0                       # split
        sub[3] = sub[4] = 0              # start_pfn, end_pfn (legacy)
        sub[11] = sub[12] = 0            # start_pfn_64, end_pfn_64
        kdump.SUB_HEADER.pack_into(head, first.block_size, *sub)
        total = first._prefix[-1]
        desc_table = first.desc_off
        data_start = desc_table + kdump.DESC.size * total
        zero_new = None
        if first.dump_level & 1:
            zero_new = data_start
            data_start += first.block_size
        sink = FileSink(target, force=force)
    except BaseException:
        for p in parts:
            p.close()
        raise
    final_head = head[:kdump.HEADER.size]
    if any(p.incomplete for p in parts):
        final_head = salvage.flag_incomplete(final_head)
    try:
        # as the main writer: header flagged incomplete, notes, bitmaps and the descriptor
        # table on disk first; a cut anywhere later leaves a readable, flagged file
        sink.pwrite(salvage.flag_incomplete(head[:kdump.HEADER.size]) + bytes(head[kdump.HEADER.size:]), 0)
        sink.reserve(data_start, allocate=True)
        sink.pwrite(first._read(first.bitmap1_off, 2 * first.bitmap_len), first.bitmap1_off)
        if zero_new is not None:
            sink.pwrite(bytes(first.block_size), zero_new)
        sink.barrier()
        desc_out, data_out, pages = desc_table, data_start, 0
        for p in parts:
            count = p._prefix_index(p.end_pfn) - p._prefix_index(p.start_pfn)
            zero_old = p.desc_off + kdump.DESC.size * total if p.dump_level & 1 else None
            for i in range(0, count, CHUNK):
                n = min(CHUNK, count - i)
                raw = p._read(p.desc_off + kdump.DESC.size * i, kdump.DESC.size * n)
                out = bytearray()
                for off, size, flags, pflags in struct.iter_unpack("<qIIQ", raw):
                    if off == 0:                       # lost in an incomplete part: stays lost
                        out += kdump.DESC.pack(0, 0, 0, 0)
                    elif off == zero_old and zero_new is not None:
                        out += kdump.DESC.pack(zero_new, size, flags, pflags)
                    else:
                        if size > p.block_size:
                            raise FormatError(f"{p.path}: page data larger than a page")
                        sink.pwrite(p._read(off, size), data_out)
                        out += kdump.DESC.pack(data_out, size, flags, pflags)
                        data_out += size
                sink.pwrite(bytes(out), desc_out)
                desc_out += len(out)
                pages += n
        sink.barrier()
        sink.pwrite(final_head, 0)
        sink.commit()
        return pages
    except BaseException as e:
        with contextlib.suppress(FastdumpError):
            salvage.seal(sink)
        path = sink.abandon()
        if isinstance(e, FastdumpError):
            raise type(e)(f"{e} (what was joined is in {path}, flagged incomplete)") from None
        raise
    finally:
        for p in parts:
            p.close()
