"""The page judge: which pages a dump level drops, decided from struct pages.

The pipeline asks, for one cycle of pfns at a time, ``classify(start, end,
keep)``; the judge finds where the struct pages of those pfns lie (Python, once
per mem_section), and the C scanner reads them straight from the source in
bounded batches (kernel metadata only, never page contents), decides, and clears
the bits of dropped pages.  Large ranges are split over threads: each part is
scanned as if no block reached into it, and the rare part that a block from the
part before does reach into is scanned again with that carry, so the result is
exactly that of one scan from the start.

    judge = make_judge(source, dump_level)
    if judge.needs_struct_pages:
        counts = judge.classify(start_pfn, end_pfn, keep)
"""

import sys
from array import array

from .._pageclass import PageClass
from ..errors import FastdumpError
from ..workers import Pool
from . import limits, pagetypes
from .memmap import MemMap
from .levels import MAX_LEVEL
from .memory import KernelMemory
from .pagetypes import CLASSES, DL_CACHE, DL_CACHE_PRI, DL_FREE, DL_USER
from .vtop import KERNEL_MAP_START, TranslationError

try:
    from .. import _pagescan
except ImportError:  # pragma: no cover - the extension is built with the package
    _pagescan = None

EM_X86_64 = 62
BATCH = 8192          # struct pages per read: 512 KiB with SIZE(page)=64 (as _pagescan's BATCH)
PART_PFNS = 1 << 18   # smallest part of a range given to a thread (1 GiB of 4 KiB pages)
PARTS_PER_THREAD = 2  # parts are handed out as threads become free: some balance
U64 = (1 << 64) - 1
NCOUNTS = int(PageClass.NCOUNTS)
C_FREE, C_FREE_SEEN, C_PROTECTED, C_SLAB = (int(c) for c in (PageClass.C_FREE, PageClass.C_FREE_SEEN,
                                                             PageClass.C_PROTECTED, PageClass.C_SLAB))


def print_to_stderr(msg):
    print(f"fastdump: warning: {msg}", file=sys.stderr)


def bitmap_with_range(nbits, lo, hi):
    """LSB-first bitmap of ``nbits`` bits with bits lo..hi-1 set."""
    buf = bytearray((nbits + 7) >> 3)
    hi = min(hi, nbits)
    if hi <= lo:
        return buf
    b0, b1 = (lo + 7) >> 3, hi >> 3
    if b0 <= b1:
        buf[b0:b1] = b"\xff" * (b1 - b0)
        for i in range(lo, min(hi, b0 << 3)):
            buf[i >> 3] |= 1 << (i & 7)
        for i in range(max(lo, b1 << 3), hi):
            buf[i >> 3] |= 1 << (i & 7)
    else:
        for i in range(lo, hi):
            buf[i >> 3] |= 1 << (i & 7)
    return buf


