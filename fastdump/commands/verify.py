"""``fastdump verify DUMP [SOURCE]``: check a written dump end to end.

kdump-compressed: the headers are sane (the reader's checks), the bitmaps agree
(2nd within 1st, nothing past max_mapnr), there is one descriptor per set bit of
the 2nd bitmap and every one lies in the page data area of the file, stores at
most a page, names a known codec, and decompresses to exactly one page; the
shared zero page is zeros.  An incomplete dump is reported as such; a complete
but partial one (source pages that could not be read) passes, with those pages
counted.  A fastdump dump also carries checksums (formats/checksums.py): every
stored page with its descriptor, the header, sub header and notes, every bitmap
block and the zero block (ELF: each page-size block of the data, the headers
and notes) are checked against them, so a changed byte is found without the
source and named by pfn.  ELF: every segment lies within the file, and a second copy of memory
(the kernel-text PT_LOAD) equals the first.  With SOURCE (an ELF vmcore) every
page the dump stores must equal the source's, except where the dump records erased data
(makedumpfile's eraseinfo, ``--config``): a page may then differ from the source only in
bytes the dump holds as the erase fills, and the 'X' bytes together may not exceed what
the eraseinfo's size lines record, the 0 bytes 8 per nullify line.  Their positions are
not checked (the verdict says so).  Those pages are counted as erased, not as equal to
the source.  Without SOURCE nothing is excused.

Every page is decoded by the reader's own decoder (the compiled core, every
codec, GIL released), on a thread pool in chunks of descriptors.  Prints one
verdict line (``OK: ...`` or ``FAILED: ...``), exit status 0 or 1.  API:
``verify(path, source=None, threads=None) -> dict``.
"""

import argparse
import bisect
import contextlib
import json
import os
import threading
import time
from array import array
from concurrent.futures import ThreadPoolExecutor

from .. import _core
from ..errors import FastdumpError, FormatError
from ..formats import checksums, codecs, kdump
from ..kernel.erase import recorded
from ..options import path_arg, threads_arg
from ..sources.opener import open_dump, sniff
from ..sources.vmcore import ElfSource
from .parsing import Parser

CHUNK = 8192          # descriptors per task
MAX_PROBLEMS = 20     # messages kept (all are counted)
SPAN_GAP = 256 << 10  # page data closer than this is read with one pread
DESC = kdump.DESC


def erase_budget(text):
    """Bytes makedumpfile's eraseinfo text says were erased, by fill: {'X': the sum of the
    ``erase EXPR size N`` lines, 0: 8 per ``erase EXPR nullify`` line (a pointer)}, or None
    when there is no record."""
    if not text:
        return None
    total = {0x58: 0, 0: 0}
    for line in text.decode("ascii", "replace").splitlines():
        words = line.split()
        if len(words) == 4 and words[0] == "erase" and words[2] == "size" and words[3].isdigit():
            total[0x58] += int(words[3])
        elif len(words) == 3 and words[0] == "erase" and words[2] == "nullify":
            total[0] += 8
    return total


class _Erased:
    """Pages that differ from the SOURCE only in erase fills, each fill's count within what the
    dump's eraseinfo records for it ('X': size lines, 0: nullify lines).  Only the counts are
    held to the record, not the positions; without a SOURCE nothing is excused (two copies of a
    page in one dump were erased alike)."""

    def __init__(self, budget, source):
        self.budget, self.by_pfn = (budget if source is not None else None), {}
        self.unalike = []     # pfns whose two copies were erased differently
        self.lock = threading.Lock()

    def accounts_for(self, pfn, got, want):
        """True when page ``pfn`` (``got``) differs from the source's (``want``) only in
        erase fills; counted once per pfn (an ELF dump may store a page twice)."""
        if self.budget is None:
            return False
        n = dict.fromkeys(self.budget, 0)
        for a, b in zip(got, want):
            if a != b:
                if a not in n:
                    return False
                n[a] += 1
        with self.lock:
            seen = self.by_pfn.get(pfn)
            if seen is not None and seen != n:     # the other copy was erased otherwise
                self.unalike.append(pfn)
                n = {fill: max(n[fill], seen[fill]) for fill in n}
            self.by_pfn[pfn] = n
        return True

    def report(self, result, problems):
        got = {fill: sum(n[fill] for n in self.by_pfn.values()) for fill in self.budget or ()}
        result["pages_erased"], result["bytes_erased"] = len(self.by_pfn), sum(got.values())
        if self.unalike:
            problems.add(f"{len(self.unalike)} pages stored twice were erased differently in their two copies "
                         f"(pfn {', '.join(f'{p:#x}' for p in sorted(self.unalike)[:4])})")
        for fill, n in got.items():
            if n > self.budget[fill]:
                problems.add(f"{n} bytes differ from the source as {'X' if fill else '0 (nullify)'} erase fill, "
                             f"but the eraseinfo records only {self.budget[fill]}")


