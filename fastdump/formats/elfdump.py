"""Filtered ELF dumps (``-E``): PT_LOADs rewritten so dropped pages take no room.

Layout as makedumpfile writes it: Ehdr, one PT_NOTE then the PT_LOADs, the notes,
then the data of each PT_LOAD back to back (no alignment).  Each input PT_LOAD
becomes one or more output PT_LOADs ("pieces"):

- a run of zero pages shorter than 256 pages inside kept data is written as
  zeros (fewer program headers; the bytes are exactly the source's);
- a longer zero run, or any page dropped for its class (free, cache, user), ends
  the piece; its ``p_memsz`` reaches over the dropped run with ``p_filesz`` only
  covering what is stored, so readers see the run as missing (or zeros);
- pages dropped for their class are never read, not even to fill a short gap;
- a page the source cannot read (EIO) is found only while copying, when the
  header is already laid out.  Its bytes in the file are left unreferenced: at
  ``finish`` its PT_LOAD is cut around it (out of p_memsz too, so every reader
  sees the memory as missing, not as zeros) and a PT_FASTDUMP_UNREADABLE header
  records it, in program-header slots reserved for this after the table.

Checksums (``checksums.py``): between the notes and the first PT_LOAD's data, a
crc32 of each page-size block of the data (before it, so that a dump cut short
ends where its data ends); after the last PT_LOAD's data, a trailer with the
crc32 of the headers and notes.  No program header covers them: readers do not
see them.

Reading an ELF dump is ``fastdump.sources.vmcore.ElfSource``.
"""

from .. import _core
from . import elf
from . import checksums
from ..errors import UsageError

ZERO_RUN_SPLIT = 256  # makedumpfile's PFN_EXCLUDED
#: Spare program-header slots (zeros, not counted in e_phnum) between the table and
#: the notes: an unreadable run takes two (the cut PT_LOAD's second part, its record).
RESERVED_PHDRS = 1024


