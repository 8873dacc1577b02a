"""Pass 1 of a dump: which pages to keep, decided cycle by cycle before any target is opened.

The decision comes from struct pages (the judge), never from page contents; an ELF
dump also learns which kept pages are zero, since its layout drops them.  The
result is a Plan: one bitmap per cycle, in memory up to a cap, beyond it in a
temporary file, reused by every target and retry at the same dump level.
"""

import bisect
import os

from .. import _core
from ..errors import FastdumpError, UsageError
from ..formats import elf as elfmod
from ..formats import elfdump
from ..kernel.levels import DumpLevel

CYCLE_PFNS = 1 << 23          # 32 GiB of 4 KiB pages; a cycle bitmap is 1 MiB
BITMAP_CACHE_BYTES = 8 << 20  # beyond this, cycle bitmaps go to a temp file


class BitmapStore:
    """Cycle bitmaps kept between the passes: in memory up to a cap, then a temp file.
    An empty cycle costs nothing: memory the source only describes (a huge p_memsz)
    never reaches the spill file."""

    def __init__(self, spill_dir=None, cap=BITMAP_CACHE_BYTES):
        self.cap, self.spill_dir = cap, spill_dir
        self.mem, self.used, self.file, self.index = {}, 0, None, {}
        self.empty = {}    # key -> length of an all-zero bitmap

    def put_empty(self, key, nbits):
        self.empty[key] = -(-nbits // 8)

    def put(self, key, bitmap):
        if not _core.bitmap_count(bitmap, 8 * len(bitmap)):
            self.empty[key] = len(bitmap)
            return
        if self.used + len(bitmap) <= self.cap:
            self.mem[key] = bitmap
            self.used += len(bitmap)
            return
        if self.file is None:
            import tempfile             # only past the cap: start-up need not pay for it
            self.file = tempfile.TemporaryFile(dir=self.spill_dir, prefix=".fastdump-bitmap-")
        self.file.seek(0, os.SEEK_END)
        self.index[key] = (self.file.tell(), len(bitmap))
        self.file.write(bitmap)

    def is_empty(self, key):
        return key in self.empty

    def get(self, key):
        if key in self.empty:
            return bytearray(self.empty[key])
        if key in self.mem:
            return self.mem[key]
        off, size = self.index[key]
        self.file.flush()
        return bytearray(os.pread(self.file.fileno(), size, off))

    def close(self):
        if self.file is not None:
            self.file.close()


def runs_in(runs, c0, c1):
    """The parts of sorted, disjoint ``(first, end)`` runs inside ``c0..c1``, found by
    bisection: a cycle costs log(#runs), not #runs (many PT_LOADs stay linear)."""
    i = bisect.bisect_left(runs, (c0,))
    if i and runs[i - 1][1] > c0:
        i -= 1
    while i < len(runs) and runs[i][0] < c1:
        a, b = max(runs[i][0], c0), min(runs[i][1], c1)
        if a < b:
            yield a, b
        i += 1


def runs_bitmap(runs, c0, c1):
    bm = bytearray(-(-(c1 - c0) // 8))
    for a, b in runs_in(runs, c0, c1):
        _core.bitmap_set_range(bm, a - c0, b - a)
    return bm


def cycles(max_pfn, lo=0, hi=None):
    """Cycles ``(c0, c1)`` up to max_pfn; with lo/hi only those overlapping lo..hi."""
    hi = max_pfn if hi is None else min(hi, max_pfn)
    for c0 in range(lo - lo % CYCLE_PFNS, hi, CYCLE_PFNS):
        yield c0, min(c0 + CYCLE_PFNS, max_pfn)


def elf_class(src, requested):
    """The ELF class to write: the source's, unless ``--elf-class`` asked for one."""
    return {None: src.elfclass, 32: elfmod.ELFCLASS32, 64: elfmod.ELFCLASS64}[requested]


def _make_judge(source, level, warn, engine):
    """The page classifier for this dump level, or None when only zero pages matter; it
    reads struct pages on the engine's threads, as the engine reads pages."""
    try:
        from ..kernel.judge import make_judge
    except ImportError:
        if level & DumpLevel.CLASSES:
            raise UsageError(f"dump level {level}: excluding cache, user or free pages (bits 2, 4, 8, 16) "
                             "is not available in this build") from None
        return None
    how = {"threads": engine.threads, "use_mmap": engine.use_mmap}
    if level & DumpLevel.CLASSES:
        return make_judge(source, level, warn=warn, **how)
    try:
        judge = make_judge(source, level, warn=warn, **how)
    except FastdumpError as e:  # levels 0 and 1 must copy whatever the VMCOREINFO says
        warn(f"page classification unavailable ({e}); hwpoisoned/offline pages are kept")
        return None
    return judge if getattr(judge, "needs_struct_pages", True) else None


class Plan:
    """What the first pass decided for one dump level."""

    num_dumpable = 0
    pages_scanned = 0
    unclassified = 0
    # ELF only
    reads = None            # per cycle: pages to read (kept and not zero), a BitmapStore
    segments = None         # a list
    pages_zero = 0
    zero_bytes_read = 0

    def __init__(self, level, keep):
        self.level = level
        self.keep = keep             # per cycle: pages to store (kdump: 2nd bitmap), a BitmapStore
        self.excluded = {}
        self.self_check = {}

    def close(self):
        self.keep.close()
        if self.reads is not None:
            self.reads.close()

    def apply_to(self, stats):
        """A dump's statistics start from what its plan found."""
        stats.pages_scanned = self.pages_scanned
        stats.excluded = dict(self.excluded)
        stats.pages_unclassified = self.unclassified
        stats.self_check = self.self_check
        if self.segments is not None:
            stats.pages_zero = self.pages_zero
            stats.bytes_read += self.zero_bytes_read


def make_plan(src, level, engine, *, elfclass=None, spill_dir=None, progress, warn):
    """Classify every cycle at ``level``; ``elfclass`` (an ELF dump) also finds zero pages."""
    judge = _make_judge(src, level, warn, engine)
    plan = _classify(src, level, judge, spill_dir, progress)
    if plan.excluded.get("hwpoison") and not getattr(judge, "layout_checked", True):
        judge.check_layout()         # many hwpoisoned pages: a wrong OFFSET(page.flags) looks so
    doubt = getattr(judge, "layout_doubt", None)
    if doubt:
        warn(f"the kernel's own types contradict VMCOREINFO's struct page layout ({doubt}): no page "
             f"is dropped by its struct page (free, cache, user, hwpoisoned, offline); zero pages still are")
        plan.keep.close()
        judge = None
        plan = _classify(src, level, None, spill_dir, progress)
    plan.unclassified = plan.excluded.pop("unclassified", 0)
    plan.excluded = {k: v for k, v in plan.excluded.items() if v}
    if judge is not None and hasattr(judge, "self_check"):
        try:
            plan.self_check = judge.self_check()
        except FastdumpError as e:
            warn(f"self-check not possible: {e}")
    if elfclass is not None:
        _plan_elf(src, plan, engine, elfclass, spill_dir, progress)
    return plan


def _classify(src, level, judge, spill_dir, progress):
    """Pass 1 proper: the stored pages of every cycle, less what ``judge`` (None: nothing)
    drops."""
    plan = Plan(level=level, keep=BitmapStore(spill_dir))
    present_runs, stored_runs = src.present_runs(), src.stored_runs()
    progress.phase("scanning", src.max_pfn)
    for c0, c1 in cycles(src.max_pfn):
        plan.pages_scanned += sum(b - a for a, b in runs_in(present_runs, c0, c1))
        if next(runs_in(stored_runs, c0, c1), None) is None:
            plan.keep.put_empty(c0, c1 - c0)      # only described (p_memsz): costs nothing
            progress.update(c1 - c0)
            continue
        keep = runs_bitmap(stored_runs, c0, c1)
        if judge is not None:
            for cls, n in judge.classify(c0, c1, keep).items():
                plan.excluded[cls] = plan.excluded.get(cls, 0) + n
        plan.num_dumpable += _core.bitmap_count(keep, c1 - c0)
        plan.keep.put(c0, keep)
        progress.update(c1 - c0)
    return plan


def _plan_elf(src, plan, engine, elfclass, spill_dir, progress):
    """ELF drops zero pages, so they must be known before the file is laid out."""
    if elfclass == elfmod.ELFCLASS32:
        elfdump.check_fits_elf32(src.loads)   # before reading any page
    plan.reads = BitmapStore(spill_dir)
    plan.segments = [elfdump.Segment(p, src.page_size) for p in src.loads]
    zero_check = bool(plan.level & DumpLevel.ZERO)
    progress.phase("zero scan" if zero_check else "layout", plan.num_dumpable)
    by_cycle = {}    # cycle -> the segments storing pages in it: #segments x #cycles stays linear
    for seg in plan.segments:
        for c0, _ in cycles(src.max_pfn, seg.first_pfn, seg.end_pfn):
            by_cycle.setdefault(c0, []).append(seg)
    for c0, c1 in cycles(src.max_pfn):
        if c0 not in by_cycle:     # no page stored in this cycle: nothing kept, nothing to read
            plan.reads.put_empty(c0, c1 - c0)
            continue
        keep = plan.keep.get(c0)
        reads = bytearray(keep)
        if zero_check:
            zeros = bytearray(len(keep))

            def mark(job, zeros=zeros, c0=c0):
                job.zero_bits_into(zeros, c0)
                plan.zero_bytes_read += job.bytes_read
                progress.update(job.n_pages)
            engine.run(engine.windows(keep, c0, c1 - c0), mark, zero_check=True, scan_only=True)
            _core.bitmap_clear_bits(reads, zeros)
            plan.pages_zero += _core.bitmap_count(zeros, c1 - c0)
        for seg in by_cycle[c0]:
            seg.feed(c0, c1, reads, keep)
        plan.reads.put(c0, reads)
    if zero_check:
        plan.excluded["zero"] = plan.pages_zero


def split_ranges(src, plan, nparts, block):
    """Contiguous [start, end) pfn ranges holding about num_dumpable/N dumpable pages
    each, starting on ``block`` boundaries (the split parts of ``--split``)."""
    counts = []
    for c0, c1 in cycles(src.max_pfn):
        if plan.keep.is_empty(c0):
            continue
        keep = plan.keep.get(c0)
        for b in range(c0, c1, block):
            counts.append((b, _core.bitmap_count_range(keep, b - c0, min(c1, b + block) - c0)))
    ranges, start, acc = [], 0, 0
    share = plan.num_dumpable / nparts
    for b, n in counts:
        acc += n
        if len(ranges) < nparts - 1 and acc >= share * (len(ranges) + 1):
            end = min(src.max_pfn, b + block)
            ranges.append((start, end))
            start = end
    while len(ranges) < nparts:
        ranges.append((start, src.max_pfn))
        start = src.max_pfn
    return ranges