class _Problems:
    def __init__(self):
        self.lock = threading.Lock()
        self.count = 0
        self.messages = []

    def add(self, msg, n=1):
        with self.lock:
            self.count += n
            if len(self.messages) < MAX_PROBLEMS:
                self.messages.append(msg)


class _SourcePages:
    """The source vmcore's stored pages, for comparison (thread-safe: pread only)."""

    def __init__(self, path):
        self.src = ElfSource(path)
        self.page_size = self.src.page_size
        self.runs = self.src.stored_runs()
        self.starts = [a for a, _ in self.runs]
        self.lock = threading.Lock()

    def missing(self, first, end):
        """How many of pfns first..end-1 the source does not store."""
        have, pfn = 0, first
        i = max(0, bisect.bisect_right(self.starts, first) - 1)
        while pfn < end and i < len(self.runs):
            a, b = self.runs[i]
            lo, hi = max(a, pfn), min(b, end)
            if lo < hi:
                have += hi - lo
                pfn = hi
            if b <= pfn:
                i += 1
            elif a >= end:
                break
        return (end - first) - have

    def read(self, first, end):
        # /proc/vmcore is read through one cached mmap window: not for several threads at once
        with self.lock if getattr(self.src, "mmap_reads", False) else contextlib.nullcontext():
            return self.src.read_phys(first * self.page_size, (end - first) * self.page_size, zero_fill=True)

    def read_phys(self, addr, size):
        with self.lock if getattr(self.src, "mmap_reads", False) else contextlib.nullcontext():
            return self.src.read_phys(addr, size, zero_fill=True)

    def close(self):
        self.src.close()


def _run_tasks(task, tasks, threads):
    if threads == 1:
        for t in tasks:
            task(t)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(task, tasks):
            pass


# ------------------------------------------------------------------ kdump ---

def _chunks(runs, size):
    """Split pfn runs into tasks of at most ``size`` pfns: (first descriptor index, runs)."""
    task, n, index = [], 0, 0
    for a, b in runs:
        while a < b:
            take = min(b - a, size - n)
            task.append((a, a + take))
            n += take
            a += take
            if n == size:
                yield index, task
                index += n
                task, n = [], 0
    if task:
        yield index, task


