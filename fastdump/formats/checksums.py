"""Checksums that let a dump prove its own integrity.

A dump travels (NFS, ssh, object stores) before it is opened; ``fastdump verify
DUMP`` without the source can then tell a flipped byte from a good page.  Where
they live, so that crash, makedumpfile and libkdumpfile read the dump unchanged
(they only follow header offsets and page descriptors):

- a *page checksum* in each page descriptor's ``page_flags``, a field that
  makedumpfile writes as 0 and no reader uses: a tag in the top half, in the low
  half crc32 of the page's stored bytes continued over the descriptor's size and
  flags and the pfn (``_core.desc_checksum``).  The tag ``DESC_TAG_WHOLE`` also
  says that the file, once complete, ends with a trailer (so a trailer wiped out
  is found), ``DESC_TAG_PART`` that it is a ``--split`` part (parts joined by
  another tool carry no trailer); ``DESC_TAG`` is the first version, whose
  checksum does not cover the pfn.  It costs the file no
  byte (a dump is no larger than makedumpfile's for the same pages), a
  descriptor is checked with the page it describes, and a dump cut short keeps
  the checksums of the pages it has.  The crc of the stored bytes is computed by
  the compiled core on the worker threads that pack the pages.
- a *trailer*: crc32 of every other region (the header block, sub header and
  notes, each bitmap block, the zero block), closed by a footer written twice, so
  that no single damaged byte can hide that the dump has checksums.  It fills the
  end of the header block, which the 464-byte disk_dump_header leaves empty (and
  goes out in the same write that marks the dump complete), so the file is not one
  byte larger than makedumpfile's; only where it does not fit there (a machine of
  some 50 GiB and more: 48 bytes per 128 MiB of RAM) it follows the last page data.

A filtered ELF dump (``elfdump.py``) has a crc32 of each page-size block of its
PT_LOAD data, between the notes and that data, and after the data the same
trailer (its region: the headers and notes).  A dump cut short (flagged
incomplete) has no trailer.
"""

import struct
import zlib
from array import array

from .. import _core

MAGIC = b"fastdump-sums\0\0\0"
VERSION = 2          # 1: every bitmap block a region of its own (read still)
ALGO_CRC32 = 1
#: magic, version, algorithm, scheme, block, array offset and count, data offset and length, regions
HEAD = struct.Struct("<16sIIIIQQQQQ")
#: version 2, after HEAD: where the 1st bitmap starts and how many blocks each bitmap has; after
#: the regions, one u32 crc32 per block of the 1st bitmap, then of the 2nd (8 bytes per 128 MiB of RAM)
BITMAPS = struct.Struct("<QQ")
#: where the page checksums are: an array of one u32 per kdump descriptor (fastdump
#: before 2026-12-02; not checked now), an array of one per ``block`` bytes of the
#: data region (ELF), or in each kdump descriptor's page_flags
PER_DESCRIPTOR, PER_BLOCK, IN_DESCRIPTORS = 1, 2, 3
DESC_TAG = _core.DESC_CHECKSUM_TAG       # version 1: without the pfn (read still)
DESC_TAG_WHOLE, DESC_TAG_PART = _core.DESC_TAG_WHOLE, _core.DESC_TAG_PART
DESC_TAGS = (DESC_TAG, DESC_TAG_WHOLE, DESC_TAG_PART)
REGION = struct.Struct("<QQII")        # offset, length, crc32, kind
FOOTER_MAGIC = b"FDSUMEND"
FOOTER = struct.Struct("<8sQQII")      # magic, trailer offset, trailer length, crc32(trailer), crc32(above)
ENTRY = struct.Struct("<I")            # one entry of the array

#: the trailer of a 64 TiB machine's kdump dump (4 bytes per bitmap block) is about 4 MiB
MAX_TRAILER = 256 << 20

HEADER, SUB_HEADER, BITMAP1, BITMAP2, ZERO_PAGE, ELF_HEADERS, ERASEINFO = 1, 2, 3, 4, 5, 6, 7
KIND_NAMES = {HEADER: "header block", SUB_HEADER: "sub header and notes", BITMAP1: "1st bitmap",
              BITMAP2: "2nd bitmap", ZERO_PAGE: "shared zero page",
              ELF_HEADERS: "ELF header, program headers and notes", ERASEINFO: "eraseinfo"}


def with_checksum(desc, data_crc, pfn, tag=DESC_TAG_WHOLE):
    """A packed kdump descriptor of page ``pfn`` with its page_flags set to its checksum,
    ``data_crc`` being crc32 of the page's stored bytes (the compiled core does the same)."""
    return desc[:16] + _core.desc_checksum(data_crc, desc, pfn, tag).to_bytes(8, "little")


def desc_checksum_holds(desc, data_crc, pfn):
    """Whether a packed descriptor that carries one of fastdump's tags holds the checksum of
    page ``pfn`` whose stored bytes have crc32 ``data_crc``."""
    tag = int.from_bytes(desc[16:24], "little") >> 32
    return tag in DESC_TAGS and with_checksum(desc, data_crc, pfn, tag)[16:] == desc[16:24]


