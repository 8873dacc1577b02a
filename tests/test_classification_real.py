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
from fastdump.sources.vmcore import ElfSource
from fastdump.commands.verify import verify
from tests.e2e import fixtures, markers
from tests.e2e.pcpwalk import StructPages, on_pcp_lists

from fastdump.kernel.judge import _pagescan, make_judge

LEVELS = [1, 2, 4, 8, 16, 31]
MAKEDUMPFILE_TRUTH = ("5.10", "6.1")
PAGE = 4096


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


@pytest.mark.parametrize("start", [0, 4101], ids=["aligned", "after-a-look-back"])
def test_the_per_cpu_walk_runs_while_struct_pages_are_scanned(real, monkeypatch, start):
    """At -d 16 and above the per-CPU free-list walk (Python: kallsyms, BTF, the lists) runs
    on the main thread while a scanning thread reads the cycle's struct pages, also on a guest
    under 2 GiB, whose range is one part.  The cycle's scan here waits until the walk has
    begun, so a walk run after it leaves it waiting in vain.  A cycle that starts inside a
    buddy block (4101) is first looked back at from the block's start, on the main thread:
    that short scan must not use the walk up, or the cycle's own scan runs alone."""
    import threading
    from fastdump.copy.plan import runs_bitmap
    from fastdump.kernel import judge as judge_mod
    walking, vain, cycle_scans = threading.Event(), [], []
    walk, scanner = judge_mod.PageJudge._per_cpu_free, judge_mod.PageJudge._scanner

    class WaitsForTheWalk:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            return getattr(self._inner, name)

        def scan_chunks(self, chunks, spans, keep, kb, first_pfn, *rest):
            if first_pfn == start:                  # the cycle's scan, not the look back
                cycle_scans.append(threading.current_thread().name)
                if not walking.wait(10):
                    vain.append(threading.current_thread().name)
            return self._inner.scan_chunks(chunks, spans, keep, kb, first_pfn, *rest)

    def walk_and_say_so(self):
        walking.set()
        return walk(self)

    monkeypatch.setattr(judge_mod.PageJudge, "_per_cpu_free", walk_and_say_so)
    monkeypatch.setattr(judge_mod.PageJudge, "_scanner", lambda self: WaitsForTheWalk(scanner(self)))
    runs = list(real.src.present_runs())
    end = runs[-1][1]
    judge = make_judge(real.src, 31, threads=2)      # two threads, whatever this machine's CPUs
    assert judge._parts(start, end) is None, "the guest is 2 GiB or more: not the one-part case"
    assert start == 0 or start % judge.max_block, "start is meant to lie inside a block (a look back)"
    judge.classify(start, end, runs_bitmap(runs, start, end))
    assert walking.is_set() and cycle_scans, "no per-CPU walk or no struct page scan at -d 31"
    assert not vain, f"the scans on {vain} finished waiting before the per-CPU walk began"
    assert "MainThread" not in cycle_scans, cycle_scans
