"""Does a dump fit its target?  Checked before a target is opened, never by guessing low.

The estimate may refuse a target only when the dump clearly cannot fit: it must
never turn away a target that would have held the real dump.  A disk that fills
up during a close call is handled like any other full disk.
"""

from .. import _core
from ..errors import NoSpaceError
from ..formats import codecs, elfdump, kdump
from ..kernel.levels import DumpLevel
from .plan import cycles

ROOM_MARGIN = 1.1             # a sampled estimate refuses a target only when this far over its room


def check_room(src, plan, engine, target, stats, *, codec, elfclass=None):
    """Raise NoSpaceError (``estimated`` set) when ``target`` cannot hold the dump.
    The uncompressed size is an upper bound; only when that does not fit are a few
    kept pages stored for real (the same codec and zero check) to measure what a
    page takes, and only a shortfall beyond the sampling error (ROOM_MARGIN) refuses.
    ``elfclass`` is given for an ELF dump."""
    free = target.free_bytes()
    need = estimate(src, plan, engine, codec=codec, elfclass=elfclass, sample=False)
    if free is not None and need > free:
        need = estimate(src, plan, engine, codec=codec, elfclass=elfclass, sample=True)
        if need > free * ROOM_MARGIN:
            stats.estimated_bytes = need
            e = NoSpaceError(f"needs about {need / 1e6:.0f} MB, only {free / 1e6:.0f} MB free")
            e.estimated = True
            raise e
    stats.estimated_bytes = need


def check_header_room(src, target):
    """A kdump file (every split part too) carries the whole header and both bitmaps,
    sized by max_pfn, not by the data: a target that cannot hold even those is
    refused before anything is written.  A lower bound, so it never refuses a file
    that would fit."""
    free = target.free_bytes()
    layout = _kdump_layout(src)
    if free is not None and layout.desc_table > free:
        raise NoSpaceError(f"{target.spec}: its header and bitmaps alone need {layout.desc_table / 1e6:.0f} MB, "
                           f"only {free / 1e6:.0f} MB free")


def _kdump_layout(src):
    return kdump.KdumpLayout(block_size=src.page_size, max_mapnr=src.max_pfn, note_size=len(src.note_bytes))


def estimate(src, plan, engine, *, codec, elfclass=None, sample):
    """Bytes the dump will take: exact for ELF; for kdump at most the raw pages, or
    with ``sample`` the stored size measured on kept pages spread over the dump."""
    if elfclass is not None:
        return elfdump.ElfDumpWriter.size_of(src, plan.segments, elfclass)
    layout = _kdump_layout(src)
    ratio = _sample_ratio(src, plan, engine, codec) if sample else 1.0
    zero_page = src.page_size if plan.level & DumpLevel.ZERO else 0
    return (layout.desc_table + kdump.DESC.size * plan.num_dumpable + zero_page
            + int(plan.num_dumpable * src.page_size * ratio))


def _sample_ratio(src, plan, engine, codec, samples=1024):
    """Stored/raw bytes of every ``step``-th kept page, through the copy engine."""
    if plan.num_dumpable == 0:
        return 1.0
    step = max(1, plan.num_dumpable // samples)
    totals = [0, 0]    # raw, stored
    flag = codecs.by_name(codec).flag

    def windows():
        seen = 0
        for c0, c1 in cycles(src.max_pfn):
            if plan.keep.is_empty(c0):
                continue
            pick = bytearray(-(-(c1 - c0) // 8))
            for a, b in _core.bitmap_runs(plan.keep.get(c0), c1 - c0):
                for i in range(a + (-seen) % step, b, step):
                    pick[i >> 3] |= 1 << (i & 7)
                seen += b - a
            yield from engine.windows(pick, c0, c1 - c0)

    def measure(job):
        if job.n_pages:
            totals[1] += job.kdump_descriptors(0, 0, flag)[1]
            totals[0] += (job.n_pages - job.unreadable_pages) * src.page_size

    engine.run(windows(), measure, zero_check=bool(plan.level & DumpLevel.ZERO))
    return min(1.0, totals[1] / totals[0]) if totals[0] else 1.0