class Segment:
    """One input PT_LOAD and the pieces of it that will be written."""

    def __init__(self, phdr, page_size):
        self.phdr = phdr
        self.ps = page_size
        self.first_pfn = phdr.paddr // page_size
        self.end_pfn = -(-(phdr.paddr + phdr.filesz) // page_size) if phdr.filesz else self.first_pfn
        self.pieces = []          # [start_pfn, end_pfn) of written pages
        self.gap_clean = True     # pages since the last piece are all zero-kept (bridgeable)

    def feed(self, c0, c1, read_set, keep):
        """Extend the pieces with the part of one cycle that lies in this segment."""
        lo, hi = max(self.first_pfn, c0), min(self.end_pfn, c1)
        if lo >= hi:
            return
        pos = lo
        skip = (lo - c0) // 8          # scan this segment's bytes only: many segments stay linear
        base = c0 + 8 * skip
        for a, b in _core.bitmap_runs(memoryview(read_set)[skip:], hi - base):
            a, b = a + base, b + base
            if b <= lo:
                continue
            a = max(a, lo)
            self._note_gap(pos, a, c0, keep)
            if self.pieces and self.gap_clean and a - self.pieces[-1][1] < ZERO_RUN_SPLIT:
                self.pieces[-1][1] = b          # extend (bridging a short zero run)
            else:
                self.pieces.append([a, b])
            self.gap_clean = True
            pos = b
        self._note_gap(pos, hi, c0, keep)

    def _note_gap(self, a, b, c0, keep):
        if a < b and self.gap_clean:
            self.gap_clean = _core.bitmap_count_range(keep, a - c0, b - c0) == b - a

    def phdrs(self):
        """Output program headers (p_offset filled in later by ``place``)."""
        p, ps = self.phdr, self.ps
        lo, file_hi, mem_hi = p.paddr, p.paddr + p.filesz, p.paddr + p.memsz
        spans = []
        for i, (a, b) in enumerate(self.pieces):
            start = max(lo, a * ps)
            stop = min(file_hi, b * ps)
            nxt = max(lo, self.pieces[i + 1][0] * ps) if i + 1 < len(self.pieces) else mem_hi
            spans.append((start, stop, nxt))
        if not spans or spans[0][0] > lo:
            spans.insert(0, (lo, lo, spans[0][0] if spans else mem_hi))
        return [elf.Phdr(elf.PT_LOAD, p.flags, 0, (p.vaddr + (s - lo)) & ((1 << 64) - 1), s, f - s, m - s,
                         p.align) for s, f, m in spans]


def check_fits_elf32(loads, *, with_offsets=False):
    limit = 1 << 32
    for ph in loads:
        if ph.paddr + ph.memsz > limit or (with_offsets and ph.offset + ph.filesz > limit):
            raise UsageError(f"ELF32 output cannot hold this dump: memory at {ph.paddr:#x} or file "
                             f"offsets reach past 4 GiB; use ELF64")


ERASEINFO = b"ERASEINFO"    # makedumpfile's note name for its record of erased data


def notes_recording(source, eraseinfo):
    """``source``'s note bytes with ``eraseinfo`` as its one ERASEINFO note, after the others:
    any ERASEINFO note the source had is dropped, as ``eraseinfo`` already holds its record
    (kernel/erase.recorded), so a dump made from a dump records each erasure once."""
    if not eraseinfo:
        return source.note_bytes
    return b"".join(elf.build_note(n.name, n.type, n.desc) for n in source.notes if n.name != ERASEINFO) \
        + elf.build_note(ERASEINFO, 0, eraseinfo)


class ElfDumpWriter:
    """Builds the header once every piece is known, then writes page data in order."""

    def __init__(self, sink, source, segments, *, elfclass=None, eraseinfo=b""):
        """``eraseinfo``: makedumpfile's record of erased data (``--config``, and what the
        source recorded), as it writes it for ELF: one note named ERASEINFO after the
        source's other notes."""
        self.sink = sink
        self.source = source
        self.elfclass = elfclass or source.elfclass
        self.notes = notes_recording(source, eraseinfo)
        self.segments = segments
        self.loads, self.note_offset, self.total_size = self.layout(source, segments, self.elfclass,
                                                                    len(self.notes))
        if self.elfclass == elf.ELFCLASS32:
            self._check_fits_elf32()
        self.pages_written = 0
        self.array_off = self.note_offset + len(self.notes)
        self.data_off = self.array_off + 4 * -(-sum(ph.filesz for ph in self.loads) // source.page_size)
        self.sums = checksums.Builder(block_size=source.page_size)
        self.summed_to, self.carry, self.blocks = self.data_off, (0, 0), 0   # data checksummed so far
        self.unreadable = {}      # id(PT_LOAD): [first, end) pfn runs the source could not read
        self.marks = []           # their PT_FASTDUMP_UNREADABLE headers (after finish)

    @staticmethod
    def layout(source, segments, elfclass, notes_len=None):
        """Output PT_LOADs with their file offsets, the notes' offset, the file size."""
        loads = [ph for seg in segments for ph in seg.phdrs()]
        note_offset = elf.header_size(elfclass, 1 + len(loads) + RESERVED_PHDRS)
        data_len = sum(ph.filesz for ph in loads)
        notes_len = len(source.note_bytes) if notes_len is None else notes_len
        offset = note_offset + notes_len + 4 * -(-data_len // source.page_size)
        for ph in loads:
            ph.offset = offset if ph.filesz else 0
            offset += ph.filesz
        return loads, note_offset, offset

    @classmethod
    def size_of(cls, source, segments, elfclass):
        return cls.layout(source, segments, elfclass)[2]

    def _check_fits_elf32(self):
        check_fits_elf32(self.loads, with_offsets=True)
        for ph in self.loads:
            if ph.vaddr >= 1 << 32:
                ph.vaddr = ph.paddr  # no 32-bit virtual address for it: identity, as for highmem

    def header_bytes(self, *, incomplete):
        """The header; a complete dump whose data was all checksummed (the trailer follows
        it, ``_write_sums``) says so in its e_ident padding."""
        note = elf.Phdr(elf.PT_NOTE, 0, self.note_offset, 0, 0, len(self.notes), len(self.notes), 0)
        return elf.build_header(self.elfclass, self.source.machine, [note] + self.loads + self.marks,
                                flags=elf.ELF_INCOMPLETE_FLAG if incomplete else 0,
                                checksums_marked=not incomplete and self.summed_to == self.total_size)

    def write_prologue(self):
        self.sink.pwrite(self.header_bytes(incomplete=True), 0)
        self.sink.pwrite(self.notes, self.note_offset)

    def piece_jobs(self):
        """(phdr, first_pfn, end_pfn) of every piece that stores bytes, in file order."""
        ps = self.source.page_size
        for ph in self.loads:
            if ph.filesz:
                yield ph, ph.paddr // ps, -(-(ph.paddr + ph.filesz) // ps)

    def commit_window(self, ph, job):
        """Write the part of a dense window's pages that falls in ``ph``'s stored bytes."""
        ps = self.source.page_size
        if not job.n_pages:
            return
        first, end = job.window
        a, b = first * ps, end * ps
        lo, hi = max(a, ph.paddr), min(b, ph.paddr + ph.filesz)
        if lo >= hi:
            return
        view = job.pages_view()[lo - a:hi - a]
        self.sink.pwrite(view, ph.offset + (lo - ph.paddr))
        self._sum(view, ph.offset + (lo - ph.paddr))
        self.pages_written += job.n_pages
        self.written_to = ph.offset + (hi - ph.paddr)   # data is written in file order
        if job.unreadable_pages:
            runs = self.unreadable.setdefault(id(ph), [])
            for pfn in job.unreadable_pfns():
                if runs and runs[-1][1] == pfn:
                    runs[-1][1] = pfn + 1
                else:
                    runs.append([pfn, pfn + 1])

    def _sum(self, view, at):
        """Checksum the data in file order, one crc per page-size block, each written
        as soon as its block is complete (memory stays constant)."""
        if at != self.summed_to:          # not in file order: leave the dump without checksums
            self.summed_to = None
            return
        crcs, *self.carry = _core.crc_blocks(view, self.source.page_size, *self.carry)
        if crcs:
            self.sink.pwrite(crcs, self.array_off + 4 * self.blocks)
            self.blocks += len(crcs) // 4
        self.summed_to += len(view)

    def _write_sums(self, header):
        """The last partial block's crc and the trailer, once all the data is summed."""
        if self.summed_to != self.total_size:
            return
        crc, have = self.carry
        if have:
            self.sink.pwrite(crc.to_bytes(4, "little"), self.array_off + 4 * self.blocks)
            self.blocks += 1
        self.carry = (0, 0)
        self.sums.region(checksums.ELF_HEADERS, 0, header.ljust(self.note_offset, b"\0") + self.notes)
        self.sink.pwrite(self.sums.trailer(self.total_size, array_off=self.array_off, array_count=self.blocks,
                                           scheme=checksums.PER_BLOCK,
                                           data=(self.data_off, self.total_size - self.data_off)),
                         self.total_size)
        self.summed_to = None

    def _leave_out_unreadable(self):
        """Cut each PT_LOAD around its unreadable runs and record each run.  With more
        runs than spare slots, the closest runs of a PT_LOAD are merged (the readable
        pages between them are then left out too, and recorded with them)."""
        ps = self.source.page_size
        excess = sum(map(len, self.unreadable.values())) - RESERVED_PHDRS // 2
        if excess > 0:
            gaps = sorted(r[k + 1][0] - r[k][1] for r in self.unreadable.values() for k in range(len(r) - 1))
            widest = gaps[excess - 1]
            for key, runs in self.unreadable.items():
                merged = runs[:1]
                for a, b in runs[1:]:
                    if a - merged[-1][1] <= widest:
                        merged[-1] = [merged[-1][0], b]
                    else:
                        merged.append([a, b])
                self.unreadable[key] = merged
        loads, marks = [], []
        for ph in self.loads:
            runs = self.unreadable.get(id(ph))
            if not runs:
                loads.append(ph)
                continue
            lo, file_hi, mem_hi = ph.paddr, ph.paddr + ph.filesz, ph.paddr + ph.memsz
            for a, b in runs:
                a, b = max(a * ps, lo), min(b * ps, file_hi)
                if a > lo:
                    loads.append(self._part(ph, lo, a, a))
                marks.append(elf.Phdr(elf.PT_FASTDUMP_UNREADABLE, 0, 0, self._vaddr(ph, a), a, 0, 0, b - a))
                lo = b
            if lo < mem_hi:
                loads.append(self._part(ph, lo, max(lo, file_hi), mem_hi))
        self.loads, self.marks = loads, marks

    @staticmethod
    def _vaddr(ph, paddr):
        return (ph.vaddr + (paddr - ph.paddr)) & ((1 << 64) - 1)

    def _part(self, ph, start, file_end, mem_end):
        """The part of ``ph`` from physical ``start``: its bytes stay where they are."""
        filesz = file_end - start
        return elf.Phdr(elf.PT_LOAD, ph.flags, ph.offset + (start - ph.paddr) if filesz else 0,
                        self._vaddr(ph, start), start, filesz, mem_end - start, ph.align)

    def finish(self, *, incomplete=False):
        """The final header.  For an incomplete dump, each PT_LOAD's p_filesz is cut
        back to the whole pages really written (p_memsz stays), so readers see the
        rest as not in the file instead of reading past its end or half a page."""
        if self.unreadable:
            self._leave_out_unreadable()
        if incomplete:
            done = getattr(self, "written_to", self.loads[0].offset if self.loads else 0)
            for ph in self.loads:
                if ph.filesz and ph.offset + ph.filesz > done:
                    ph.filesz = max(0, done - ph.offset) // self.source.page_size * self.source.page_size
                    if ph.filesz == 0:
                        ph.offset = 0
        header = self.header_bytes(incomplete=incomplete)
        if not incomplete:
            self._write_sums(header)
        else:
            self.sums.withdraw(self.sink)   # failed after the trailer went out: a cut dump has none
        self.sink.pwrite(header, 0)
        if self.total_size:
            self.sink.size = max(self.sink.size, self.total_size)