def _check_kdump(r, source, threads, result, problems):
    ps = r.block_size
    if ps != r.page_size:
        problems.add(f"block size {ps} differs from the page size")
    if r.header_version < 1 or r.header_version > 6:
        problems.add(f"unknown header version {r.header_version}")
    if r.status & ~kdump.STATUS_KNOWN:
        problems.add(f"unknown header status bits {r.status & ~kdump.STATUS_KNOWN:#x}")
    header_codec = r.header_codec_flags()
    if header_codec & (header_codec - 1):
        problems.add(f"header names more than one compression ({header_codec:#x})")
    b1, b2 = r.bitmap_regions()    # in full, padding included
    nbits = r.max_mapnr
    step = 1 << 20
    stray = 0
    for i in range(0, r.bitmap_len, step):
        x1 = int.from_bytes(b1[i:i + step], "little")
        x2 = int.from_bytes(b2[i:i + step], "little")
        extra = x2 & ~x1
        if extra:
            stray += _core.bitmap_count(extra.to_bytes(step, "little"), step * 8)
    if stray:
        problems.add(f"{stray} pages are dumped (2nd bitmap) but not present (1st bitmap)", stray)
    tail = nbits // 8
    for name, bm in (("1st", b1), ("2nd", b2)):
        beyond = (bm[tail] >> (nbits % 8)) if nbits % 8 and tail < len(bm) else 0
        full_from = tail + (1 if nbits % 8 else 0)
        if beyond or any(bm[full_from:]):
            problems.add(f"{name} bitmap has bits set past max_mapnr {nbits}")
    ndesc = r.n_descriptors()
    result["pages"] = ndesc
    result["pages_present"] = _core.bitmap_count(b1, nbits)
    data_start = r.desc_off + DESC.size * ndesc
    if data_start > r.file_size:
        problems.add(f"descriptor table ({ndesc} descriptors) runs past the end of the file "
                     f"({data_start} > {r.file_size})")
    sums = _check_sums(r.checksums, r.fd, r.file_size, result, problems,
                       bitmaps={checksums.BITMAP1: r.bitmap1_off, checksums.BITMAP2: r.bitmap2_off})
    if sums is not None and sums.scheme not in (checksums.IN_DESCRIPTORS, checksums.PER_DESCRIPTOR):
        problems.add("the checksum trailer is not one of a kdump-compressed dump")
        sums = None
    # page checksums in the descriptors, with a trailer or without (a dump cut short);
    # an older fastdump's separate array (PER_DESCRIPTOR) is not read: its pages count as unchecksummed
    page_sums = sums is None or sums.scheme == checksums.IN_DESCRIPTORS
    codec_counts = {}
    erased = _Erased(erase_budget(recorded(r)), source)
    counts = {"unwritten": 0, "compared": 0, "checked": 0, "checksummed": 0, "tagged": 0, "tagged_whole": 0}
    counts_lock = threading.Lock()
    def task(arg):
        first_index, runs = arg
        n = sum(b - a for a, b in runs)
        descs = r.read_descriptors(first_index, n, partial=True)
        if len(descs) < n:
            have = len(descs)
            problems.add(f"descriptors {first_index + have}..{first_index + n - 1} are past the end of the file",
                         n - have)
        offs, stored = descs.offsets, list(zip(descs.offsets, descs.sizes, descs.flags))
        pfns = [p for a, b in runs for p in range(a, b)][:len(offs)]
        want, unwritten, my_codecs = {}, 0, {}
        for pfn, key in zip(pfns, stored):
            off, size, flags = key
            if off == 0 and size == 0:
                unwritten += 1
                continue
            if key in want:
                my_codecs[codecs.by_flag(flags).name] += 1
                continue
            codec = codecs.by_flag(flags)
            if codec is None:
                problems.add(f"pfn {pfn:#x}: unknown descriptor flags {flags:#x}")
                continue
            name = codec.name
            my_codecs[name] = my_codecs.get(name, 0) + 1
            if flags and header_codec and flags != header_codec:
                problems.add(f"pfn {pfn:#x}: page compressed with {name}, the header says "
                             f"{codecs.flag_name(header_codec)}")
            if off < data_start or off + size > r.file_size:
                problems.add(f"pfn {pfn:#x}: page data {off:#x}+{size} is outside the page data area "
                             f"({data_start:#x}..{r.file_size:#x})")
                continue
            if size == 0 or size > ps or (flags == 0 and size != ps):
                problems.add(f"pfn {pfn:#x}: stored size {size} is wrong for a {name} page of {ps} bytes")
                continue
            if flags == 0 and source is None:
                continue            # a raw page of the right size: nothing more to check without the source
            want[key] = None
        # read page data in coalesced spans, decode each distinct descriptor once
        keys = sorted(want)
        i = 0
        while i < len(keys):
            j, span_end = i, keys[i][0] + keys[i][1]
            while j + 1 < len(keys) and keys[j + 1][0] - span_end <= SPAN_GAP:
                j += 1
                span_end = max(span_end, keys[j][0] + keys[j][1])
            base = keys[i][0]
            buf = memoryview(r.read_upto(base, span_end - base))
            for k in keys[i:j + 1]:
                off, size, flags = k
                data = buf[off - base:off - base + size]
                if len(data) != size:
                    want[k] = "is cut off by the end of the file"
                    continue
                try:
                    want[k] = kdump.decode_page(flags, data, ps)   # the reader's own decoding
                except FormatError as e:
                    want[k] = f"does not decompress ({str(e)[:100]})"
            i = j + 1
        compared = 0
        src_pages = {}
        if source is not None:
            for a, b in runs:
                missing = source.missing(a, b)
                if missing:
                    problems.add(f"pfns {a:#x}..{b - 1:#x}: {missing} dumped pages are not in the source", missing)
                src_pages[(a, b)] = (source.read(a, b), a)
        if source is not None:
            run_iter = iter(runs)
            cur = next(run_iter, None)
            for pfn, key in zip(pfns, stored):
                while cur is not None and pfn >= cur[1]:
                    cur = next(run_iter, None)
                page = want.get(key)
                if page is None or isinstance(page, str) or cur is None:
                    continue
                buf, a = src_pages[cur]
                at = (pfn - a) * ps
                if buf[at:at + ps] != page:
                    if not erased.accounts_for(pfn, page, buf[at:at + ps]):
                        problems.add(f"pfn {pfn:#x}: differs from the source page")
                    continue
                compared += 1
        for k, page in want.items():
            if isinstance(page, str):
                n_bad = stored.count(k)
                pfn = pfns[stored.index(k)]
                problems.add(f"pfn {pfn:#x}: page {page}", n_bad)
        if page_sums:     # after the structural checks: their message says more
            _check_page_sums(r, descs.raw, pfns, problems, counts, counts_lock)
        written = [o for o in offs if o]
        with counts_lock:
            if written:
                low = min(written)
                if low < counts.get("min_offset", r.file_size):
                    counts["min_offset"], counts["at_min"] = low, 0
                if low == counts["min_offset"]:
                    counts["at_min"] += written.count(low)
            counts["unwritten"] += unwritten
            counts["compared"] += compared
            counts["checked"] += len(offs) - unwritten
            for k, v in my_codecs.items():
                codec_counts[k] = codec_counts.get(k, 0) + v

    _run_tasks(task, _chunks(r.dumped_runs(), CHUNK), threads)
    erased.report(result, problems)
    first = counts.get("min_offset")
    if first is not None and data_start <= r.file_size and not r.incomplete:
        # page data that several descriptors share is the shared zero page, whatever the
        # header's dump_level says (an edited level would otherwise skip this check)
        gap = r.data_gap(first, shared=counts.get("at_min", 0) > 1)
        if gap is None:
            problems.add(f"page data starts at {first:#x}, not right after the {ndesc} descriptors that the "
                         f"2nd bitmap calls for ({data_start:#x}): bitmap and descriptors disagree")
        else:
            result["pages_unreadable"] = gap[0]
            if gap[1] is not None and any(r.read_at(gap[1], ps)):
                problems.add(f"the shared zero page at {gap[1]:#x} is not all zeros")
    elif first is not None and r.incomplete:
        # the writer of an unfinished dump takes the pages it never wrote out of the 2nd
        # bitmap; their slots stay in the table before the first page data (as convert counts)
        gap = r.data_gap(first, shared=counts.get("at_min", 0) > 1)
        if gap is not None:
            counts["unwritten"] += gap[0]
        else:
            counts["unwritten"] = None      # slots not all empty (a full disk under O_DIRECT): unknown
    elif r.incomplete and not counts["checked"]:
        counts["unwritten"] = None          # no page data reached the file: how many were planned is unknown
    result["codecs"] = codec_counts
    result["pages_checked"] = counts["checked"]
    result["pages_compared"] = counts["compared"]
    result["pages_unwritten"] = counts["unwritten"]
    result["pages_checksummed"] = counts["checksummed"]
    if counts["unwritten"] and not r.incomplete:
        problems.add(f"{counts['unwritten']} descriptors were never written, but the dump is not flagged "
                     f"incomplete")
    if sums is not None and sums.array_count != counts["checked"]:
        problems.add(f"the checksums cover {sums.array_count} pages, the descriptors hold {counts['checked']}")
    elif sums is not None and page_sums and counts["tagged"] != counts["checked"]:
        missing = counts["checked"] - counts["tagged"]
        problems.add(f"{missing} page descriptors carry no checksum", missing)
    elif sums is None and result["checksums"] is False and counts["tagged_whole"] and not r.incomplete:
        result["checksums"] = "missing"
        problems.add(f"{counts['tagged_whole']} page descriptors say a checksum trailer ends this "
                     f"{'part' if r.split else 'dump'}, but none is there (its end was cut or overwritten)")


