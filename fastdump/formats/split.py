"""Split kdump dumps: ``--reassemble`` joins the parts of a ``--split`` dump.

Parts (fastdump's or makedumpfile's) share a byte-identical disk_dump_header and
full bitmaps; each holds the descriptors and data of one pfn range.  The result
is one ordinary kdump-compressed file: the part-0 sub header with the split
fields cleared, the same notes and bitmaps, then all descriptors and data with
offsets rewritten.  A part's zero pages (descriptors pointing at its own zero
block) point at the new file's shared zero block.  A part's eraseinfo (``--config``) is written after the data and named
by the sub header, as makedumpfile does.  The result carries checksums
of its own (``checksums.py``), unless a part was incomplete.  A part cut short (flagged
incomplete: a full disk under one target of ``--split``) is joined as it stands, and so is
the result flagged; makedumpfile 1.7 refuses such a part.
"""

import contextlib
import os
import zlib

from .. import safefile
from ..errors import FastdumpError, FormatError
from ..targets.sinks import FileSink
from ..kernel.erase import recorded
from . import checksums, kdump, salvage

CHUNK = 1 << 10  # descriptors per step (on a full disk, what is lost is at most one step)


def _load_parts(paths):
    if len(set(os.path.realpath(p) for p in paths)) != len(paths):
        raise FormatError("the same part is named twice")
    parts = [kdump.KdumpReader(p) for p in paths]
    heads = set()
    for p in parts:
        # a part cut short (a full disk, a kill) is flagged incomplete in its own header,
        # the rest of which it shares with the others
        heads.add(p.header._replace(status=p.header.status & ~kdump.STATUS_INCOMPLETE))
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


class Joined(int):
    """The number of pages joined; ``lost``: how many of them a part held but could not give
    (data outside its page area, failing its checksum, or not decoding; a descriptor
    never written in a part not flagged incomplete).  They are left out as never
    written, and the joined dump is flagged incomplete.  ``incomplete_parts``: the paths of
    the parts that were flagged incomplete themselves (their unwritten pages stay so)."""
    lost = 0
    incomplete_parts = ()


def _joined_bitmap2(parts):
    """The 2nd bitmap of the whole dump: each part's own bits over its own pfn range.
    They differ from the other parts' copies where a part could not read a page (EIO) or
    was cut short: fastdump takes those pages out of that part's own copy only, and the
    part's descriptors are counted by it (with the first part's bits, every descriptor
    after such a page landed on the wrong pfn)."""
    whole = bytearray(parts[0].bitmap_regions()[1])
    for p in parts[1:]:
        own = p.bitmap_regions()[1]
        lo, hi = p.start_pfn, p.end_pfn
        a, b = (lo + 7) >> 3, hi >> 3                  # the bytes wholly inside the range
        if a < b:
            whole[a:b] = own[a:b]
        for pfn in list(range(lo, min(hi, a << 3))) + list(range(max(lo, b << 3), hi)):
            bit = 1 << (pfn & 7)
            whole[pfn >> 3] = (whole[pfn >> 3] & ~bit) | (own[pfn >> 3] & bit)
    return bytes(whole)


def _descriptors(part, first, n):
    """Descriptors ``first``..``first+n-1`` of a part; one flagged incomplete may end before
    its table does (makedumpfile's), and what it lacks reads as never written."""
    if not part.incomplete:
        return part.read_descriptors(first, n)
    got = part.read_descriptors(first, n, partial=True)
    return got if len(got.raw) == kdump.DESC.size * n else kdump.Descriptors(
        got.raw + bytes(kdump.DESC.size * n - len(got.raw)))


def _page_data(part, pfn, off, size, flags, page_flags):
    """A part's stored bytes of page ``pfn``, or None when they cannot be what it wrote."""
    if off < part.desc_off or size > part.block_size or off + size > part.file_size:
        return None
    data = part.read_at(off, size)
    if page_flags >> 32 in checksums.DESC_TAGS:        # fastdump's: the checksum says
        desc = kdump.DESC.pack(off, size, flags, page_flags)
        return data if checksums.desc_checksum_holds(desc, zlib.crc32(data), pfn) else None
    try:                                               # another tool's: it must decode
        kdump.decode_page(flags, data, part.page_size)
    except FormatError:
        return None
    return data


