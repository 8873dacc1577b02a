"""Ground truth for page classification on real Debian kernels (fixtures of tests/e2e).

Per kernel (FASTDUMP_E2E_KERNELS, default 6.1,6.12; "all" adds 5.10 and sid/7.x)
fastdump runs on the raw /proc/vmcore copy (.cache/e2e/<kernel>/vmcore.raw) at
-d 1, 2, 4, 8, 16 and 31, and:

* 5.10 and 6.1: the set of dropped pfns equals Debian makedumpfile's (the
  installed one, 1.7.2 on Debian 12; `makedumpfile -d N -l`) page for page.
  Known, explained differences (each one checked, not just tolerated):
  - partial pages (the page at 0x9f000 holding the end of the 640 KiB range)
    are dropped by makedumpfile and kept by fastdump, which copies the bytes
    that exist;
  - the kernel-image guard: fastdump keeps every kernel-image page whose
    struct page has PG_reserved (a live image page) and judges the released
    rest of the image (freed __init memory) like any page; a page makedumpfile
    drops there must carry PG_reserved.
* 6.12 and 7.x (where the installed makedumpfile is wrong: it cannot size
  compound pages and on 6.12 drops live slab pages at -d 8): truth comes from the
  workload's marker pages: at -d 16 no freed marker page remains except pages
  verified to sit on a per-CPU free list (a linked list of free struct pages
  whose head is not a struct page nor a zone free area) or inside a high-order
  block whose first page sits there (5.13+; the block's order comes from the
  list's index in per_cpu_pages.lists[]); at -d 8 no anonymous marker page; at
  -d 2 no clean file-cache, tmpfs or shmem marker page; at -d 1 exactly the zero
  pages go.  A second copy of a marker in a live anonymous page (the workload's
  heap still holds its write buffers) is kept by levels without bit 8.
* On every kernel: every page fastdump keeps is byte-identical to the source
  (fastdump.commands.verify against the raw vmcore), marker classes a level must keep
  are kept, and the free pages found match the kernel's NR_FREE_PAGES.

Missing fixtures are built by booting the kernel (tests/e2e/fixtures.py); a
failure there fails these tests with the reason.  Nothing is skipped.
"""

import collections
import os
import shutil
import subprocess

import pytest

import fastdump
from fastdump.formats.kdump import DESC, KdumpReader
from fastdump.errors import FastdumpError
from fastdump.kernel.vtop import TranslationError
from fastdump.sources.vmcore import ElfSource
from fastdump.commands.verify import verify
from tests.e2e import fixtures, markers

from fastdump.kernel.judge import _pagescan, make_judge

LEVELS = [1, 2, 4, 8, 16, 31]
MAKEDUMPFILE_TRUTH = ("5.10", "6.1")
PAGE = 4096
# per-CPU free lists (include/linux/mmzone.h): MIGRATE_PCPTYPES lists per order up to
# PAGE_ALLOC_COSTLY_ORDER (3), since 5.13 plus 1-3 lists for THP blocks (pageblock order)
PCP_MIGRATE_TYPES = 3
PCP_LOWORDER_LISTS = PCP_MIGRATE_TYPES * 4
PCP_THP_ORDER = 9


def test_pagescan_built():
    assert _pagescan is not None, "fastdump._pagescan is not built (python3 setup.py build_ext --inplace)"


# ----------------------------------------------------------------------------- fixtures