def _check_sums(load, fd, file_size, result, problems, bitmaps=None):
    """Check every region the dump's checksum trailer (``load()``) covers; return
    the trailer (None when the dump has no checksums: another tool's, or cut short)."""
    try:
        sums = load()
    except ValueError as e:
        problems.add(str(e))
        result["checksums"] = "damaged"
        return None
    result["checksums"] = sums is not None
    if sums is None:
        return None
    if sums.problem:
        problems.add(sums.problem)
    for off, size, kind in checksums.bad_regions(sums, lambda o, n: os.pread(fd, n, o), file_size):
        where = checksums.KIND_NAMES.get(kind, f"region kind {kind}")
        if bitmaps and kind in bitmaps:
            first = (off - bitmaps[kind]) * 8
            where += f" block at {off:#x} (pfns {first:#x}..{first + size * 8 - 1:#x})"
        else:
            where += f" at {off:#x}+{size:#x}"
        problems.add(f"{where} does not match its checksum")
    return sums


def _check_page_sums(r, raw, pfns, problems, counts, lock):
    """Each descriptor of this task that carries a checksum (page_flags) against the
    page's stored bytes and its pfn (crc32 in the compiled core, page data read in
    large spans)."""
    bad, tagged, whole, part = _core.kdump_crc_mismatches(r.fd, raw, r.page_size, array("Q", pfns))
    if bad:
        shown = ", ".join(f"{pfns[i]:#x}" for i in bad[:8]) + (", ..." if len(bad) > 8 else "")
        problems.add(f"{len(bad)} pages do not match their checksums (pfn {shown})", len(bad))
    with lock:
        counts["checksummed"] += tagged - len(bad)
        counts["tagged"] += tagged
        # a whole dump's descriptors, or a part's in the part itself, say that a trailer ends the file
        counts["tagged_whole"] += whole + (part if r.split else 0)