def reassemble(paths, target, *, force=False):
    """Join split parts into ``target``; returns the number of pages (a ``Joined``).
    Each page's bytes are checked against their part (its checksum, or by decoding),
    so a damaged part cannot be sealed into a joined dump whose checksums match."""
    safefile.refuse_clashes([target], paths)
    parts = _load_parts(paths)
    first = parts[0]
    try:
        head = bytearray(first.prologue())
        head[kdump.HEADER.size:first.block_size] = bytes(first.block_size - kdump.HEADER.size)   # a part's trailer
        bitmap1, bitmap2 = first.bitmap_regions()[0], _joined_bitmap2(parts)
        # the table as the parts lay it out (their zero block follows it); a part cut short
        # fills fewer of its slots
        total = first.n_descriptors(all_parts=True)
        desc_table = first.desc_off
        data_start = desc_table + kdump.DESC.size * total
        zero_new = first.zero_page_offset()      # the same place in the whole file as in each part
        if zero_new is not None:
            data_start += first.block_size
        # the eraseinfo before the page data, as fastdump's writer places it: a join cut
        # short still says what was erased
        eraseinfo = next((info for info in map(recorded, parts) if info), b"")
        whole = first.sub_header._replace(split=0, start_pfn=0, end_pfn=0, start_pfn_64=0, end_pfn_64=0,
                                          offset_eraseinfo=data_start if eraseinfo else 0,
                                          size_eraseinfo=len(eraseinfo))
        kdump.SUB_HEADER.pack_into(head, first.block_size, *whole)
        eraseinfo_at = data_start
        data_start += len(eraseinfo)
        sums = checksums.Builder(block_size=first.block_size, bitmap1=first.bitmap1_off,
                                 bitmap_len=first.bitmap_len)
        sink = FileSink(target, force=force)
    except BaseException:
        for p in parts:
            p.close()
        raise
    lost = 0
    try:
        # as the main writer: header flagged incomplete, notes, bitmaps and the descriptor
        # table on disk first; a cut anywhere later leaves a readable, flagged file
        sink.pwrite(kdump.flag_incomplete(head[:kdump.HEADER.size]) + bytes(head[kdump.HEADER.size:]), 0)
        sink.reserve(data_start, allocate=True)
        sink.pwrite(bitmap1 + bitmap2, first.bitmap1_off)
        bs = first.block_size
        sums.region(checksums.SUB_HEADER, bs, head[bs:].ljust(first.bitmap1_off - bs, b"\0"))
        sums.bitmap(checksums.BITMAP1, 0, bitmap1)
        sums.bitmap(checksums.BITMAP2, 0, bitmap2)
        zero_crc = zlib.crc32(bytes(bs))
        if zero_new is not None:
            sink.pwrite(bytes(bs), zero_new)
            sums.region(checksums.ZERO_PAGE, zero_new, bytes(bs))
        if eraseinfo:
            sink.pwrite(eraseinfo, eraseinfo_at)
            sums.region(checksums.ERASEINFO, eraseinfo_at, eraseinfo)
        sink.barrier()
        desc_out, data_out, pages = desc_table, data_start, 0
        for p in parts:
            count = p.n_descriptors()
            zero_old = p.zero_page_offset()
            pfns = p.pfns()                            # descriptor i is the part's i-th dumped pfn
            for i in range(0, count, CHUNK):
                n = min(CHUNK, count - i)
                out = bytearray()
                for (off, size, flags, page_flags), pfn in zip(_descriptors(p, i, n), pfns):
                    if off == 0:                       # lost in an incomplete part: stays lost
                        lost += not p.incomplete
                        out += kdump.DESC.pack(0, 0, 0, 0)
                        continue
                    if off == zero_old and zero_new is not None:
                        desc, data_crc = kdump.DESC.pack(zero_new, size, flags, 0), zero_crc
                    else:
                        data = _page_data(p, pfn, off, size, flags, page_flags)
                        if data is None:               # damaged: left out as never written
                            # (a part cut short before the page's data reached it: not damage)
                            lost += not (p.incomplete and off + size > p.file_size)
                            out += kdump.DESC.pack(0, 0, 0, 0)
                            continue
                        sink.pwrite(data, data_out)
                        desc, data_crc = kdump.DESC.pack(data_out, size, flags, 0), zlib.crc32(data)
                        data_out += size
                    out += checksums.with_checksum(desc, data_crc, pfn)
                sink.pwrite(bytes(out), desc_out)
                desc_out += len(out)
                pages += n
        incomplete = lost or any(p.incomplete for p in parts)
        final_head = head[:kdump.HEADER.size]
        if incomplete:
            final_head = kdump.flag_incomplete(final_head)
        else:                                      # an incomplete result carries no checksums
            final_head, tail = kdump.seal(sums, final_head, page_size=bs, nr_cpus=first.nr_cpus,
                                          end=data_out, count=pages)
            if tail:
                sink.pwrite(tail, data_out)
        sink.barrier()
        sink.pwrite(final_head, 0)
        sink.commit()
        joined = Joined(pages)
        joined.lost = lost
        joined.incomplete_parts = tuple(p.path for p in parts if p.incomplete)
        return joined
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
