"""kdump-compressed dumps ("diskdump", signature ``KDUMP   ``): writer and reader.

File map (block = page size): block 0 the disk_dump_header, block 1.. the
kdump_sub_header followed by the ELF notes, then the 1st bitmap (pages that
exist), the 2nd bitmap (pages dumped), the page descriptors (24 bytes each, one
per set bit of the 2nd bitmap, in pfn order), then the page data.  Byte-level
rules (tv_usec 0, shared zero page, LSB-first bitmaps, ...) follow
shared/docs/dump-formats.md §2 and what crash and libkdumpfile check.
fastdump's dumps also carry checksums of everything stored, where those readers
do not look (``checksums.py``).
"""

import bisect
import os
import stat
import struct
from collections import namedtuple

from .. import _core
from ..errors import FormatError
from ..kernel.levels import DumpLevel
from ..kernel.vmcoreinfo import VmcoreInfo
from ..sources.files import ReadOnlyFile
from . import checksums, codecs, elf

SIGNATURE = b"KDUMP   "
HEADER_VERSION = 6


class Layout(struct.Struct):
    """An on-disk C struct: its little-endian struct format with a name per value, so
    the writer packs and the reader unpacks fields by name (``unpack_named``,
    ``pack_named``, ``offset``) and no one counts bytes.  Padding has no name."""

    def __init__(self, name, fields):
        super().__init__("<" + "".join(fmt for _, fmt in fields))
        self.fields = namedtuple(name, [n for n, _ in fields if n])
        self._offsets = {}
        at = ""
        for n, fmt in fields:
            if n:
                self._offsets[n] = struct.calcsize("<" + at)
            at += fmt

    def unpack_named(self, buf, offset=0):
        return self.fields._make(self.unpack_from(buf, offset))

    def pack_named(self, **values):
        return self.pack(*self.fields(**values))

    def offset(self, name):
        """Where field ``name`` lies in the struct's bytes."""
        return self._offsets[name]


#: makedumpfile's struct disk_dump_header (x86_64: the timeval is 8-aligned), 464 bytes
HEADER = Layout("DiskDumpHeader", [
    ("signature", "8s"), ("header_version", "i"),
    ("sysname", "65s"), ("nodename", "65s"), ("release", "65s"), ("version", "65s"), ("machine", "65s"),
    ("domainname", "65s"), (None, "6x"), ("tv_sec", "q"), ("tv_usec", "q"), ("status", "I"),
    ("block_size", "i"), ("sub_hdr_size", "i"), ("bitmap_blocks", "I"), ("max_mapnr", "I"),
    ("total_ram_blocks", "I"), ("device_blocks", "I"), ("written_blocks", "I"), ("current_cpu", "I"),
    ("nr_cpus", "i")])
UTSNAME_FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")
#: struct kdump_sub_header as of header version 6, 104 bytes (the reader uses a field
#: only from the header version that introduced it on)
SUB_HEADER = Layout("KdumpSubHeader", [
    ("phys_base", "Q"), ("dump_level", "i"), ("split", "i"), ("start_pfn", "Q"), ("end_pfn", "Q"),
    ("offset_vmcoreinfo", "Q"), ("size_vmcoreinfo", "Q"), ("offset_note", "Q"), ("size_note", "Q"),
    ("offset_eraseinfo", "Q"), ("size_eraseinfo", "Q"), ("start_pfn_64", "Q"), ("end_pfn_64", "Q"),
    ("max_mapnr_64", "Q")])
#: page_desc_t: where one page's stored bytes are, how many, and how they are compressed
DESC = Layout("PageDesc", [("offset", "q"), ("size", "I"), ("flags", "I"), ("page_flags", "Q")])

# Header status bits besides the compression (``codecs.FLAG_MASK``).
STATUS_INCOMPLETE = 0x8
STATUS_EXCLUDED_VMEMMAP = 0x10
STATUS_KNOWN = codecs.FLAG_MASK | STATUS_INCOMPLETE | STATUS_EXCLUDED_VMEMMAP


#: The notes of a dump are a few KiB per CPU; more is a corrupt size field.
MAX_NOTE_BYTES = 64 << 20


