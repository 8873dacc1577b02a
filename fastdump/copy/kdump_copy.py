"""Pass 2 for kdump-compressed files: header, bitmaps, then every kept page in pfn order.

One KdumpCopy is one attempt at one file (a whole dump or one ``--split`` part):
it owns its writer and remembers how far the file is known to be written, so a
failed attempt can be finished as a readable, incomplete dump.
"""

from array import array
from collections import deque

from .. import _core
from ..formats import kdump
from ..kernel.levels import DumpLevel
from .plan import cycles, runs_bitmap

COMMITS_REMEMBERED = 1024     # windows a full disk may still lose after they were committed


class KdumpCopy:
    """Copies ``plan``'s pages of ``src`` into ``sink``; ``split`` is a part's pfn range."""

    def __init__(self, src, plan, engine, sink, *, codec, utsname, progress, split=None, eraseinfo=b""):
        self.src, self.plan, self.engine, self.progress, self.split = src, plan, engine, progress, split
        vm, info = src.vmcoreinfo_note, src.vmcoreinfo
        self.writer = kdump.KdumpWriter(
            sink, page_size=src.page_size, max_mapnr=src.max_pfn, dump_level=plan.level,
            codec=codec, notes=src.note_bytes,
            vmcoreinfo_desc_offset=vm.desc_offset if vm else 0, vmcoreinfo_size=len(vm.desc) if vm else 0,
            nr_cpus=src.nr_cpus, utsname=utsname, crashtime=info.crashtime if info else None,
            phys_base=info.phys_base if info else 0, split=split, eraseinfo=eraseinfo)
        self.committed = deque(maxlen=COMMITS_REMEMBERED)   # (done_to, desc_off, data_off) per window

    def run(self, stats):
        """Header, bitmaps, then every kept page of the part (default: all)."""
        src, plan, engine, writer = self.src, self.plan, self.engine, self.writer
        self.present_runs = src.present_runs()
        rebuildable = getattr(writer.sink, "rebuildable", None)    # a sink that sends early (s3)
        if rebuildable is not None:
            writer.unreadable = array("Q")      # remake needs them
            rebuildable(writer.layout.desc_table, lambda off, n: writer.remake(off, n, self.cycle_bitmaps))
        writer.write_prologue()        # the header (flagged incomplete) first, then the rest laid out
        writer.sink.reserve(writer.layout.desc_table + kdump.DESC.size * plan.num_dumpable, allocate=True)
        for c0, present, dumpable in self.cycle_bitmaps(0, src.max_pfn):
            writer.write_bitmaps(c0, present, dumpable)
        writer.pad_bitmaps()
        writer.sink.barrier()        # header, notes and bitmaps on disk before any page data
        lo, hi = self.split or (0, src.max_pfn)
        total = sum(_core.bitmap_count_range(plan.keep.get(c0), max(lo, c0) - c0, min(hi, c1) - c0)
                    for c0, c1 in cycles(src.max_pfn, lo, hi) if not plan.keep.is_empty(c0))
        writer.start_pages(plan.num_dumpable, own=total)
        self.progress.phase("copying", total)

        def windows():
            for c0, c1 in cycles(src.max_pfn, lo, hi):
                if not plan.keep.is_empty(c0):
                    yield from engine.windows(plan.keep.get(c0), c0, min(hi, c1) - c0, start=max(lo, c0) - c0)

        def commit(job):
            writer.commit(job)
            self.committed.append((writer.done_to, writer.desc_off, writer.data_off))
            stats.tally(job)
            self.progress.update(job.n_pages)

        zeros0, unreadable0 = stats.pages_zero, stats.pages_unreadable
        engine.run(windows(), commit, zero_check=bool(plan.level & DumpLevel.ZERO))
        stats.pages_kept += (writer.pages_written - (stats.pages_zero - zeros0)
                             - (stats.pages_unreadable - unreadable0))
        if plan.level & DumpLevel.ZERO:
            stats.excluded["zero"] = stats.pages_zero

    def cycle_bitmaps(self, lo, hi):
        """``(c0, present, dumpable)`` of each cycle meeting pfns lo..hi: the bitmaps' bytes,
        the same when written and when rebuilt (``KdumpWriter.remake``)."""
        for c0, c1 in cycles(self.src.max_pfn, lo, hi):
            yield c0, runs_bitmap(self.present_runs, c0, c1), self.plan.keep.get(c0)

    def trust_only_durable(self, lost):
        """Pages count as written only if their descriptors and data reached the file:
        ``lost`` are the ranges the sink could not write after all (buffered O_DIRECT
        streams on a full disk)."""
        if not lost:
            return
        writer = self.writer
        table_end = writer.layout.desc_table + kdump.DESC.size * self.plan.num_dumpable
        data_start = writer.pages_off
        # the zero block and the checksum array lie between: an incomplete dump carries no
        # checksums, and an unwritten zero block of the reserved file reads as zeros anyway
        lost = [(a, b) for a, b in lost if not (table_end <= a and b <= data_start)]
        safe = writer.split[0] if writer.split else 0
        for done_to, desc_end, data_end in self.committed:
            if any(a < (data_end if a >= data_start else desc_end) for a, _ in lost):
                break
            safe = done_to
        writer.done_to = safe

    def finish_incomplete(self):
        """The header flagged incomplete, and the pages never written taken out of the 2nd bitmap."""
        keep, max_pfn = self.plan.keep, self.writer.layout.max_mapnr
        self.writer.finish(incomplete=True, bitmaps=lambda: ((c0, c1, keep.get(c0)) for c0, c1 in cycles(max_pfn)))
