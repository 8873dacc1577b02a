"""Marker pages (written by guest/workload.py) and their census in ELF vmcores.

A marker page is the tag ``FDMARK:<class>:<8-digit index>:`` repeated over the
whole page.  ``census`` counts, per class, the pages that start with a tag and
how many of them are intact (the full page equals the expected pattern).
"""

import mmap
import re
from collections import Counter

PAGE = 4096
MAGIC = b"FDMARK:"
TAG_RE = re.compile(rb"FDMARK:([a-z]+):(\d{8}):")
CLASSES = ("user", "shmem", "tmpfs", "cache", "free")
ZERO_PAGE = bytes(PAGE)


def page_of(cls, idx):
    tag = b"FDMARK:%s:%08d:" % (cls.encode(), idx)
    return (tag * (PAGE // len(tag) + 1))[:PAGE]


def classify(page):
    """('zero'|'other'|(cls, idx, intact))"""
    if page[:7] == MAGIC:
        m = TAG_RE.match(page)
        if m:
            cls, idx = m.group(1).decode(), int(m.group(2))
            return (cls, idx, page == page_of(cls, idx))
        return "other"
    if page == ZERO_PAGE:
        return "zero"
    return "other"


def ram_segments(path):
    """[(paddr, filesz, offset)] of the PT_LOADs that map RAM (kernel text copy skipped)."""
    from elftools.elf.elffile import ELFFile
    segs = []
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            h = seg.header
            if h.p_type != "PT_LOAD":
                continue
            if h.p_vaddr >= 0xFFFFFFFF80000000 and h.p_vaddr != 0xFFFFFFFFFFFFFFFF:
                continue  # kernel text mapping duplicates RAM
            segs.append((h.p_paddr, h.p_filesz, h.p_offset))
    return segs


def vmcoreinfo(path):
    """The VMCOREINFO text of an ELF vmcore, as a dict (via pyelftools)."""
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            if seg.header.p_type != "PT_NOTE":
                continue
            for note in seg.iter_notes():
                if note["n_name"] == "VMCOREINFO":
                    desc = note["n_desc"]
                    if isinstance(desc, bytes):
                        desc = desc.decode("ascii", "replace")
                    out = {}
                    for line in desc.splitlines():
                        k, sep, v = line.partition("=")
                        if sep and k not in out:
                            out[k] = v
                    return out
    return None


def iter_elf_pages(path):
    """Yield (pfn, page bytes) for every whole page of the RAM segments."""
    segs = ram_segments(path)
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            for paddr, filesz, off in segs:
                first = (paddr + PAGE - 1) // PAGE
                last = (paddr + filesz) // PAGE
                for pfn in range(first, last):
                    o = off + pfn * PAGE - paddr
                    yield pfn, mm[o:o + PAGE]
        finally:
            mm.close()


def census_pages(pages):
    """Count marker pages per class in an iterable of (pfn, bytes)."""
    total = Counter()
    intact = Counter()
    distinct = {}
    zero = 0
    npages = 0
    for pfn, page in pages:
        npages += 1
        if page[:7] == MAGIC:
            c = classify(page)
            if isinstance(c, tuple):
                total[c[0]] += 1
                if c[2]:
                    intact[c[0]] += 1
                distinct.setdefault(c[0], set()).add(c[1])
        elif page[0] == 0 and page == ZERO_PAGE:
            zero += 1
    return {"pages": npages, "zero": zero,
            "classes": {c: {"pages": total[c], "intact": intact[c],
                            "distinct": len(distinct.get(c, ()))}
                        for c in sorted(set(total) | set(CLASSES))}}


def census_elf(path):
    return census_pages(iter_elf_pages(path))


def marker_pfns(path):
    """{pfn: class} of intact marker pages in an ELF vmcore."""
    out = {}
    for pfn, page in iter_elf_pages(path):
        if page[:7] == MAGIC:
            c = classify(page)
            if isinstance(c, tuple) and c[2]:
                out[pfn] = c[0]
    return out