def entries(raw):
    """The crc32 values of an array's bytes (a cut last entry left out)."""
    return [c for (c,) in ENTRY.iter_unpack(raw[:len(raw) // ENTRY.size * ENTRY.size])]


class Builder:
    """The writer's side: collects region checksums as the regions are written."""

    def __init__(self, *, block_size, bitmap1=0, bitmap_len=0):
        self.block_size = block_size
        self.bitmap_off = {BITMAP1: bitmap1, BITMAP2: bitmap1 + bitmap_len}
        zero = zlib.crc32(bytes(block_size))
        nblocks = bitmap_len // block_size
        # a bitmap block nobody writes is a hole in the file: zeros
        self.bitmap_crcs = {BITMAP1: array("I", [zero]) * nblocks, BITMAP2: array("I", [zero]) * nblocks}
        self.regions = {}
        self.footer_at = None

    def region(self, kind, offset, data):
        self.regions[kind] = (offset, len(data), zlib.crc32(data))

    def bitmap(self, kind, at, data):
        """Bytes ``data`` were written at byte ``at`` of a bitmap (``at`` block-aligned,
        or the block is recomputed from ``data`` holding the whole block)."""
        bs = self.block_size
        view = memoryview(data).cast("B")
        for i in range(0, len(view), bs):
            chunk = bytes(view[i:i + bs])
            self.bitmap_crcs[kind][(at + i) // bs] = zlib.crc32(chunk.ljust(bs, b"\0"))

    def trailer_size(self, *, more_regions=0):
        """The length of ``trailer``'s bytes (with ``more_regions`` regions not yet given)."""
        return HEAD.size + BITMAPS.size + REGION.size * (len(self.regions) + more_regions) \
            + 4 * sum(map(len, self.bitmap_crcs.values())) + 2 * FOOTER.size

    def trailer(self, at, *, array_off, array_count, scheme=IN_DESCRIPTORS, data=(0, 0)):
        """The trailer bytes to write at offset ``at`` (after the last page data, or at
        the end of a kdump header block); ``data`` is the (offset, length) of the region
        a PER_BLOCK array covers."""
        regions = [(off, size, c, kind) for kind, (off, size, c) in sorted(self.regions.items())]
        body = HEAD.pack(MAGIC, VERSION, ALGO_CRC32, scheme, self.block_size, array_off, array_count,
                         data[0], data[1], len(regions)) \
            + BITMAPS.pack(self.bitmap_off[BITMAP1], len(self.bitmap_crcs[BITMAP1])) \
            + b"".join(REGION.pack(*r) for r in regions) \
            + b"".join(struct.pack(f"<{len(c)}I", *c) for c in (self.bitmap_crcs[BITMAP1], self.bitmap_crcs[BITMAP2]))
        fields = FOOTER_MAGIC + struct.pack("<QQI", at, len(body), zlib.crc32(body))
        footer = fields + struct.pack("<I", zlib.crc32(fields))
        self.footer_at = at + len(body)
        return body + footer + footer

    def withdraw(self, sink):
        """Blank the footer again if the trailer was written (the dump then failed):
        the header changes to incomplete, so the checksums would not hold."""
        if self.footer_at is not None:
            sink.pwrite(bytes(2 * FOOTER.size), self.footer_at)
            self.footer_at = None


class Sums:
    """What a dump's trailer says (the reader's side)."""

    def __init__(self, scheme, block, array_off, array_count, data, regions, trailer_off, problem):
        self.scheme, self.block = scheme, block
        self.data_off, self.data_len = data
        self.array_off, self.array_count = array_off, array_count
        self.array_end = array_off + 4 * array_count
        self.regions = regions        # [(offset, length, crc, kind)]
        self.trailer_off = trailer_off
        self.problem = problem        # a damaged copy of the footer, or None


def bad_regions(sums, read, file_size):
    """The regions of the trailer ``sums`` (offset, length, kind) whose bytes, through
    ``read(offset, size)``, do not match their crc32 (or lie past ``file_size``)."""
    for off, size, want, kind in sums.regions:
        data = read(off, size) if 0 <= off and off + size <= file_size else b""
        if len(data) != size or zlib.crc32(data) != want:
            yield off, size, kind


def _footer(raw):
    magic, off, length, body_crc, self_crc = FOOTER.unpack(raw)
    if magic != FOOTER_MAGIC or zlib.crc32(raw[:-4]) != self_crc:
        return None
    return off, length, body_crc


def load(read, file_size, *, header_block=None):
    """The trailer of a dump, through ``read(offset, size)``: a Sums, or None when
    the dump has none (another tool's, an older fastdump's, or cut short).  It ends
    the file, or (a kdump dump, ``header_block`` its block size) the header block.
    Raises ValueError when there is one and it is damaged."""
    found = _load_ending_at(read, file_size)
    if found is None and header_block and 2 * FOOTER.size <= header_block <= file_size:
        found = _load_ending_at(read, header_block)
    if found is None:
        _no_footer_near_the_end(read, file_size)
    return found


#: how far before the end of a file a footer moved by a cut or by bytes added is looked for
FOOTER_SEARCH = 1 << 20


def _footer_after(raw, body):
    """The bytes where the footer of the trailer at ``raw[body:]`` goes (fewer when the
    file ends first), or None when that is no trailer of ours."""
    if len(raw) - body < HEAD.size:
        return b"-"                                    # a trailer's head, cut: not withdrawn
    _, version, algo, _, _, _, _, _, _, nregions = HEAD.unpack_from(raw, body)
    if version not in (1, VERSION) or algo != ALGO_CRC32 or nregions > MAX_TRAILER // REGION.size:
        return None
    length, nblocks = HEAD.size + nregions * REGION.size, 0
    if version == VERSION:
        if len(raw) - body < HEAD.size + BITMAPS.size:
            return b"-"
        nblocks = BITMAPS.unpack_from(raw, body + HEAD.size)[1]
        length += BITMAPS.size + 8 * nblocks
    if length > MAX_TRAILER:
        return None
    return raw[body + length:body + length + 2 * FOOTER.size] or b"-"


def _no_footer_near_the_end(read, file_size):
    """A file cut short or extended moves the footer off the end, where ``load`` looks:
    if a copy of it lies in the last MiB, the file's end was changed (and its checksums
    must not pass for absent).  Raises ValueError then."""
    start = max(0, file_size - FOOTER_SEARCH)
    raw = read(start, file_size - start)
    body = raw.rfind(MAGIC)
    if body >= 0 and raw.find(FOOTER_MAGIC, body) < 0:
        footer = _footer_after(raw, body)
        if footer is not None and footer != bytes(len(footer)):   # zeros: withdrawn (a failed dump)
            raise ValueError(f"a checksum trailer lies at {start + body:#x} without its footer: "
                             f"the file was cut short")
    at = raw.rfind(FOOTER_MAGIC)
    while at >= 0:
        whole, where = raw[at:at + FOOTER.size], start + at
        found = _footer(whole) if len(whole) == FOOTER.size else None
        # a copy of this file's footer names the trailer just before it (either copy);
        # one that names anything else belongs to other bytes (a file in a page of memory)
        if len(whole) < FOOTER.size or (found and found[0] + found[1] in (where, where - FOOTER.size)):
            raise ValueError(f"a checksum footer lies at {where:#x}, not at the end of the file "
                             f"({file_size:#x}): the file was cut short or added to")
        at = raw.rfind(FOOTER_MAGIC, 0, at)


def _load_ending_at(read, end):
    if end < 2 * FOOTER.size:
        return None
    raw = read(end - 2 * FOOTER.size, 2 * FOOTER.size)
    copies = [raw[:FOOTER.size], raw[FOOTER.size:]]
    found = [_footer(c) for c in copies]
    if not any(found):
        if any(c[:len(FOOTER_MAGIC)] == FOOTER_MAGIC for c in copies):
            raise ValueError("the checksum footer is damaged (both copies)")
        return None
    problem = None
    if copies[0] != copies[1]:
        problem = "one of the two copies of the checksum footer (the last 64 bytes) is damaged"
    off, length, body_crc = next(f for f in found if f)
    if off + length + 2 * FOOTER.size != end or not HEAD.size <= length <= MAX_TRAILER:
        raise ValueError(f"the checksum trailer at {off:#x}+{length} does not end at the footer")
    body = read(off, length)
    if zlib.crc32(body) != body_crc:
        raise ValueError(f"the checksum trailer at {off:#x} is damaged")
    magic, version, algo, scheme, block, array_off, array_count, data_off, data_len, nregions = \
        HEAD.unpack_from(body)
    bitmap_off, nblocks, at = 0, 0, HEAD.size
    if version == VERSION and length >= HEAD.size + BITMAPS.size:
        bitmap_off, nblocks = BITMAPS.unpack_from(body, HEAD.size)
        at += BITMAPS.size
    if magic != MAGIC or version not in (1, VERSION) or algo != ALGO_CRC32 \
            or scheme not in (PER_DESCRIPTOR, PER_BLOCK, IN_DESCRIPTORS) or not 0 < block <= 1 << 20 \
            or at + nregions * REGION.size + 8 * nblocks != length:
        raise ValueError(f"unknown checksum trailer (version {version}, algorithm {algo})")
    regions = [REGION.unpack_from(body, at + i * REGION.size) for i in range(nregions)]
    tail = body[at + nregions * REGION.size:]
    crcs = struct.unpack(f"<{len(tail) // 4}I", tail)
    for i, c in enumerate(crcs):     # version 2's bitmap blocks, as the regions they are
        kind, k = (BITMAP1, i) if i < nblocks else (BITMAP2, i - nblocks)
        regions.append((bitmap_off + block * (k + nblocks * (kind == BITMAP2)), block, c, kind))
    return Sums(scheme, block, array_off, array_count, (data_off, data_len), regions, off, problem)
