"""ELF vmcores (``/proc/vmcore``, a saved copy, a filtered ELF dump) as a page source.

The source's job is to say which physical bytes exist and where they are in the
file.  ``extents`` is that answer: sorted, non-overlapping
``(phys_start, phys_end, file_offset)`` triples.  Overlapping PT_LOADs (the
kernel-text segment repeats part of RAM) are folded by physical address.
The Cython core reads pages through this table, never through Python.
"""

import bisect
import mmap
import os
import stat
import threading
from array import array

from ..formats import elf
from .files import ReadOnlyFile
from ..errors import SourceError
from ..kernel.vmcoreinfo import U64, VmcoreInfo

DEFAULT_PAGE_SIZE = 4096
KERNEL_TEXT_START = 0xFFFFFFFF80000000
#: Highest physical address any supported architecture can have (MAX_PHYSMEM_BITS 52).
MAX_PHYS_ADDR = 1 << 52
#: A note segment is a few KiB per CPU; more than this is a corrupt p_filesz.
MAX_NOTE_BYTES = 64 << 20


class NotPresentError(SourceError):
    """A physical address that the dump does not contain."""


def check_read_args(reader, closed, *, pfn=0, addr=0, size=0, zero_fill=False):
    """The checks of a reader's ``read_pfn`` / ``read_phys`` (ELF and kdump alike), made
    when their quick test fails: a bad argument is a UsageError naming it, a read of a
    closed reader a FastdumpError saying so (not the EBADF of its closed file)."""
    from ..errors import FastdumpError, UsageError
    for what, value in (("pfn", pfn), ("physical address", addr), ("read size", size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{what} must be an integer, not {type(value).__name__} {value!r:.40}")
        if value < 0:
            raise UsageError(f"{what} {value} is negative")
    if not isinstance(zero_fill, bool):
        raise UsageError(f"zero_fill must be true or false, not {zero_fill!r:.40}")
    if pfn >= (1 << 64) // reader.page_size:
        raise UsageError(f"pfn {pfn:#x} is beyond any 64-bit physical address")
    if addr >= 1 << 64:
        raise UsageError(f"physical address {addr:#x} is beyond 64 bits")
    if addr + size > 1 << 64:
        raise UsageError(f"read size {size:#x} at physical address {addr:#x} goes beyond 64 bits")
    if closed:
        raise FastdumpError(f"{reader.path}: the dump was closed (a read after close())")


def fold_extents(pieces):
    """Sort ``(start, end, file_offset)`` pieces and drop bytes already covered.

    Longer pieces win ties, so the RAM segment is kept over the kernel-text copy.
    """
    out = []
    covered_to = -1
    for start, end, off in sorted(pieces, key=lambda p: (p[0], -(p[1] - p[0]))):
        if end <= start or end <= covered_to:
            continue
        if start < covered_to:
            off += covered_to - start
            start = covered_to
        if out and out[-1][1] == start and out[-1][2] + (out[-1][1] - out[-1][0]) == off:
            out[-1] = (out[-1][0], end, out[-1][2])  # contiguous in memory and in file
        else:
            out.append((start, end, off))
        covered_to = end
    return out


def pfn_runs(ranges, page_size):
    """Merged ``(first_pfn, end_pfn)`` runs of the pages that ``ranges`` touch."""
    runs = []
    for start, end, *_ in ranges:
        first, last = start // page_size, (end + page_size - 1) // page_size
        if runs and first <= runs[-1][1]:
            runs[-1] = (runs[-1][0], max(runs[-1][1], last))
        else:
            runs.append((first, last))
    return runs


class ElfSource(ReadOnlyFile):
    """An ELF vmcore opened for reading.  Also serves as the reader for ELF dumps."""

    format = "elf"
    error = SourceError

    def __init__(self, path):
        self._open(path, self._load)

    def _read_at(self, offset, size):
        if size <= 0:
            return b""
        if offset < 0 or offset + size > 1 << 62:   # no file is that large: a corrupt offset
            raise SourceError(f"{self.path}: offset {offset:#x}+{size:#x} is beyond any file")
        try:
            return os.pread(self.fd, size, offset)
        except OSError as e:
            raise SourceError(f"{self.path}: read error at offset {offset}: {e.strerror}") from None

    def _load(self):
        st = os.fstat(self.fd)
        if stat.S_ISDIR(st.st_mode):
            raise SourceError(f"{self.path} is a directory")
        self.file_size = st.st_size if stat.S_ISREG(st.st_mode) else None
        self.header = elf.parse_header(self._read_at, self.file_size)
        self.elfclass = self.header.elfclass
        self.machine = self.header.machine
        self.incomplete = bool(self.header.flags & elf.ELF_INCOMPLETE_FLAG)
        # Notes: every PT_NOTE's contents up to its terminator, concatenated.
        note_bytes = bytearray()
        self.notes = []
        for p in self.header.phdrs:
            if p.type != elf.PT_NOTE:
                continue
            self._check_in_file(p, p.filesz, "PT_NOTE")
            if p.filesz > MAX_NOTE_BYTES:
                raise SourceError(f"{self.path}: PT_NOTE of {p.filesz} bytes is implausibly large")
            data = self._read_at(p.offset, p.filesz)
            base = len(note_bytes)
            notes = elf.parse_notes(data)
            used = notes[-1].end if notes else 0
            for n in notes:
                n.offset += base
                n.desc_offset += base
                n.end += base
            self.notes.extend(notes)
            note_bytes += data[:used]
        self.note_bytes = bytes(note_bytes)
        self.nr_cpus = sum(1 for n in self.notes if n.name == b"CORE" and n.type == elf.NT_PRSTATUS)
        vmci = [n for n in self.notes if n.name == b"VMCOREINFO"]
        self.vmcoreinfo_note = vmci[0] if vmci else None
        self.vmcoreinfo = VmcoreInfo.from_note(vmci[0].desc) if vmci else None
        self.page_size = (self.vmcoreinfo.page_size if self.vmcoreinfo and self.vmcoreinfo.page_size
                          else DEFAULT_PAGE_SIZE)
        # Memory: bytes stored in the file, and the (possibly larger) described range.
        self.loads = [p for p in self.header.phdrs if p.type == elf.PT_LOAD]
        if not self.loads:
            raise SourceError(f"{self.path}: no PT_LOAD segments, nothing to dump")
        stored, described = [], []
        self.truncated = False
        for i, p in enumerate(self.loads):
            if p.filesz > p.memsz:
                raise SourceError(f"{self.path}: PT_LOAD {i} has p_filesz > p_memsz")
            filesz = p.filesz
            if self.incomplete and self.file_size is not None and p.offset + filesz > self.file_size:
                # an interrupted dump: what was written reads, up to the last whole page
                end = p.paddr + max(0, min(filesz, self.file_size - p.offset))
                filesz = max(0, end - end % self.page_size - p.paddr)
                self.truncated = True
            else:
                self._check_in_file(p, p.filesz, f"PT_LOAD {i}")
            if p.paddr + p.memsz > MAX_PHYS_ADDR:
                raise SourceError(f"{self.path}: PT_LOAD {i} ends at physical {p.paddr + p.memsz:#x}, "
                                  f"beyond any machine's physical address space")
            stored.append((p.paddr, p.paddr + filesz, p.offset))
            described.append((p.paddr, p.paddr + p.memsz, 0))
        self.segment_extents = stored   # per PT_LOAD, the kernel-text copy included (verify reads all)
        self.warnings = self._disagreeing_copies(stored)
        # memory fastdump could not read from its source (EIO) and left out of every PT_LOAD
        self.unreadable_runs = pfn_runs(sorted((p.paddr, p.paddr + p.align) for p in self.header.phdrs
                                               if p.type == elf.PT_FASTDUMP_UNREADABLE), self.page_size)
        self.extents = fold_extents(stored)
        self.ram_ranges = [(s, e) for s, e, _ in fold_extents(described)]
        if not self.ram_ranges:
            raise SourceError(f"{self.path}: every PT_LOAD is empty (p_memsz 0), nothing to dump")
        self.max_pfn = -(-max(e for _, e in self.ram_ranges) // self.page_size)

    def _disagreeing_copies(self, stored):
        """A warning for each two PT_LOADs that store one physical range with different first
        pages.  The kernel-text PT_LOAD of /proc/vmcore repeats part of RAM byte for byte;
        two copies that differ are a corrupt file, and which one holds the truth cannot be
        known: the dump takes the longer segment's (``fold_extents``), makedumpfile the
        first's.  One page of each overlap is compared (``verify`` compares them all)."""
        out = []
        order = sorted(range(len(stored)), key=lambda i: stored[i][:2])
        for k, i in enumerate(order):
            a0, a1, aoff = stored[i]
            for j in order[k + 1:]:
                b0, b1, boff = stored[j]
                if b0 >= a1:
                    break
                lo = max(a0, b0)
                n = min(self.page_size, min(a1, b1) - lo)
                if n > 0 and self._read_at(aoff + lo - a0, n) != self._read_at(boff + lo - b0, n):
                    out.append(f"PT_LOAD {i} and PT_LOAD {j} hold different bytes for physical {lo:#x}: "
                               f"the dump takes the longer segment's")
                    if len(out) == 8:
                        return out
        return out

    def _check_in_file(self, p, size, what):
        if self.file_size is not None and size and p.offset + size > self.file_size:
            raise SourceError(f"{self.path} is truncated: {what} ends at byte {p.offset + size}, "
                              f"the file has {self.file_size}")

    @property
    def max_mapnr(self):
        """The reader interface's name for the pfns described (as a kdump header has it)."""
        return self.max_pfn

    # -- the page map ------------------------------------------------------
    def extent_array(self):
        """The extents as a flat ``array('Q')`` for the Cython core."""
        return array("Q", [v for ext in self.extents for v in ext])

    def present_runs(self):
        """``(first_pfn, end_pfn)`` runs of pages that the dump describes (1st bitmap)."""
        return pfn_runs(self.ram_ranges, self.page_size)

    def stored_runs(self):
        """Runs of pages with at least one byte stored in the file."""
        return pfn_runs(self.extents, self.page_size)

    def pfns(self):
        for first, end in self.stored_runs():
            yield from range(first, end)

    def _extents_in(self, addr, end):
        """The extents overlapping physical ``addr..end``: a bisection, so a read costs
        log(#extents) however many PT_LOADs the file has."""
        i = bisect.bisect_right(self.extents, (addr, U64))
        if i and self.extents[i - 1][1] > addr:
            i -= 1
        while i < len(self.extents) and self.extents[i][0] < end:
            yield self.extents[i]
            i += 1

    def is_dumped(self, pfn):
        a, b = pfn * self.page_size, (pfn + 1) * self.page_size
        return any(True for _ in self._extents_in(a, b))

    # -- reading -----------------------------------------------------------
    def read_phys(self, addr, size, *, zero_fill=False):
        """Bytes at physical ``addr``; raises NotPresentError for bytes not stored
        (unless ``zero_fill``, which fills them with zeros as crash does)."""
        if type(addr) is not int or type(size) is not int or addr < 0 or size < 0 or addr + size > 1 << 64 \
                or type(zero_fill) is not bool or self.closed:
            check_read_args(self, self.closed, addr=addr, size=size, zero_fill=zero_fill)
        end = addr + size
        pieces = list(self._extents_in(addr, end))
        if len(pieces) == 1 and pieces[0][0] <= addr and end <= pieces[0][1]:
            s, e, off = pieces[0]        # the usual case: one extent holds it all, no assembly
            data = self._read_in_extent(off + addr - s, size, off, off + (e - s))
            if len(data) != size:
                raise SourceError(f"{self.path}: short read at physical {addr:#x}")
            return data
        out = bytearray(size)
        covered = 0
        for s, e, off in pieces:
            lo, hi = max(s, addr), min(e, end)
            data = self._read_in_extent(off + lo - s, hi - lo, off, off + (e - s))
            if len(data) != hi - lo:
                raise SourceError(f"{self.path}: short read at physical {lo:#x}")
            out[lo - addr:hi - addr] = data
            covered += hi - lo
        if covered != size and not zero_fill:
            raise NotPresentError(f"physical range {addr:#x}+{size:#x} is not in the dump")
        return bytes(out)

    MAP_WINDOW = 4 << 20

    def _read_in_extent(self, offset, size, chunk_lo, chunk_hi):
        """pread, or for /proc/vmcore a cached mmap window inside the extent's chunk:
        read() of /proc/vmcore copies page by page in the kernel and is slow, and a
        mapping may not cross two PT_LOADs."""
        if not self.mmap_reads:
            return self._read_at(offset, size)
        with self._window_lock:
            return self._read_mapped(offset, size, chunk_lo, chunk_hi)

    def _read_mapped(self, offset, size, chunk_lo, chunk_hi):
        win = getattr(self, "_window", None)
        if win is None or not (win[0] <= offset and offset + size <= win[0] + len(win[1])):
            if win is not None:
                win[1].close()
                self._window = None
            start = max(offset & ~(self.MAP_WINDOW - 1), chunk_lo & ~4095)
            end = min((offset + size + self.MAP_WINDOW - 1) & ~(self.MAP_WINDOW - 1), (chunk_hi + 4095) & ~4095)
            try:
                m = mmap.mmap(self.fd, end - start, mmap.MAP_SHARED, mmap.PROT_READ, offset=start)
            except (OSError, ValueError, OverflowError):
                self.mmap_reads = False
                return self._read_at(offset, size)
            win = self._window = (start, m)
        return win[1][offset - win[0]:offset - win[0] + size]

    @property
    def mmap_reads(self):
        if not hasattr(self, "_mmap_reads"):
            self._mmap_reads = self.is_proc_vmcore()
            self._window_lock = threading.Lock()   # one shared window: callers may be threads
        return self._mmap_reads

    @mmap_reads.setter
    def mmap_reads(self, value):
        self._mmap_reads = value
        if not hasattr(self, "_window_lock"):
            self._window_lock = threading.Lock()

    def read_pfn(self, pfn):
        if type(pfn) is not int or not 0 <= pfn < (1 << 64) // self.page_size or self.closed:
            check_read_args(self, self.closed, pfn=pfn)
        return self.read_phys(pfn * self.page_size, self.page_size, zero_fill=True) \
            if self.is_dumped(pfn) else self.read_phys(pfn * self.page_size, self.page_size)

    def is_proc_vmcore(self):
        return os.path.realpath(self.path) == "/proc/vmcore"

    def describe(self):
        return {"format": "elf", "class": 64 if self.elfclass == elf.ELFCLASS64 else 32,
                "segments": len(self.loads), "nr_cpus": self.nr_cpus,
                "max_pfn": self.max_pfn, "incomplete": self.incomplete, "truncated": self.truncated}

    def close(self):
        win = getattr(self, "_window", None)
        if win is not None:
            win[1].close()
            self._window = None
        super().close()