class Real:
    """One kernel's raw vmcore with its page census, fastdump runs cached per level."""

    def __init__(self, key, outdir, tmpdir):
        self.key, self.outdir, self.tmpdir = key, outdir, tmpdir
        self.path = os.path.join(outdir, "vmcore.raw")
        self.src = ElfSource(self.path)
        self.present = set()
        for a, b in self.src.present_runs():
            self.present.update(range(a, b))
        self.zero, self.marker, self.index = set(), {}, {}
        for pfn, page in markers.iter_elf_pages(self.path):
            if page[:7] == markers.MAGIC:
                c = markers.classify(page)
                if isinstance(c, tuple) and c[2]:
                    self.marker[pfn] = c[0]
                    self.index[pfn] = c[1]
            elif page[0] == 0 and page == markers.ZERO_PAGE:
                self.zero.add(pfn)
        # partial pages (0x9f: the end of the 640 KiB range) are zero pages when the
        # bytes that exist are zero
        ps = self.src.page_size
        for a, b in self.src.ram_ranges:
            for pfn in {a // ps for _ in (0,) if a % ps} | {b // ps for _ in (0,) if b % ps}:
                if not any(self.src.read_phys(pfn * ps, ps, zero_fill=True)):
                    self.zero.add(pfn)
        self.by_class = collections.defaultdict(set)
        for p, c in self.marker.items():
            self.by_class[c].add(p)
        # how many pages hold each marker (class, index): more than one means stale copies
        self.copies = collections.Counter((c, self.index[p]) for p, c in self.marker.items())
        self._fd, self._md = {}, {}

    def fastdump(self, level):
        """(dropped pfns, path) of fastdump -d level on the raw vmcore."""
        if level not in self._fd:
            out = os.path.join(self.tmpdir, "fastdump-d%d.kdump" % level)
            fastdump.dump(self.path, out, level=level, compress="zstd", force=True)
            self._fd[level] = (dropped_of_kdump(out, self.present), out)
        return self._fd[level]

    def makedumpfile(self, level):
        if level not in self._md:
            exe = shutil.which("makedumpfile")
            assert exe, "makedumpfile is not installed (bash .ci/setup-host installs Debian's)"
            out = os.path.join(self.tmpdir, "makedumpfile-d%d.kdump" % level)
            if os.path.exists(out):
                os.unlink(out)
            r = subprocess.run([exe, "-d", str(level), "-l", self.path, out], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=900)
            assert r.returncode == 0, r.stdout[-2000:]
            self._md[level] = dropped_of_kdump(out, self.present)
            os.unlink(out)
        return self._md[level]


def dropped_of_kdump(path, present):
    """pfns of ``present`` that a kdump-compressed dump leaves out: not in the 2nd
    bitmap, or stored as the shared zero-page descriptor (makedumpfile keeps zero
    pages in the bitmap at -d 1 and points them all at one descriptor)."""
    with KdumpReader(path) as r:
        kept = list(r.pfns())
        raw = r.read_at(r.desc_off, DESC.size * len(kept))
    offs = [DESC.unpack_from(raw, i * DESC.size)[0] for i in range(len(kept))]
    shared = {o for o, n in collections.Counter(offs).items() if n > 1}
    kept_data = {p for p, o in zip(kept, offs) if o not in shared}
    return present - kept_data


_reals = {}


@pytest.fixture(scope="module", params=fixtures.KEYS)
def real(request, tmp_path_factory):
    key = request.param
    if key not in _reals:
        try:
            outdir = fixtures.fixture_dir(key)
        except RuntimeError as e:
            _reals[key] = e
        else:
            _reals[key] = Real(key, outdir, str(tmp_path_factory.mktemp("real-" + key.replace(".", "_"))))
    r = _reals[key]
    if isinstance(r, Exception):
        pytest.fail(str(r))
    return r


# ----------------------------------------------------------------------------- struct pages


class StructPages:
    def __init__(self, src):
        self.judge = make_judge(src, 31, warn=lambda m: None)
        self.enc = self.judge.encoding
        self.mm = self.judge.memmap
        self._seen, self._orders = {}, {}

    def rec(self, pfn):
        va = self.mm.struct_va(pfn)
        b = self.judge._read(va, 1)
        e = self.enc
        q = lambda o: int.from_bytes(b[o:o + 8], "little")
        return {"va": va, "flags": q(e.off_flags), "next": q(e.off_lru), "prev": q(e.off_lru + 8),
                "mapping": q(e.off_mapping), "mapcount": int.from_bytes(b[e.off_mapcount:e.off_mapcount + 4], "little"),
                "refcount": int.from_bytes(b[52:56], "little") if e.struct_size == 64 else None}

    def pfn_of_lru(self, node, near):
        return self.mm.pfn_of_struct_va(node - self.enc.off_lru, near)

    def free_unlisted(self, r):
        """A free page that is not in the buddy allocator: no type, no mapping,
        refcount 0, no flag bits below the zone/section fields, not a tail."""
        return (r["mapcount"] == 0xFFFFFFFF and r["mapping"] == 0 and r["refcount"] == 0
                and r["flags"] & 0xFFFFFF == 0 and not r["next"] & 1)

    def zone_free_areas(self):
        """[(lo, hi)) virtual ranges of every zone's free_area array."""
        vi = self.judge.source.vmcoreinfo
        out = []
        for node, pg in self._pgdats():
            for z in range(6):
                zva = pg + vi.offsets["pglist_data.node_zones"] + z * vi.sizes["zone"]
                lo = zva + vi.offsets["zone.free_area"]
                out.append((lo, lo + vi.sizes.get("free_area", 88) * vi.lengths.get("zone.free_area", 11)))
        return out

    def _pgdats(self):
        vi = self.judge.source.vmcoreinfo
        vt = self.judge.vtop
        n = max(1, min(vi.lengths.get("node_data", 1), 64))
        raw = vt.read(vi.symbols["node_data"], 8 * n)
        ptrs = [int.from_bytes(raw[i * 8:i * 8 + 8], "little") for i in range(n)]
        return [(i, p) for i, p in enumerate(ptrs) if p >= 0xFF00000000000000]

    def pcp_lists(self, pfns):
        """{pfn: list head va} for the pfns verified to be on a per-CPU free list,
        either linked themselves or inside a high-order block whose first page is
        (5.13+ keeps orders 1-3 and the THP order on per-CPU lists; only a block's
        first page is linked).  The others map to a reason string."""
        areas = self.zone_free_areas()
        out = {}
        for pfn in sorted(pfns):
            if pfn not in out:
                out[pfn] = self._where(pfn, areas)
        return out

    def _where(self, pfn, areas):
        if pfn not in self._seen:
            try:
                r = self.rec(pfn)
                if r["next"] == 0 and r["refcount"] == 0:
                    self._seen[pfn] = self._in_block(pfn, areas)
                else:
                    self._seen.update(self._walk(pfn, r, areas))
            except (FastdumpError, TranslationError) as e:
                self._seen[pfn] = "list walk failed: %s" % e
        return self._seen[pfn]

    def _in_block(self, pfn, areas):
        """A free page that is not linked (lru.next == 0): the list head of the
        per-CPU block whose first page is linked and whose list order covers pfn."""
        why = "free page not linked and not inside a per-CPU block"
        for order in (1, 2, 3, PCP_THP_ORDER):
            head = pfn & ~((1 << order) - 1)
            if head == pfn:
                continue
            hr = self.rec(head)
            if hr["next"] == 0 or not self.free_unlisted(hr):
                continue
            where = self._where(head, areas)
            if not isinstance(where, int):
                why = "block head pfn %d: %s" % (head, where)
                continue
            lo = self.list_order(where, head)
            if lo is None:
                why = "block head pfn %d: order of per-CPU list %#x unknown" % (head, where)
                continue
            if pfn < head + (1 << lo):
                return where
            why = "block head pfn %d is on an order-%d per-CPU list" % (head, lo)
        return why

    def _list_slot(self, va, near):
        """Does ``va`` hold a list_head: empty, or both links point at struct pages' lru?"""
        raw = self.judge.vtop.read(va, 16)
        nxt, prev = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")
        if nxt == va and prev == va:
            return True
        return all(x and self.pfn_of_lru(x, near) is not None for x in (nxt, prev))

    def list_order(self, head_va, near):
        """Order of the blocks on the per-CPU list ``head_va``, from its index in
        per_cpu_pages.lists[] (counted as the run of list_heads around it):
        3 lists (< 5.13): order 0; 12-15 lists (5.13+): pindex =
        MIGRATE_PCPTYPES * order + migratetype for orders 0-3
        (PAGE_ALLOC_COSTLY_ORDER), then the THP list(s) of pageblock order.
        None when the array does not look like that."""
        if head_va not in self._orders:
            try:
                before = after = 0
                while before < 16 and self._list_slot(head_va - 16 * (before + 1), near):
                    before += 1
                while after < 16 and self._list_slot(head_va + 16 * (after + 1), near):
                    after += 1
            except (FastdumpError, TranslationError):
                self._orders[head_va] = None
                return None
            n = before + 1 + after
            if n == PCP_MIGRATE_TYPES:
                order = 0
            elif PCP_LOWORDER_LISTS <= n <= PCP_LOWORDER_LISTS + PCP_MIGRATE_TYPES:
                order = before // PCP_MIGRATE_TYPES if before < PCP_LOWORDER_LISTS else PCP_THP_ORDER
            else:
                order = None
            self._orders[head_va] = order
        return self._orders[head_va]

    def anon_page(self, pfn):
        """True if pfn is a live anonymous page: its own struct page or, for a tail
        (compound_info/compound_head bit 0: head address, or 7.1+ a mask applied
        to the tail's own address), its head has an anon mapping and a reference."""
        r = self.rec(pfn)
        head = pfn
        if r["next"] & 1:
            m = r["next"] - 1
            inv = ~m & ((1 << 64) - 1)
            head_va = r["va"] & m if m >> 63 and inv & (inv + 1) == 0 else m
            head = self.mm.pfn_of_struct_va(head_va, pfn)
            if head is None or head > pfn:
                return False
            r = self.rec(head)
            if not r["flags"] & self.enc.head_mask:
                return False
        return bool(r["mapping"] & 1) and bool(r["refcount"])

    def _walk(self, pfn, r, areas):
        out = {}
        if True:
            if not self.free_unlisted(r):
                out[pfn] = "struct page is not a free unlisted page: %r" % r
                return out
            # walk the list through lru.next back to this page
            members, heads, node, prev, ok = [pfn], [], r["next"], r["va"] + self.enc.off_lru, True
            for _ in range(1 << 17):
                if node == r["va"] + self.enc.off_lru:
                    break
                p = self.pfn_of_lru(node, pfn)
                if p is None:
                    heads.append(node)
                    nxt = int.from_bytes(self.judge.vtop.read(node, 8), "little")
                    back = int.from_bytes(self.judge.vtop.read(node + 8, 8), "little")
                else:
                    rr = self.rec(p)
                    if not self.free_unlisted(rr):
                        ok = "list member pfn %d is not a free page: %r" % (p, rr)
                        break
                    members.append(p)
                    nxt, back = rr["next"], rr["prev"]
                if back != prev:
                    ok = "broken list at %#x" % node
                    break
                prev, node = node, nxt
            else:
                ok = "list does not close"
            if ok is True and len(heads) != 1:
                ok = "%d non-struct-page nodes on the list" % len(heads)
            if ok is True and any(lo <= heads[0] < hi for lo, hi in areas):
                ok = "list head %#x is a zone free area (buddy list)" % heads[0]
            for m in members:
                out[m] = heads[0] if ok is True else ok
        return out


def on_pcp_lists(sp, pfns):
    """The pfns this test's own walk finds on a per-CPU free list: linked there, or inside the
    high-order block whose first page is (the list's order from its index in lists[])."""
    ok = {p for p, where in sp.pcp_lists(pfns).items() if isinstance(where, int)}
    for p in set(pfns) - ok:
        for order in (1, 2, 3, PCP_THP_ORDER):
            head = p & ~((1 << order) - 1)
            where = sp.pcp_lists({head}).get(head) if head != p else None
            if isinstance(where, int):
                lo = sp.list_order(where, head)
                if lo is not None and p < head + (1 << lo):
                    ok.add(p)
                    break
    return ok


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("level", LEVELS)
def test_dropped_pages(real, level):
    """The dropped pfns of fastdump -d LEVEL against the truth of this kernel."""
    drop_f, out = real.fastdump(level)
    if real.key in MAKEDUMPFILE_TRUTH:
        drop_m = real.makedumpfile(level)
        only_m, only_f = drop_m - drop_f, drop_f - drop_m
        explained = {}
        sp = StructPages(real.src)
        ram = real.src.ram_ranges
        partial = {a // PAGE for a, b in ram if a % PAGE} | {b // PAGE for a, b in ram if b % PAGE}
        k0, k1 = sp.judge.protect
        for p in only_m:
            if p in partial:
                explained[p] = "partial page"
            elif k0 <= p < k1 and sp.rec(p)["flags"] & sp.enc.reserved_mask:
                explained[p] = "live kernel-image page (PG_reserved) that makedumpfile drops"
        unexplained = sorted(only_m - set(explained))
        print(f"{real.key} -d {level}: makedumpfile drops {len(drop_m)}, fastdump {len(drop_f)}; "
              f"explained {collections.Counter(explained.values())}")
        # pages on the per-CPU free lists: fastdump proves them free with the kernel's own
        # types (kernel/pcp.py); makedumpfile keeps them.  Checked here by this test's own
        # walk of the lists (StructPages.pcp_lists), which needs no BTF.
        pcp = on_pcp_lists(sp, only_f) if level & 16 else set()
        if pcp:
            print(f"{real.key} -d {level}: {len(pcp)} pages on per-CPU free lists dropped too (makedumpfile keeps them)")
        only_f -= pcp
        assert not only_f, "fastdump drops %d pages makedumpfile keeps: %s" % (len(only_f), sorted(only_f)[:20])
        assert not unexplained, ("makedumpfile drops %d pages fastdump keeps: %s"
                                 % (len(unexplained), [(p, real.marker.get(p), sp.rec(p)) for p in unexplained[:5]]))
        return
    # marker truth (6.12, 7.x).  A marker may exist in more than one page: the
    # workload's write buffers and the first, dropped copy of the cache file leave
    # stale copies in freed memory and in the workload's live heap.  So a kept
    # marker page of a class the level drops is right only if it is a page the
    # level keeps: a buddy page (fastdump -d 16 drops it) below -d 16, a page on
    # a per-CPU free list (or inside a high-order block listed there), or, below
    # -d 8, a stale copy in a live anonymous page (the struct page says so).
    if level & 1:
        assert real.zero <= drop_f, "%d zero pages kept" % len(real.zero - drop_f)
    if level == 1:
        assert drop_f == real.zero, "-d 1 dropped non-zero pages: %s" % sorted(drop_f - real.zero)[:20]
        return
    buddy = (real.fastdump(16)[0] - real.zero) if not level & 16 else set()
    sp = StructPages(real.src)
    report, bad = {}, {}
    for cls, bit in (("user", 8), ("cache", 6), ("tmpfs", 6), ("shmem", 6), ("free", 16)):
        if not level & bit:
            continue
        left = real.by_class[cls] - drop_f
        unlisted = left - buddy
        where = sp.pcp_lists(unlisted)
        anon = set()
        for p in unlisted:
            if not isinstance(where.get(p), str):
                continue
            if not level & 8 and real.copies[(cls, real.index[p])] > 1 and sp.anon_page(p):
                anon.add(p)
            else:
                bad[p] = (cls, where[p])
        report[cls] = {"markers": len(real.by_class[cls]), "kept": len(left), "kept_buddy": len(left & buddy),
                       "kept_pcp": len(unlisted) - len(anon) - sum(1 for p in unlisted if p in bad),
                       "kept_stale_anon": len(anon)}
    print(f"{real.key} -d {level}: kept marker pages of dropped classes: {report}")
    assert not bad, "marker pages kept at -d %d that are not free pages the level keeps: %s" % (
        level, sorted(bad.items())[:5])


@pytest.mark.parametrize("level", LEVELS)
def test_kept_classes_and_bytes(real, level):
    """Marker classes a level must keep are kept, and every kept page equals the source."""
    drop_f, out = real.fastdump(level)
    keep_classes = [c for c, bit in (("user", 8), ("cache", 2 | 4), ("tmpfs", 2 | 4), ("shmem", 2 | 4),
                                     ("free", 16)) if not level & bit]
    for c in keep_classes:
        # every marker of the class keeps at least one copy (stale copies of a marker
        # in anonymous write buffers or free pages may go with their own class)
        have = {real.index[p] for p in real.by_class[c]}
        kept = {real.index[p] for p in real.by_class[c] - drop_f}
        assert have == kept, "%d %s markers lost at -d %d" % (len(have - kept), c, level)
    res = verify(out, real.path)
    assert res["ok"] and res["pages_compared"] >= len(real.present - drop_f), res["verdict"]


def test_freed_pages_are_dropped_at_level_16(real):
    """At least 99 % of the pages the workload freed are gone at -d 16: buddy pages and, with
    the kernel's own types (6.0+), the per-CPU free lists."""
    drop_f, _ = real.fastdump(16)
    freed = real.by_class["free"]
    kept = freed - drop_f
    print(f"{real.key} -d 16: {len(freed) - len(kept)} of {len(freed)} freed marker pages dropped")
    if int(real.src.vmcoreinfo.osrelease.split(".")[0]) >= 6:
        assert len(kept) <= 0.01 * len(freed), (len(kept), len(freed))


def test_free_pages_match_kernel_count(real):
    check = make_judge(real.src, 16).self_check()
    assert check["nr_free_pages"], check
    assert abs(check["free_pages_found"] / check["nr_free_pages"] - 1) < 0.01, check


def test_nothing_dropped_at_level_0(real):
    drop_f, _ = real.fastdump(0)
    assert not drop_f, sorted(drop_f)[:20]
