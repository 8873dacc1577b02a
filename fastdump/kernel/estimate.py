"""``fastdump estimate``: how many pages each dump level would keep, from struct
pages alone (page contents are not read, so zero pages are not counted)."""

from .judge import bitmap_with_range, make_judge, print_to_stderr
from .levels import MAX_LEVEL, DumpLevel
from .pagetypes import CLASSES

DROPPED_BY = {"free": DumpLevel.FREE, "cache": DumpLevel.CACHE | DumpLevel.CACHE_PRIVATE,
              "cache_private": DumpLevel.CACHE_PRIVATE, "user": DumpLevel.USER}
#: the dump-level bit that recognises each class one by one (``PageEncoding.can`` takes one bit)
RECOGNISED_BY = {"free": DumpLevel.FREE, "cache": DumpLevel.CACHE, "cache_private": DumpLevel.CACHE_PRIVATE,
                 "user": DumpLevel.USER}
CYCLE = 1 << 20   # pfns per classify call (128 KiB bitmap)


def _classify_everything(judge, source):
    """Class counts of the pages the source stores, and how many it stores: memory it
    only describes (a p_memsz beyond p_filesz) holds no page to keep, so it is not
    scanned (a huge p_memsz costs nothing)."""
    totals = {c: 0 for c in CLASSES}
    present = 0
    for first, end in source.stored_runs():
        present += end - first
        a = first - first % 64
        for s in range(a, end, CYCLE):
            e = min(end, s + CYCLE)
            keep = bitmap_with_range(e - s, max(first, s) - s, e - s)
            for k, v in judge.classify(s, e, keep).items():
                totals[k] += v
    return totals, present


def estimate(source, *, warn=print_to_stderr):
    """Pages per class and expected kept pages per dump level 0..31.

    Returns ``{"present": n, "pages": {class: n}, "kept": {level: n},
    "scan_always": bool, "zero_pages": None, "unrecognised": [class...],
    "warnings": [...], "notes": [...]}``.  ``kept`` does not subtract zero pages
    (bit 1), which only reading the pages can find.  ``unrecognised`` names the
    classes this kernel's VMCOREINFO does not let us tell apart: their count misses
    pages (0, or the few found another way) that then count as kept, so a script
    reading the numbers must see it there, not only on stderr; ``warnings``, every
    warning given (``warn``).
    Raises FastdumpError if the dump cannot be classified."""
    from ..copy.engine import default_threads
    warnings = []

    def said(text):
        warnings.append(text)
        warn(text)
    judge = make_judge(source, MAX_LEVEL, warn=said, threads=default_threads())
    pages, present = _classify_everything(judge, source)
    vi = source.vmcoreinfo
    scan_always = judge.needs_struct_pages and "PG_hwpoison" in vi.numbers
    kept = {}
    for level in range(MAX_LEVEL + 1):
        drop = sum(n for c, n in pages.items() if c in DROPPED_BY and level & DROPPED_BY[c])
        if level & DumpLevel.CLASSES or scan_always:
            drop += pages["hwpoison"] + pages["offline"]
        kept[level] = present - drop
    stats = judge.stats()
    return {"present": present, "pages": pages, "kept": kept, "scan_always": scan_always,
            "zero_pages": None, "free_seen": stats["free_seen"], "protected": stats["protected"],
            "unrecognised": [c for c, bit in RECOGNISED_BY.items() if not judge.encoding.can(bit)],
            "warnings": warnings,
            "notes": ["zero pages (dump level bit 1) are not counted: finding them reads every page",
                      "a page in two classes (e.g. hwpoisoned page cache) is counted once, in the "
                      "first class of makedumpfile's order"]}