def seal(sums, header, *, page_size, nr_cpus, end, count):
    """A complete dump's header block and checksum trailer (``checksums.Builder``
    ``sums``, ``count`` descriptors): ``(bytes for offset 0, bytes for offset end)``.
    The trailer fills the end of the header block when it fits there, behind the
    header and its (never written) per-CPU task pointers, so the file is no larger
    than makedumpfile's; the header block's checksum then covers the rest of it."""
    size = sums.trailer_size(more_regions=checksums.HEADER not in sums.regions)
    if size <= page_size - HEADER.size - 8 * max(nr_cpus, 0):
        at = page_size - size
        block = header.ljust(at, b"\0")
        sums.region(checksums.HEADER, 0, block)
        return block + sums.trailer(at, array_off=0, array_count=count), b""
    sums.region(checksums.HEADER, 0, header.ljust(page_size, b"\0"))
    return header, sums.trailer(end, array_off=0, array_count=count)


def _blocks(n, block):
    return -(-n // block)


class KdumpLayout:
    """Offsets of every region, known before a byte of page data is written."""

    def __init__(self, *, block_size, max_mapnr, note_size):
        self.block_size = block_size
        self.max_mapnr = max_mapnr
        self.sub_hdr_size = _blocks(SUB_HEADER.size + note_size, block_size)
        self.bitmap_len = _blocks(_blocks(max_mapnr, 8), block_size) * block_size  # one bitmap, bytes
        self.bitmap_blocks = 2 * self.bitmap_len // block_size
        self.offset_note = block_size + SUB_HEADER.size
        self.bitmap1 = (1 + self.sub_hdr_size) * block_size
        self.bitmap2 = self.bitmap1 + self.bitmap_len
        self.desc_table = self.bitmap2 + self.bitmap_len


class KdumpWriter:
    """Writes one kdump-compressed file through a sink with ``pwrite(data, offset)``."""

    def __init__(self, sink, *, page_size, max_mapnr, dump_level, codec, notes, vmcoreinfo_desc_offset,
                 vmcoreinfo_size, nr_cpus, utsname, crashtime, phys_base, split=None, eraseinfo=b""):
        """``eraseinfo``: makedumpfile's record of erased data (``--config``), named in the
        sub header.  makedumpfile writes it after the last page's data; fastdump before the
        first, so that a dump cut anywhere (a full disk, a kill, a stream cut) still says
        what was erased and its erased bytes do not read as memory."""
        self.sink = sink
        self.eraseinfo = eraseinfo
        self.eraseinfo_at = 0
        self.page_size = page_size
        self.layout = KdumpLayout(block_size=page_size, max_mapnr=max_mapnr, note_size=len(notes))
        self.dump_level = dump_level
        self.codec_flag = codecs.by_name(codec).flag
        self.notes = notes
        self.vmci = (vmcoreinfo_desc_offset, vmcoreinfo_size)
        self.nr_cpus = nr_cpus
        self.utsname = utsname
        self.crashtime = crashtime or 0
        self.phys_base = phys_base or 0
        self.split = split  # (start_pfn, end_pfn) for a --split part
        self.desc_off = self.data_off = self.zero_off = None
        self.pages_written = 0
        self.descs_written = 0
        self.sums = checksums.Builder(block_size=page_size, bitmap1=self.layout.bitmap1,
                                      bitmap_len=self.layout.bitmap_len)
        self.done_to = None   # every kept pfn below this has its descriptor and data written
        self.incomplete = True          # what the header on the target says
        #: pfns taken out of the 2nd bitmap, ascending (commits go in pfn order); kept only for a
        #: sink that may ask for the bitmaps again (``remake``), so no other target pays 8 bytes per bad page
        self.unreadable = None
        self.unclaimed = False          # the 2nd bitmap lost the pages never written (a failed dump)
        self.sealed = None              # block 0 of a complete dump: header and checksum trailer

    # -- headers --------------------------------------------------------------
    def header_bytes(self, *, incomplete):
        status = self.codec_flag | (STATUS_INCOMPLETE if incomplete else 0)
        uts = dict(zip(UTSNAME_FIELDS, (f.encode()[:64] for f in self.utsname)))
        lay = self.layout
        return HEADER.pack_named(signature=SIGNATURE, header_version=HEADER_VERSION, **uts,
                                 tv_sec=self.crashtime, tv_usec=0, status=status, block_size=self.page_size,
                                 sub_hdr_size=lay.sub_hdr_size, bitmap_blocks=lay.bitmap_blocks,
                                 max_mapnr=min(lay.max_mapnr, 0xFFFFFFFF), total_ram_blocks=0, device_blocks=0,
                                 written_blocks=0, current_cpu=0, nr_cpus=self.nr_cpus)

    def sub_header_bytes(self):
        lay = self.layout
        vm_off, vm_size = self.vmci
        start, end = self.split or (0, 0)
        return SUB_HEADER.pack_named(
            phys_base=self.phys_base & ((1 << 64) - 1), dump_level=self.dump_level, split=1 if self.split else 0,
            start_pfn=min(start, 0xFFFFFFFF), end_pfn=min(end, 0xFFFFFFFF),
            offset_vmcoreinfo=lay.offset_note + vm_off if vm_size else 0, size_vmcoreinfo=vm_size,
            offset_note=lay.offset_note if self.notes else 0, size_note=len(self.notes),
            offset_eraseinfo=self.eraseinfo_at, size_eraseinfo=len(self.eraseinfo) if self.eraseinfo_at else 0,
            start_pfn_64=start, end_pfn_64=end, max_mapnr_64=lay.max_mapnr)

    def write_prologue(self):
        """Header (marked incomplete until ``finish``), sub header and notes."""
        self.incomplete = True
        self.sink.pwrite(self.header_bytes(incomplete=True).ljust(self.page_size, b"\0"), 0)
        self._write_sub_header()

    def _write_sub_header(self):
        sub = self.sub_header_bytes() + self.notes
        self.sink.pwrite(sub, self.page_size)
        self.sums.region(checksums.SUB_HEADER, self.page_size,
                         sub.ljust(self.layout.bitmap1 - self.page_size, b"\0"))

    def write_bitmaps(self, base_pfn, present, dumpable):
        """One cycle's slice of both bitmaps; ``base_pfn`` is a multiple of 8."""
        at = base_pfn // 8
        self.sink.pwrite(present, self.layout.bitmap1 + at)
        self.sink.pwrite(dumpable, self.layout.bitmap2 + at)
        self.sums.bitmap(checksums.BITMAP1, at, present)
        self.sums.bitmap(checksums.BITMAP2, at, dumpable)

    def pad_bitmaps(self):
        """Write the zero tail of both bitmaps past max_mapnr, so the bitmap region
        exists in full (crash refuses a shorter file, a stream needs the bytes)."""
        used = _blocks(self.layout.max_mapnr, 8)
        tail = bytes(self.layout.bitmap_len - used)
        if tail:
            self.sink.pwrite(tail, self.layout.bitmap1 + used)
            self.sink.pwrite(tail, self.layout.bitmap2 + used)

    # -- pages ----------------------------------------------------------------
    def start_pages(self, num_dumpable, *, desc_base=0, own=None):
        """The table holds ``num_dumpable`` descriptors (all parts' for a split part),
        ``own`` (default: all) of them this file's.  The page data follows the shared
        zero block, as in makedumpfile's files (the checksums ride in the descriptors),
        and the eraseinfo if there is one."""
        self.desc_off = self.layout.desc_table + DESC.size * desc_base
        self.data_off = self.layout.desc_table + DESC.size * num_dumpable
        if self.dump_level & DumpLevel.ZERO:
            self.zero_off = self.data_off
            self.sink.pwrite(bytes(self.page_size), self.zero_off)
            self.sums.region(checksums.ZERO_PAGE, self.zero_off, bytes(self.page_size))
            self.data_off += self.page_size
        else:
            self.zero_off = 0
        if self.eraseinfo:
            self.sink.pwrite(self.eraseinfo, self.data_off)
            self.sums.region(checksums.ERASEINFO, self.data_off, self.eraseinfo)
            self.eraseinfo_at = self.data_off
            self.data_off += len(self.eraseinfo)
            self.sink.barrier()          # on disk before the sub header names it (O_DIRECT buffers it)
            self._write_sub_header()
        self.pages_off = self.data_off     # where the first page's data goes

    def commit(self, job):
        """Write a finished window: its descriptors, then its data."""
        if job.n_pages == 0:
            return
        descs, nbytes = job.kdump_descriptors(self.data_off, self.zero_off, self.codec_flag,
                                              checksums.DESC_TAG_PART if self.split else checksums.DESC_TAG_WHOLE)
        self.sink.pwrite(job.data, self.data_off)
        self.sink.pwrite(descs, self.desc_off)
        self.descs_written += len(descs) // DESC.size
        self.data_off += nbytes
        self.desc_off += len(descs)
        self.pages_written += job.n_pages
        self.done_to = job.window[1]
        if job.unreadable_pages:
            self._drop_from_bitmap2(job)

    def _drop_from_bitmap2(self, job):
        """Unreadable pages got no descriptor: clear their 2nd-bitmap bits, so readers
        see them as not dumped (they stay in the 1st bitmap: memory that existed)."""
        bitmap, base = job.bitmap, job.window[0] - job.window_start
        pfns = job.unreadable_pfns()
        if self.unreadable is not None:
            self.unreadable.extend(sorted(pfns))   # windows commit in pfn order: the array stays sorted
        for pfn in pfns:
            i = pfn - base
            bitmap[i >> 3] &= ~(1 << (i & 7)) & 0xFF
            self.sink.pwrite(bytes([bitmap[i >> 3]]), self.layout.bitmap2 + (pfn >> 3))
            # the cycle bitmap starts on a block boundary: its changed block, again
            bs = self.page_size
            first = (i >> 3) - (i >> 3) % bs
            self.sums.bitmap(checksums.BITMAP2, (base >> 3) + first, bitmap[first:first + bs])

    def finish(self, *, incomplete=False, bitmaps=None):
        """The final header.  For an incomplete dump, ``bitmaps(c0)`` gives each
        cycle's 2nd bitmap, so the pages never written are taken out of it: readers
        then see them as not dumped instead of reading descriptors that were never
        written (the bitmap blocks exist already, so this works on a full disk)."""
        if incomplete and bitmaps is not None and self.desc_off is not None:
            self._unclaim_unwritten(bitmaps)
        self.incomplete = incomplete
        header = self.header_bytes(incomplete=incomplete)
        if not incomplete and self.desc_off is not None:
            header, tail = seal(self.sums, header, page_size=self.page_size, nr_cpus=self.nr_cpus,
                                end=self.data_off, count=self.descs_written)
            if tail:
                self.sink.pwrite(tail, self.data_off)
            self.sealed = header
        elif incomplete:
            self.sums.withdraw(self.sink)   # failed after the trailer went out: a cut dump has none
            self.sealed = None
            header = header.ljust(self.page_size, b"\0")
        self.sink.pwrite(header, 0)

    def remake(self, offset, n, cycle_bitmaps):
        """Bytes ``[offset, offset+n)`` before the descriptor table as they stand now, rebuilt
        from the header fields, ``cycle_bitmaps(lo, hi)`` (``(c0, present, dumpable)`` of each
        cycle meeting pfns lo..hi, as ``write_bitmaps`` got them) and the unreadable pfns:
        a sink that sent those bytes early sends them again from this (targets/s3.py),
        so it never keeps a copy.  Only a complete dump's (a failed one is not rebuilt)."""
        lay = self.layout
        if self.unclaimed or self.unreadable is None or offset + n > lay.desc_table:
            raise FormatError("only a complete dump's header and bitmaps are rebuilt")
        out = bytearray(n)

        def put(at, data):
            a, b = max(at, offset), min(at + len(data), offset + n)
            if a < b:
                out[a - offset:b - offset] = data[a - at:b - at]

        put(0, self.sealed or self.header_bytes(incomplete=self.incomplete))
        put(self.page_size, self.sub_header_bytes() + self.notes)
        for base, second in ((lay.bitmap1, False), (lay.bitmap2, True)):
            a, b = max(offset - base, 0), min(offset + n - base, lay.bitmap_len)
            if a >= b:
                continue
            for c0, present, dumpable in cycle_bitmaps(8 * a, 8 * b):
                bits = present
                if second:
                    bits = bytearray(dumpable)
                    bad = self.unreadable
                    for pfn in bad[bisect.bisect_left(bad, c0):bisect.bisect_left(bad, c0 + 8 * len(bits))]:
                        bits[(pfn - c0) >> 3] &= ~(1 << ((pfn - c0) & 7)) & 0xFF   # as _drop_from_bitmap2 did
                put(base + c0 // 8, bits)
        return out

    def _unclaim_unwritten(self, bitmaps):
        self.unclaimed = True
        lo = self.split[0] if self.split else 0
        first = max(self.done_to or 0, lo)
        hi = self.split[1] if self.split else self.layout.max_mapnr
        for c0, c1, bitmap in bitmaps():
            a, b = max(first, c0), min(hi, c1)
            if a >= b:
                continue
            chunk = bytearray(bitmap[(a - c0) >> 3:((b - c0) + 7) >> 3])
            head = (a - c0) & 7
            chunk[0] &= (1 << head) - 1            # bits below ``a`` in the first byte stay
            chunk[1:] = bytes(len(chunk) - 1)
            if (b - c0) & 7 and len(chunk) > 1:    # bits past ``b`` in the last byte stay
                keep_hi = 0xFF & ~((1 << ((b - c0) & 7)) - 1)
                chunk[-1] = bitmap[((b - c0) >> 3)] & keep_hi
            self.sink.pwrite(bytes(chunk), self.layout.bitmap2 + (c0 >> 3) + ((a - c0) >> 3))


# ---------------------------------------------------------------- reading --

def decode_page(flag, data, page_size):
    """One stored page as every fastdump reader decodes it (``read_pfn``, ``verify``,
    ``convert``): raw, or through the compiled core, which handles every method
    makedumpfile or fastdump writes (zlib, LZO, snappy, zstd, fastdump's lz4), each
    bounded to one page.  Raises FormatError when it is not exactly one page."""
    codec = codecs.by_flag(flag)
    if codec is None:
        raise FormatError(f"unknown page compression flag {flag:#x}")
    if codec is codecs.NONE:
        if len(data) != page_size:
            raise FormatError(f"raw page of {len(data)} bytes, not {page_size}")
        return bytes(data)
    try:
        return _core.decompress_page(flag, data, page_size)
    except ValueError as e:
        raise FormatError(f"{codec.name} page: {e}") from None


class Descriptors:
    """Consecutive page descriptors decoded at once, as columns (``offsets``,
    ``sizes``, ``flags``, ``page_flags``) beside their ``raw`` bytes; iterating
    gives one ``DESC.fields`` tuple per descriptor."""

    def __init__(self, raw):
        self.raw = bytes(raw[:len(raw) // DESC.size * DESC.size])
        words = memoryview(self.raw).cast("Q")     # offset, size | flags << 32, page_flags
        self.offsets = [o - (1 << 64) if o >> 63 else o for o in words[0::3]]
        size_flags = words[1::3].tolist()
        self.sizes = [sf & 0xFFFFFFFF for sf in size_flags]
        self.flags = [sf >> 32 for sf in size_flags]
        self.page_flags = words[2::3].tolist()

    def __len__(self):
        return len(self.offsets)

    def __iter__(self):
        return map(DESC.fields, self.offsets, self.sizes, self.flags, self.page_flags)


class KdumpReader(ReadOnlyFile):
    """A kdump-compressed file (fastdump's or makedumpfile's) opened for reading: the
    one place that parses its headers, walks its bitmaps and descriptors and decodes
    its pages.  ``verify``, ``info``, ``convert``, ``--reassemble`` and the salvage
    of a cut file all read through these methods."""

    format = "kdump"
    error = FormatError

    def __init__(self, path):
        self._open(path, self._load)

    def read_at(self, off, size):
        """Exactly ``size`` bytes at ``off``; FormatError when the file is shorter."""
        if off < 0 or size < 0 or off + size > self.file_size:
            raise FormatError(f"{self.path}: truncated or corrupt (wanted {size} bytes at offset {off}, "
                              f"the file has {self.file_size})")
        data = self.read_upto(off, size)
        if len(data) != size:
            raise FormatError(f"{self.path}: truncated (wanted {size} bytes at offset {off})")
        return data

    def read_upto(self, off, size):
        """Up to ``size`` bytes at ``off``: fewer where the file ends (thread-safe)."""
        try:
            return os.pread(self.fd, max(0, size), off)
        except OSError as e:
            raise FormatError(f"{self.path}: read error at offset {off}: {e.strerror}") from None

    def _length(self):
        """The dump's size in bytes; only a regular file holds one."""
        st = os.fstat(self.fd)
        if st.st_size > 1 << 62 or not stat.S_ISREG(st.st_mode):
            raise FormatError(f"{self.path}: not a regular file")
        return st.st_size

    def _load(self):
        self.file_size = self._length()
        h = self.header = HEADER.unpack_named(self.read_at(0, HEADER.size))
        if h.signature != SIGNATURE:
            raise FormatError(f"{self.path}: not a kdump-compressed file")
        self.utsname = [getattr(h, f).split(b"\0", 1)[0].decode("ascii", "replace") for f in UTSNAME_FIELDS]
        self.tv_sec, self.tv_usec, self.status, self.nr_cpus = h.tv_sec, h.tv_usec, h.status, h.nr_cpus
        self.block_size, self.sub_hdr_size, self.bitmap_blocks = h.block_size, h.sub_hdr_size, h.bitmap_blocks
        self.header_version = version = h.header_version
        if self.block_size < 4096 or self.block_size & (self.block_size - 1) or self.block_size > 1 << 18:
            raise FormatError(f"{self.path}: bogus block size {self.block_size}")
        self.page_size = self.block_size
        s = self.sub_header = SUB_HEADER.unpack_named(self.read_at(self.block_size, SUB_HEADER.size))
        self.phys_base, self.dump_level, self.split = s.phys_base, s.dump_level, s.split
        self.offset_eraseinfo, self.size_eraseinfo = s.offset_eraseinfo, s.size_eraseinfo
        self.start_pfn, self.end_pfn = s.start_pfn_64, s.end_pfn_64
        self.max_mapnr = s.max_mapnr_64 if version >= 6 else h.max_mapnr
        if version >= 6 and min(s.max_mapnr_64, 0xFFFFFFFF) != h.max_mapnr:
            # every writer (makedumpfile, QEMU, fastdump) puts the 64-bit count, capped, in both
            raise FormatError(f"{self.path}: the sub-header's max_mapnr {s.max_mapnr_64:#x} disagrees with "
                              f"the header's {h.max_mapnr:#x} (a damaged sub-header)")
        if not self.split:
            self.start_pfn, self.end_pfn = 0, self.max_mapnr
        elif not 0 <= self.start_pfn <= self.end_pfn <= self.max_mapnr:
            raise FormatError(f"{self.path}: split part {self.start_pfn:#x}..{self.end_pfn:#x} is outside "
                              f"max_mapnr {self.max_mapnr:#x}")
        self.bitmap_len = self.bitmap_blocks * self.block_size // 2
        if self.bitmap_len * 8 < self.max_mapnr:
            raise FormatError(f"{self.path}: bitmaps too small for max_mapnr {self.max_mapnr}")
        self.bitmap1_off = (1 + self.sub_hdr_size) * self.block_size
        self.bitmap2_off = self.bitmap1_off + self.bitmap_len
        self.desc_off = self.bitmap2_off + self.bitmap_len
        if self.file_size < self.desc_off:
            raise FormatError(f"{self.path}: truncated inside the bitmaps")
        if version >= 4 and s.offset_note and s.size_note:
            if s.size_note > MAX_NOTE_BYTES:
                raise FormatError(f"{self.path}: ELF notes of {s.size_note} bytes are implausibly large")
            self.note_bytes = self.read_at(s.offset_note, s.size_note)
        else:
            self.note_bytes = b""
        self.notes = elf.parse_notes(self.note_bytes)
        vmci = [n for n in self.notes if n.name == b"VMCOREINFO"]
        vm_off, vm_size = s.offset_vmcoreinfo, s.size_vmcoreinfo
        if vmci:
            self.vmcoreinfo = VmcoreInfo.from_note(vmci[0].desc)
        elif version >= 3 and vm_off and vm_size and vm_size <= MAX_NOTE_BYTES:
            self.vmcoreinfo = VmcoreInfo.from_note(self.read_at(vm_off, vm_size))
        else:
            self.vmcoreinfo = None
        self.incomplete = bool(self.status & STATUS_INCOMPLETE)
        self._bitmap2 = bytearray(self.read_at(self.bitmap2_off, _blocks(self.max_mapnr, 8)))
        # descriptor index of the first pfn of each 4096-bit block (popcount prefix)
        self._prefix = [0]
        chunk = 512  # bytes = 4096 bits
        view = memoryview(self._bitmap2)
        for i in range(0, len(self._bitmap2), chunk):
            self._prefix.append(self._prefix[-1] + _core.bitmap_count(view[i:i + chunk], len(view[i:i + chunk]) * 8))
        self._base_index = self._prefix_index(self.start_pfn) if self.split else 0

    def _prefix_index(self, pfn):
        block, bit = divmod(pfn, 4096)
        base = self._prefix[block]
        rem = self._bitmap2[block * 512:block * 512 + bit // 8]
        n = _core.bitmap_count(bytes(rem), len(rem) * 8) if rem else 0
        last = self._bitmap2[block * 512 + bit // 8] if bit % 8 else 0
        return base + n + bin(last & ((1 << (bit % 8)) - 1)).count("1")

    # -- header facts ---------------------------------------------------------
    def header_codec_flags(self):
        """The compression bits of the header's status (one, if the file is sane)."""
        return self.status & codecs.FLAG_MASK

    def prologue(self):
        """The bytes before the bitmaps: header block, sub header and notes."""
        return self.read_at(0, self.bitmap1_off)

    # -- bitmaps --------------------------------------------------------------
    def bitmap1(self):
        return self.read_at(self.bitmap1_off, _blocks(self.max_mapnr, 8))

    def bitmap2(self):
        return bytes(self._bitmap2)

    def bitmap_regions(self):
        """Both bitmaps in full, padding past max_mapnr included: (1st, 2nd)."""
        both = self.read_at(self.bitmap1_off, 2 * self.bitmap_len)
        return both[:self.bitmap_len], both[self.bitmap_len:]

    def is_dumped(self, pfn):
        return 0 <= pfn < self.max_mapnr and (self._bitmap2[pfn >> 3] >> (pfn & 7)) & 1

    def pfns(self):
        for first, end in self.dumped_runs():
            yield from range(first, end)

    def dumped_runs(self):
        """Runs [first, end) of the pfns this file has descriptors for (its part's range)."""
        for first, end in _core.bitmap_runs(self._bitmap2, self.max_mapnr):
            first, end = max(first, self.start_pfn), min(end, self.end_pfn)
            if first < end:
                yield first, end

    def runs_in_file(self):
        """``dumped_runs`` as far as the file holds their descriptors: a 2nd bitmap
        claiming more pages than that costs no work beyond the file's size."""
        left = max(0, (self.file_size - self.desc_off) // DESC.size)
        for a, b in self.dumped_runs():
            if left <= 0:
                return
            b = min(b, a + left)
            left -= b - a
            yield a, b

    # -- descriptors ----------------------------------------------------------
    def n_descriptors(self, *, all_parts=False):
        """Descriptors in the table: one per 2nd-bitmap bit of this file's pfn range
        (``all_parts``: of every pfn, what the table of a split part is sized for)."""
        if all_parts:
            return self._prefix[-1]
        return _core.bitmap_count_range(self._bitmap2, self.start_pfn, self.end_pfn) \
            if self.end_pfn > self.start_pfn else 0

    def read_descriptors(self, first, n, *, partial=False):
        """Descriptors ``first``..``first+n-1`` of the table (``Descriptors``).  With
        ``partial``, the ones the file holds (fewer when it ends first); without,
        FormatError when it does."""
        at, size = self.desc_off + DESC.size * first, DESC.size * n
        return Descriptors(self.read_upto(at, size) if partial else self.read_at(at, size))

    def descriptor_chunks(self, chunk=1 << 14):
        """This file's descriptor table in chunks (``Descriptors``) as far as the file holds
        it: the last one is short when the file ends inside the table (a dump cut short)."""
        total = self.n_descriptors()
        for i in range(0, total, chunk):
            n = min(chunk, total - i)
            descs = self.read_descriptors(i, n, partial=True)
            yield descs
            if len(descs) < n:
                return

    def zero_page_offset(self):
        """Where a writer (fastdump or makedumpfile) puts the shared zero page of dump
        level 1: right after the descriptor table, which in a split part is sized for
        every part's descriptors.  None below dump level 1."""
        if not self.dump_level & DumpLevel.ZERO:
            return None
        return self.desc_off + DESC.size * self.n_descriptors(all_parts=True)

    def data_gap(self, first_data, *, shared=False):
        """What lies between the descriptor table and ``first_data`` (the lowest page
        data offset): ``(unreadable, zero_page_offset)``, or None when it is anything
        else, i.e. the 2nd bitmap and the table disagree.

        A writer sizes the table for the pages it planned to store.  A page it then
        could not read (EIO) gets neither a descriptor nor its 2nd-bitmap bit, so a
        complete but partial dump's table ends in that many never-written (zero)
        slots.  Next comes the shared zero page of dump level 1 (makedumpfile's
        layout too), referenced or not.  A split part's table is sized for every
        part: the other parts' pages are not counted as unreadable.  ``shared``: the
        lowest page data is referenced by several descriptors, so it is the zero page
        even where the header's dump_level does not exclude zero pages."""
        table_end = self.desc_off + DESC.size * self.n_descriptors()
        if self.size_eraseinfo and table_end <= self.offset_eraseinfo \
                and self.offset_eraseinfo + self.size_eraseinfo == first_data:
            first_data = self.offset_eraseinfo      # fastdump's eraseinfo, before the page data
        gap = first_data - table_end
        if gap < 0 or first_data > self.file_size:
            return None
        if gap % DESC.size == 0:      # page sizes are powers of two: never a multiple of 24
            slots, zero_off = gap // DESC.size, first_data if shared or self.dump_level & DumpLevel.ZERO else None
        elif gap >= self.page_size and (gap - self.page_size) % DESC.size == 0:
            slots, zero_off = (gap - self.page_size) // DESC.size, first_data - self.page_size
        else:
            return None
        for at in range(table_end, table_end + slots * DESC.size, 1 << 20):
            if any(self.read_at(at, min(1 << 20, table_end + slots * DESC.size - at))):
                return None           # a real descriptor the 2nd bitmap does not count
        others = self.n_descriptors(all_parts=True) - self.n_descriptors() if self.split else 0
        if slots < others:
            return None               # a split part's table has room for every part's pages
        return slots - others, zero_off

    def checksums(self):
        """The checksums fastdump stored in the dump (a ``checksums.Sums``), or None
        when it has none.  Raises ValueError when they are there but damaged."""
        if not hasattr(self, "_sums"):
            try:
                self._sums = checksums.load(self.read_at, self.file_size, header_block=self.block_size)
            except (ValueError, FormatError) as e:
                self._sums = e
        if isinstance(self._sums, Exception):
            raise ValueError(str(self._sums))
        return self._sums

    def descriptor(self, pfn):
        """The descriptor (``DESC.fields``: offset, size, flags, page_flags) of a dumped pfn."""
        if not self.is_dumped(pfn) or not self.start_pfn <= pfn < self.end_pfn:
            raise FormatError(f"pfn {pfn:#x} is not in this dump")
        index = self._prefix_index(pfn) - self._base_index
        return DESC.unpack_named(self.read_at(self.desc_off + DESC.size * index, DESC.size))

    # -- pages ----------------------------------------------------------------
    def read_pfn(self, pfn):
        if type(pfn) is not int or not 0 <= pfn < (1 << 64) // self.page_size or self.closed:
            from ..sources.vmcore import check_read_args
            check_read_args(self, self.closed, pfn=pfn)
        off, size, flags, _ = self.descriptor(pfn)
        if off == 0:
            raise FormatError(f"pfn {pfn:#x} was not written (incomplete dump)")
        if off < self.desc_off or off + size > self.file_size:
            raise FormatError(f"pfn {pfn:#x}: page data at {off:#x}+{size} is outside the page data area")
        if size > self.block_size:
            raise FormatError(f"pfn {pfn:#x}: stored size {size} exceeds the page size")
        try:
            return decode_page(flags, self.read_at(off, size), self.page_size)
        except FormatError as e:
            raise FormatError(f"pfn {pfn:#x}: {e}") from None

    def read_phys(self, addr, size, *, zero_fill=False):
        if type(addr) is not int or type(size) is not int or addr < 0 or size < 0 or addr + size > 1 << 64 \
                or type(zero_fill) is not bool or self.closed:
            from ..sources.vmcore import check_read_args
            check_read_args(self, self.closed, addr=addr, size=size, zero_fill=zero_fill)
        out = bytearray()
        while size > 0:
            pfn, off = divmod(addr, self.page_size)
            n = min(size, self.page_size - off)
            if self.is_dumped(pfn):
                out += self.read_pfn(pfn)[off:off + n]
            elif zero_fill:
                out += bytes(n)
            else:
                raise FormatError(f"physical address {addr:#x} is not in this dump")
            addr += n
            size -= n
        return bytes(out)

    def describe(self):
        methods = self.header_codec_flags()
        return {"format": "kdump-compressed", "header_version": self.header_version,
                "compression": codecs.flag_name(methods), "dump_level": self.dump_level,
                "max_mapnr": self.max_mapnr, "nr_cpus": self.nr_cpus, "incomplete": self.incomplete,
                "split": bool(self.split), "utsname": self.utsname}


def flag_incomplete(head):
    """A header's bytes with the incomplete status bit set."""
    head = bytearray(head)
    h = HEADER.unpack_named(head)
    HEADER.pack_into(head, 0, *h._replace(status=h.status | STATUS_INCOMPLETE))
    return bytes(head)