# -------------------------------------------------------------------- ELF ---

def _in_folded_view(d, phys, size, off):
    """Whether these stored bytes are the ones readers use for that memory (the
    folded extents), not a second copy of it such as the kernel-text PT_LOAD."""
    i = bisect.bisect_right(d.extents, (phys, float("inf"))) - 1
    if i < 0:
        return False
    s, e, o = d.extents[i]
    return phys + size <= e and o + (phys - s) == off


def _check_elf(d, source, threads, result, problems):
    """Every byte every PT_LOAD stores is read and compared: with the source, or
    without it, a second copy (the kernel-text segment) with the copy readers use."""
    # ElfSource already refused segments running past the end of the file.
    # An incomplete dump's segments are cut at the end of the file (to whole pages).
    hdr_end = d.header.phoff + len(d.header.phdrs) * (56 if d.header.is64 else 32)
    for i, p in enumerate(d.loads):
        if p.filesz and p.offset < hdr_end:
            problems.add(f"PT_LOAD {i} overlaps the program header table")
    if d.truncated and not d.incomplete:
        problems.add("segments run past the end of the file")
    ps = d.page_size
    result["pages"] = sum(-(-(end - start) // ps) for start, end, _ in d.extents)
    counts = {"checked": 0, "compared": 0}
    lock = threading.Lock()
    block = 4 << 20
    erased = _Erased(erase_budget(recorded(d)), source)

    def task(arg):
        phys, size, off = arg
        data = os.pread(d.fd, size, off)
        if len(data) != size:
            problems.add(f"segment at {off:#x} is truncated")
            return
        pages = -(-size // ps)
        if source is not None:
            first, end = phys // ps, -(-(phys + size) // ps)
            if source.missing(first, end):
                problems.add(f"physical {phys:#x}+{size:#x} is not stored in the source")
                return
            want, what = source.read_phys(phys, size), "differs from the source"
        elif not _in_folded_view(d, phys, size, off):
            want, what = d.read_phys(phys, size, zero_fill=True), "differs between the PT_LOADs that store it"
        else:
            want = None
        n_erased = 0
        if want is not None and want != data:
            differ = [k for k in range(0, size, ps) if want[k:k + ps] != data[k:k + ps]]
            left = [k for k in differ
                    if not erased.accounts_for((phys + k) // ps, data[k:k + ps], want[k:k + ps])]
            n_erased = len(differ) - len(left)
            if left:
                bad = next(k for k in range(left[0], size) if want[k] != data[k])
                problems.add(f"physical {phys + bad:#x} (pfn {(phys + bad) // ps:#x}) {what}")
        with lock:
            counts["checked"] += pages
            counts["compared"] += pages - n_erased if source is not None else 0

    work = []
    for phys, end, off in d.segment_extents:
        for k in range(0, end - phys, block):
            work.append((phys + k, min(block, end - phys - k), off + k))
    _run_tasks(task, work, threads)
    erased.report(result, problems)
    result["pages_checked"] = counts["checked"]
    result["pages_compared"] = counts["compared"]
    result["pages_unreadable"] = sum(b - a for a, b in d.unreadable_runs)
    size = os.fstat(d.fd).st_size
    sums = _check_sums(lambda: checksums.load(lambda o, n: os.pread(d.fd, n, o), size), d.fd, size,
                       result, problems)
    if sums is not None:
        _check_elf_blocks(d, sums, threads, result, problems)
    elif result["checksums"] is False and d.header.checksums_marked and not d.incomplete:
        result["checksums"] = "missing"
        problems.add("the ELF header says a checksum trailer ends this dump, but none is there "
                     "(its end was cut or moved)")


def _check_elf_blocks(d, sums, threads, result, problems):
    """Each block of an ELF dump's data against its crc32, named by the pfns it holds."""
    if sums.scheme != checksums.PER_BLOCK or sums.array_count != -(-sums.data_len // sums.block):
        problems.add("the checksum trailer does not describe this ELF dump's data")
        return
    per_task = max(1, (4 << 20) // sums.block)
    bad_blocks, lock = [], threading.Lock()

    def task(first):
        n = min(per_task, sums.array_count - first)
        at = sums.data_off + first * sums.block
        data = os.pread(d.fd, min(n * sums.block, sums.data_off + sums.data_len - at), at)
        crcs, carry, have = _core.crc_blocks(data, sums.block)
        got = checksums.entries(crcs) + ([carry] if have else [])
        stored = os.pread(d.fd, 4 * n, sums.array_off + 4 * first)
        want = checksums.entries(stored) \
            if len(data) == min(n * sums.block, sums.data_off + sums.data_len - at) else []
        bad = [first + i for i in range(n) if i >= len(want) or i >= len(got) or got[i] != want[i]]
        with lock:
            bad_blocks.extend(bad)

    _run_tasks(task, range(0, sums.array_count, per_task), threads)
    if bad_blocks:
        pfns = sorted({p for b in sorted(bad_blocks)[:8] for p in _pfns_at(d, sums.data_off + b * sums.block,
                                                                             sums.block)})
        shown = ", ".join(f"{p:#x}" for p in pfns) + (", ..." if len(bad_blocks) > 8 else "")
        problems.add(f"{len(bad_blocks)} blocks of page data do not match their checksums (pfn {shown})",
                     len(bad_blocks))
    result["pages_checksummed"] = result["pages_checked"] if not bad_blocks else 0


def _pfns_at(d, off, size):
    """The pfns whose stored bytes lie in file bytes [off, off+size)."""
    ps = d.page_size
    for p in d.loads:
        lo, hi = max(off, p.offset), min(off + size, p.offset + p.filesz)
        if p.filesz and lo < hi:
            yield from range((p.paddr + lo - p.offset) // ps, (p.paddr + hi - p.offset - 1) // ps + 1)


# -------------------------------------------------------------------- API ---

def verify(path, source=None, threads=None):
    """Check the dump at ``path`` (against the ELF vmcore ``source`` if given).

    Returns a dict: ``ok``, ``format``, ``incomplete``, ``pages``, ``pages_checked``,
    ``pages_compared``, ``pages_unreadable`` (left out: the source could not read them),
    ``checksums`` (True when the dump carries fastdump's checksums and they were checked,
    "damaged" when they cannot be read, "missing" when an ELF dump's header or a kdump
    dump's descriptors say it has them but its trailer is gone), ``pages_checksummed``,
    ``codecs``, ``problems`` (up to 20 messages), ``problem_count``, ``seconds``,
    ``pages_per_second``, ``verdict`` (the one line).  Raises FastdumpError only when
    ``path`` or ``source`` cannot be opened at all."""
    t0 = time.monotonic()
    path = path_arg(path, "dump file")
    source = None if source is None else path_arg(source, "source")
    threads = threads_arg(threads) or max(1, os.cpu_count() or 1)
    try:
        os.stat(path)
    except OSError as e:
        raise FastdumpError(f"cannot open {path}: {e.strerror}") from None
    src = _SourcePages(source) if source is not None else None
    problems = _Problems()
    result = {"path": str(path), "source": str(source) if source else None, "format": sniff(path),
              "incomplete": None, "pages": 0, "pages_checked": 0, "pages_compared": 0, "pages_unreadable": 0,
              "codecs": {}, "checksums": False, "pages_checksummed": 0}
    try:
        try:
            d = open_dump(path)
        except FastdumpError as e:
            problems.add(str(e))
            d = None
        if d is not None:
            with d:
                result["incomplete"] = bool(d.incomplete)
                if src is not None and d.page_size != src.page_size:
                    problems.add(f"page size {d.page_size} differs from the source's {src.page_size}")
                elif d.format == "kdump":
                    _check_kdump(d, src, threads, result, problems)
                else:
                    _check_elf(d, src, threads, result, problems)
    except FastdumpError as e:
        problems.add(str(e))
    finally:
        if src is not None:
            src.close()
    seconds = time.monotonic() - t0
    result["problems"] = problems.messages
    result["problem_count"] = problems.count
    result["seconds"] = round(seconds, 3)
    result["pages_per_second"] = round(result["pages_checked"] / seconds) if seconds > 0 else None
    result["threads"] = threads
    result["ok"] = not problems.messages and not result["incomplete"]
    result["verdict"] = _verdict(result)
    return result


def _verdict(r):
    what = f"{r['format'] or 'unknown format'}"
    used = ", ".join(f"{k} {v}" for k, v in sorted(r["codecs"].items()))
    if r["ok"]:
        cmp = f", {r['pages_compared']} equal to the source" if r["source"] else ""
        if r.get("pages_erased"):
            cmp += (f", {r['pages_erased']} differ only in {r['bytes_erased']} erase-fill bytes, within what "
                    "the eraseinfo records; their positions are not checked")
        used = f" ({used})" if used else ""
        lost = r.get("pages_unreadable")
        lost = f", {lost} pages left out as unreadable by the writer (its word: not rechecked)" if lost else ""
        checked = f"{r['pages_checked']} pages checked"
        if r["format"] == "elf" and r.get("pages") and r["pages_checked"] > r["pages"]:
            checked = (f"{r['pages_checked']} stored pages checked ({r['pages']} pfns: part of memory, "
                       f"the kernel text, is stored twice)")
        unread = ""
        if not r["source"] and not r.get("pages_checksummed"):
            raw = r["codecs"].get("none", 0) if r["format"] == "kdump" else r["pages_checked"]
            if raw:     # stored as they are: without the source or a checksum, nothing to hold them to
                unread = (f", of which {raw} stored raw only had their place in the file checked"
                          if r["format"] == "kdump" else
                          ", their bytes held to nothing but the kernel-text copy against RAM")
        return (f"OK: {r['path']}: {what}, {checked}{used}{unread}{cmp}{lost}, "
                f"{_sums_note(r)}, {r['seconds']:.2f} s")
    if r["problems"]:
        more = r["problem_count"] - 1
        extra = f" (and {more} more problem{'s' if more != 1 else ''})" if more > 0 else ""
        inc = " [flagged incomplete]" if r["incomplete"] else ""
        return f"FAILED: {r['path']}: {r['problems'][0]}{extra}{inc}"
    unwritten = r.get("pages_unwritten", 0)
    return (f"FAILED: {r['path']}: dump is flagged incomplete; {r['pages_checked']} pages written check out, "
            + (f"{unwritten} were never written" if unwritten is not None else
               "how many were never written is not known"))


def _sums_note(r):
    if r.get("checksums") is True and r["format"] == "kdump":
        return (f"checksums match ({r['pages_checksummed']} pages with their descriptors, headers, "
                f"bitmaps)")
    if r.get("checksums") is True:
        return f"checksums match (the data of {r['pages_checksummed']} pages, headers, notes)"
    if r.get("pages_checksummed"):      # makedumpfile's --reassemble of our parts keeps them
        # (tagged as written into parts; older fastdump dumps' tag said nothing of a trailer)
        return (f"{r['pages_checksummed']} pages match the checksums in their descriptors (no checksum "
                f"trailer: the headers and bitmaps carry none)")
    return "no checksums to check (this dump carries none)"


def main(argv):
    p = Parser(prog="fastdump verify", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dump", help="dump file to check (kdump-compressed or ELF)")
    p.add_argument("source", nargs="?", help="the ELF vmcore it was made from: compare every kept page")
    p.add_argument("--threads", type=int, metavar="N", help="decompression threads (default: CPUs)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of one line")
    args = p.parse_args(argv)
    r = verify(args.dump, args.source, threads=args.threads)
    print(json.dumps(r, indent=1) if args.json else r["verdict"], flush=True)
    return 0 if r["ok"] else 1


__all__ = ["verify", "main"]