class PageJudge:
    """Judge for one source and dump level (see :func:`make_judge`)."""

    needs_struct_pages = False

    def __init__(self, source, dump_level, *, warn=print_to_stderr, threads=1, use_mmap=None):
        self.source = source
        # a source without a file is read through read_phys, with the GIL: one thread
        self.threads = max(1, threads or 1) if self._reads_file() else 1
        self.use_mmap = use_mmap
        self._scanners = []
        self.parts_rescanned = 0   # parts a block from the part before reached into
        self.dump_level = dump_level
        self.warn = warn
        self.totals = [0] * NCOUNTS
        self.encoding = None
        self.effective_level = 0
        self._carry, self._carry_end = None, None
        self.bytes_read = 0
        self.pcp, self.pcp_note, self.pcp_dropped = None, None, 0
        # set when the kernel's own types (BTF) contradict VMCOREINFO's struct page layout:
        # one of them is damaged, and what the scan dropped by that layout cannot be trusted
        self.layout_doubt, self.layout_checked = None, False
        self._pcp_pending = False

    # -- set-up ------------------------------------------------------------
    def _setup(self, effective_level):
        src, vi = self.source, self.source.vmcoreinfo
        if _pagescan is None:
            raise FastdumpError("page classification needs the compiled extension fastdump._pagescan")
        limits.check(vi, src.page_size)
        self.mem = KernelMemory(src, vi)
        self.memmap = MemMap(src, self.mem, warn=self.warn)
        enc = pagetypes.detect(vi, src.page_size)
        if enc.struct_size != self.memmap.struct_size or enc.off_flags < 0:
            raise FastdumpError("struct page layout unusable: " + "; ".join(enc.problems))
        self.encoding = enc
        level = effective_level
        for bit, what in ((DL_FREE, "free pages"), (DL_CACHE, "page cache"),
                          (DL_CACHE_PRI, "page cache"), (DL_USER, "user pages")):
            if level & bit and not enc.can(bit):
                self.warn(f"dump level bit {bit} ({what}) cannot be applied to this kernel's "
                          f"struct pages; those pages are kept")
        for p in enc.problems:
            self.warn(f"page classification: {p}")
        # never drop the kernel image
        ps = src.page_size
        prot = [(p.paddr // ps, -(-(p.paddr + p.memsz) // ps)) for p in getattr(src, "loads", [])
                if p.vaddr >= KERNEL_MAP_START and p.memsz]
        if not prot:  # no kernel-text PT_LOAD (a converted kdump file): ask the page tables
            image = self.mem.kernel_image_range()
            if image is not None:
                prot = [(image[0] // ps, -(-image[1] // ps))]
        if prot:
            self.protect = (min(a for a, _ in prot), max(b for _, b in prot))
        else:
            self.protect = (0, 0)
        self.image_reserved_mask = self._check_reserved_bit(enc) if self.protect[1] else 0
        self.params = _pagescan.ScanParams(enc, level=level, section_shift=min(self.memmap.section_shift, 62),
                                           prot_start=self.protect[0], prot_end=self.protect[1],
                                           reserved_mask=self.image_reserved_mask)
        self.effective_level = level
        self.needs_struct_pages = True
        self.max_block = 1 << (enc.nr_orders - 1)
        # walked on first need: during the first scan, whose threads run without the GIL
        self._pcp_pending = bool(level & DL_FREE and enc.can(DL_FREE))

    def _pcp(self):
        """The per-CPU free pages (a PcpPages) or None; found once, when first asked."""
        if self._pcp_pending:
            self._pcp_pending = False
            self.pcp = self._per_cpu_free()
        return self.pcp

    def _per_cpu_free(self):
        """The pages on the per-CPU free lists, proven free with the kernel's own types
        (``kernel/pcp.py``); None, with a one-line note, when this kernel cannot say."""
        from .pcp import PcpPages, find_pcp_free
        from .types import Disagreement, NotAvailable
        from .types.kernel import Kernel
        kernel = getattr(self.source, "kernel", None) or Kernel(self.source)
        try:
            return PcpPages(find_pcp_free(kernel, self.memmap, self._list_follower()))
        except NotAvailable as e:
            self.pcp_note = f"pages on per-CPU free lists are kept: {e}"
            self.warn(self.pcp_note)
            if isinstance(e, Disagreement) and (e.name == "page" or e.name.startswith("page.")):
                self.layout_doubt = str(e)     # the scan read struct pages by the same VMCOREINFO
            self.layout_checked = True
            return None
        finally:
            kernel.forget()

    def check_layout(self):
        """Ask the kernel's own types (BTF, when the dump has them) whether VMCOREINFO's struct
        page layout is right; a contradiction sets ``layout_doubt``.  The per-CPU walk asks
        as it starts (-d 16 and above); below, only when the scan found what a wrong layout
        makes (hwpoisoned pages, which a healthy machine has few or none of): it costs
        30-50 ms of reading and indexing BTF."""
        from .types import Disagreement, NotAvailable
        from .types.kernel import Kernel
        kernel = getattr(self.source, "kernel", None) or Kernel(self.source)
        try:
            kernel.sizeof("page")        # loads BTF, which is checked against VMCOREINFO
        except Disagreement as e:
            if e.name == "page" or e.name.startswith("page."):
                self.layout_doubt = str(e)
        except NotAvailable:
            pass
        finally:
            kernel.forget()

    def _list_follower(self):
        """find_pcp_free's follow(): the compiled walk of a scanner of its own (the scan's
        are busy), reading the zone's struct pages through their translation (one
        page-table step per 2 MiB of struct pages), made for the zone being walked and
        kept only while its CPUs' lists are (zones are walked one after another)."""
        scanner, current = self._scanner(), [None, None]

        def follow(zone_start, zone_end, first, head, limit, link_off, ref_off):
            if current[0] != (zone_start, zone_end):
                current[1] = None
                _, spans = self._struct_map(zone_start, zone_end)
                # sorted by address, as follow_list looks them up: without vmemmap, each
                # section's memory map lies wherever it was allocated
                triples = sorted(zip(spans[0::3], spans[1::3], spans[2::3]))
                current[:] = [(zone_start, zone_end), array("Q", [v for t in triples for v in t])]
            return scanner.follow_list(current[1], first, head, link_off, ref_off, limit)
        return follow

    def _check_reserved_bit(self, enc):
        """PG_reserved (inferred as PG_private - 1) if the kernel image's own pages carry it.

        The kernel-image PT_LOAD spans _text.._end, which includes memory the kernel
        released after boot (freed __init sections, the text/rodata and rodata/data
        gaps, unused brk) and then reused as ordinary free, cache and anonymous
        pages.  Live image pages are memblock-reserved, so their struct pages keep
        PG_reserved.  Only when the bit is verified on pages that must be live
        (the image's first page, _stext, the page-table root) may the scanner judge
        image pages whose struct page has it clear; otherwise the whole image is kept.
        """
        mask = enc.reserved_mask
        if not mask:
            return 0
        vi, ps = self.source.vmcoreinfo, self.source.page_size
        probes = {self.protect[0]}
        for name in ("_stext", "init_top_pgt", "swapper_pg_dir"):
            va = vi.symbols.get(name)
            if va is None:
                continue
            try:
                pa = self.mem.translate(va)
            except (FastdumpError, TranslationError):
                continue
            if pa is not None and self.protect[0] <= pa // ps < self.protect[1]:
                probes.add(pa // ps)
        for pfn in sorted(probes):
            va = self.memmap.struct_va(pfn)
            if va is None:
                return 0
            try:
                rec = self._read(va, 1)
            except (FastdumpError, TranslationError):
                return 0
            flags = int.from_bytes(rec[enc.off_flags:enc.off_flags + 8], "little")
            if not flags & mask:
                return 0
        self.bytes_read = 0
        return mask

    # -- reading struct pages ----------------------------------------------------
    def _read(self, va, count):
        size = count * self.memmap.struct_size
        out = self.mem.read(va, size)
        self.bytes_read += size
        return out

    def _read_or_none(self, pa, size):
        """Physical reads for the scanner of a source without a file: None when unreadable."""
        try:
            return self.mem.read_phys(pa, size)
        except FastdumpError:
            return None

    def _reads_file(self):
        return hasattr(self.source, "extent_array") and getattr(self.source, "fd", -1) >= 0

    def _scanner(self):
        """A C scanner reading the source's file (mmap windows or pread), or read_phys."""
        src = self.source
        if self._reads_file():
            use_mmap = self.use_mmap
            if use_mmap is None:
                from ..copy.engine import _mappable
                use_mmap = _mappable(src)
            return _pagescan.Scanner(self.params, fd=src.fd, extents=src.extent_array(), use_mmap=use_mmap)
        return _pagescan.Scanner(self.params, read_phys=self._read_or_none)

    def _spans(self, va, size, spans):
        """Append to ``spans`` the (va, pa, length) pieces of [va, va+size) that translate:
        one step per page-table leaf (2 MiB)."""
        for piece in self.mem.runs(va, min(size, U64 - va), skip_unmapped=True):
            spans.extend(piece)

    def _struct_map(self, start, end):
        """Where the struct pages of [start, end) are, for Scanner.scan_chunks: per
        mem_section run (a, b, has memory map, va, spans) and the spans, translated
        one record past its end (a batch reads its last page's page[1])."""
        mm = self.memmap
        chunks, spans = array("Q"), array("Q")
        for a0, b0, va0 in mm.chunks(start, end):
            lo = len(spans) // 3
            if va0 is not None:
                self._spans(va0, (b0 - a0 + 1) * mm.struct_size, spans)
            chunks.extend((a0, b0, va0 is not None, va0 or 0, lo, len(spans) // 3))
        return chunks, spans

    def _scan(self, start, end, keep, counts, carry, *, walk_beside=False):
        """Scan [start, end) with ``keep`` (bit 0 = start); returns the final carry."""
        return self._scan_parts([(start, end, 0, self._struct_map(start, end))], keep, counts, carry,
                                walk_beside=walk_beside)

    def _parts(self, start, end):
        """[start, end) cut for the threads, or None.  Cuts lie on multiples of BATCH,
        where one scan's batches end too: every part is read and scanned in the same
        batches as by one scan."""
        if self.threads < 2 or start % 8 or end - start < 2 * PART_PFNS:
            return None
        step = max(PART_PFNS, -(-(end - start) // (PARTS_PER_THREAD * self.threads)))
        step += -step % BATCH
        cuts = list(range(start - start % BATCH + step, end, step))
        bounds = [start] + cuts + [end]
        return [(a, b, a - start, self._struct_map(a, b)) for a, b in zip(bounds, bounds[1:]) if a < b]

    def _scan_parts(self, parts, keep, counts, carry, *, walk_beside=True):
        """Scan the parts (consecutive), on threads when more than one, or when the
        per-CPU walk is still to do beside this scan (``walk_beside``: a cycle's own scan,
        not the short look back before it; a range under 2 GiB is one part, scanned on
        one thread while the main thread walks); exact: a part whose real incoming carry
        is not None is scanned again with it."""
        while len(self._scanners) < min(len(parts), self.threads):
            self._scanners.append(self._scanner())
        if len(parts) == 1 and not (walk_beside and self._pcp_pending and self.threads > 1):
            a, b, kb, (chunks, spans) = parts[0]
            carry, n = self._scanners[0].scan_chunks(chunks, spans, keep, kb, a, carry, counts)
            self.bytes_read += n
            return carry
        saved = bytes(keep) if len(parts) > 1 else b""
        free = list(self._scanners)

        def run(i, carry_in):
            a, b, kb, (chunks, spans) = parts[i]
            sc = free.pop()
            try:
                c = array("Q", [0] * NCOUNTS)
                return (c,) + sc.scan_chunks(chunks, spans, keep, kb, a, carry_in, c)
            finally:
                free.append(sc)

        with Pool(len(self._scanners), "fastdump-scan") as pool:
            futures = [pool.submit(run, i, carry if i == 0 else None) for i in range(len(parts))]
            if walk_beside:
                self._pcp()      # Python, while the scanners run in C without the GIL
            results = [f.result() for f in futures]
        for i in range(1, len(parts)):
            if results[i - 1][1] is not None:    # a block reaches into part i: scan it again
                a, b, kb, _ = parts[i]
                keep[kb >> 3:(kb + b - a + 7) >> 3] = saved[kb >> 3:(kb + b - a + 7) >> 3]
                results[i] = run(i, results[i - 1][1])
                self.parts_rescanned += 1
        for c, _, n in results:
            for k in range(NCOUNTS):
                counts[k] += c[k]
            self.bytes_read += n
        return results[-1][1]

    def _resolve_tail(self, pfn):
        """Carry for a block whose head lies before ``pfn`` (pfn is one of its tails)."""
        mm, enc = self.memmap, self.encoding
        if enc.off_chead < 0:
            return None
        va = mm.struct_va(pfn)
        if va is None:
            return None
        try:
            rec = self._read(va, 1)
        except (FastdumpError, TranslationError):
            return None
        ci = int.from_bytes(rec[enc.off_chead:enc.off_chead + 8], "little")
        if not ci & 1:
            return None
        m = ci - 1
        inv = ~m & ((1 << 64) - 1)
        if m >> 63 and inv & (inv + 1) == 0:
            head_va = va & m
        else:
            head_va = m
        head = mm.pfn_of_struct_va(head_va, pfn)
        if head is None or head >= pfn:
            return None
        try:
            recs = self._read(head_va, 2)
        except (FastdumpError, TranslationError):
            return None
        scratch = array("Q", [0] * NCOUNTS)
        carry = _pagescan.scan(recs, head, 1, bytearray(b"\x01"), self.params, None, scratch, va0=head_va)
        if carry is not None and carry[0] > pfn:
            return carry
        return None

    # -- the interface -------------------------------------------------------
    def classify(self, start_pfn, end_pfn, keep):
        counts = array("Q", [0] * NCOUNTS)
        if not self.needs_struct_pages or end_pfn <= start_pfn:
            return self._as_dict(counts)
        carry = self._carry if self._carry_end == start_pfn else None
        if carry is None:
            # a block may start before start_pfn: rescan from the largest buddy
            # alignment (nothing present there, scratch counters), then resolve
            # a still-open compound page from its tail
            pre = start_pfn - start_pfn % self.max_block
            pre = max(pre, (start_pfn >> self.memmap.section_shift) << self.memmap.section_shift)
            if pre < start_pfn:
                scratch = array("Q", [0] * NCOUNTS)
                carry = self._scan(pre, start_pfn, bytearray((start_pfn - pre + 7) >> 3), scratch, None)
            if carry is None:
                carry = self._resolve_tail(start_pfn)
        parts = self._parts(start_pfn, end_pfn)
        if parts is None:
            carry = self._scan(start_pfn, end_pfn, keep, counts, carry, walk_beside=True)
        else:
            carry = self._scan_parts(parts, keep, counts, carry)
        self._carry, self._carry_end = carry, end_pfn
        if self._pcp() is not None:     # not PageBuddy, so the scanner kept them: proven free here
            n = self.pcp.clear(keep, start_pfn, end_pfn)
            counts[C_FREE] += n
            self.pcp_dropped += n
        for i in range(NCOUNTS):
            self.totals[i] += counts[i]
        return self._as_dict(counts)

    @staticmethod
    def _as_dict(counts):
        return {name: int(counts[i]) for i, name in enumerate(CLASSES)}

    def stats(self):
        d = self._as_dict(self.totals)
        if self._pcp() is not None:
            d.update(self.pcp.result.stats(), pcp_dropped=self.pcp_dropped)
        elif self.pcp_note:
            d.update(pcp_note=self.pcp_note)
        d.update(free_seen=self.totals[C_FREE_SEEN], protected=self.totals[C_PROTECTED],
                 slab=self.totals[C_SLAB], struct_page_bytes_read=self.bytes_read,
                 image_reserved_bit_checked=bool(getattr(self, "image_reserved_mask", 0)))
        return d

    def _scan_all(self):
        """Classify every present pfn into scratch bitmaps (for self_check before classify)."""
        saved = (self._carry, self._carry_end, list(self.totals))
        for first, end in self.source.present_runs():
            a = first - first % 64
            for s in range(a, end, 1 << 18):
                e = min(end, s + (1 << 18))
                self.classify(s, e, bitmap_with_range(e - s, max(first, s) - s, e - s))
        found = self.totals[C_FREE_SEEN] - saved[2][C_FREE_SEEN]
        self._carry, self._carry_end, self.totals = saved
        return found

    def nr_free_pages(self):
        """The kernel's own count: sum over zones of vm_stat[NR_FREE_PAGES]; with per-zone detail."""
        vi = self.source.vmcoreinfo
        need = ("zone.vm_stat", "pglist_data.node_zones", "pglist_data.nr_zones")
        if vi is None or any(k not in vi.offsets for k in need) or "zone" not in vi.sizes:
            return None, []
        idx = vi.numbers.get("NR_FREE_PAGES", 0)
        vt = self.mem if self.needs_struct_pages else KernelMemory(self.source, vi)
        pgdats = []
        try:
            if "node_data" in vi.symbols:
                n = max(1, min(vi.lengths.get("node_data", 1), 4096))
                raw = vt.read(vi.symbols["node_data"], 8 * n)
                pgdats = [int.from_bytes(raw[i * 8:i * 8 + 8], "little") for i in range(n)]
                online = None
                if "node_online_map" in vi.symbols:
                    nbytes = max(8, min(vi.sizes.get("nodemask_t", 128), (n + 7) // 8 or 8))
                    online = int.from_bytes(vt.read(vi.symbols["node_online_map"], nbytes), "little")
                pgdats = [(i, p) for i, p in enumerate(pgdats)
                          if p >= 0xFF00000000000000 and (online is None or online >> i & 1)]
            elif "contig_page_data" in vi.symbols:
                pgdats = [(0, vi.symbols["contig_page_data"])]
            zones, total = [], 0
            for node, pg in pgdats:
                nrz = int.from_bytes(vt.read(pg + vi.offsets["pglist_data.nr_zones"], 4), "little")
                for z in range(min(nrz, 8)):
                    zva = pg + vi.offsets["pglist_data.node_zones"] + z * vi.sizes["zone"]
                    v = int.from_bytes(vt.read(zva + vi.offsets["zone.vm_stat"] + 8 * idx, 8),
                                       "little", signed=True)
                    spanned = (int.from_bytes(vt.read(zva + vi.offsets["zone.spanned_pages"], 8), "little")
                               if "zone.spanned_pages" in vi.offsets else None)
                    zones.append({"node": node, "zone": z, "nr_free_pages": v, "spanned_pages": spanned})
                    total += max(v, 0)
            return total, zones
        except (FastdumpError, TranslationError) as e:
            self.warn(f"self-check: cannot read the zone counters: {e}")
            return None, []

    def self_check(self):
        if not self.needs_struct_pages:
            return {"free_pages_found": None, "nr_free_pages": None, "zones": [],
                    "note": "no struct page classification for this dump level"}
        if self._carry_end is None and not any(self.totals):
            found = self._scan_all()
        else:
            found = self.totals[C_FREE_SEEN]
        kernel, zones = self.nr_free_pages()
        out = {"free_pages_found": found, "nr_free_pages": kernel, "zones": zones}
        if kernel:
            out["ratio"] = found / kernel
        if self._pcp() is not None:    # per-CPU free pages are not in NR_FREE_PAGES: their own count
            r = self.pcp.result
            out.update(pcp_free_pages=r.pages, pcp_count_sum=r.counted, pcp_sets_kept=r.lists_rejected)
        return out


def make_judge(source, dump_level, *, warn=print_to_stderr, threads=1, use_mmap=None):
    """A :class:`PageJudge` for ``source`` at ``dump_level`` (0..MAX_LEVEL), scanning on
    ``threads`` threads, reading the source's file through mmap windows or pread
    (``use_mmap``; default: as the copy engine does).

    Raises FastdumpError (one line) when the level needs classification (any bit
    but ZERO) and VMCOREINFO is missing or unusable."""
    level = int(dump_level)
    if not 0 <= level <= MAX_LEVEL:
        raise FastdumpError(f"dump level {level} is out of range 0..{MAX_LEVEL}")
    judge = PageJudge(source, level, warn=warn, threads=threads, use_mmap=use_mmap)
    wants = level & (DL_CACHE | DL_CACHE_PRI | DL_USER | DL_FREE)
    vi = getattr(source, "vmcoreinfo", None)
    if vi is None:
        if wants:
            raise FastdumpError(f"dump level {level} needs page classification, but the dump has no "
                                f"VMCOREINFO note")
        return judge
    hwpoison = "PG_hwpoison" in vi.numbers
    if not wants and not hwpoison:
        return judge
    try:
        if getattr(source, "machine", EM_X86_64) != EM_X86_64:
            raise FastdumpError("page classification supports x86_64 dumps only")
        judge._setup(level)
    except (FastdumpError, TranslationError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if wants:
            raise FastdumpError(f"dump level {level} needs page classification: {msg}") from None
        warn(f"hwpoisoned/offline pages cannot be excluded: {msg}")
        judge.needs_struct_pages = False
    return judge
