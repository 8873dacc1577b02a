"""Per-CPU free lists (fastdump.kernel.pcp) on a made-up kernel: pages are dropped only from
lists that check out; a loop, a foreign page, a bad back link, a referenced page or a count
that does not add up keeps that CPU's pages.  Real kernels: tests/e2e/test_kernel_types_real.py."""

import os
import struct

import pytest

from fastdump.kernel.pcp import find_pcp_free
from fastdump.kernel.types import NotAvailable
from fastdump.kernel.vmcoreinfo import VmcoreInfo
from fastdump.testing.kernel_types import PageMemory

VMEMMAP = 0xFFFFEA0000000000
PAGE = 64                                  # sizeof(struct page)
LINK, REFCOUNT = 8, 52                     # page.pcp_list, page._refcount
NODE_DATA, PGDAT = 0xFFFFFFFF82000000, 0xFFFF888000100000
ZONE_SIZE, NODE_ZONES, NR_ZONES = 256, 64, 2
PCP_SIZE, PCP_COUNT, PCP_LISTS, NR_LISTS = 256, 4, 32, 14
PERCPU_PTR, CPU_OFFSETS = 0x30000, [0xFFFF888010000000, 0xFFFF888020000000]
SYMBOLS = {"nr_cpu_ids": 0xFFFFFFFF83000000, "__cpu_online_mask": 0xFFFFFFFF83000100,
           "__per_cpu_offset": 0xFFFFFFFF83000200}
LAYOUT = {("zone", None): ZONE_SIZE, ("per_cpu_pages", None): PCP_SIZE, ("list_head", None): 16,
          ("pglist_data", "node_zones"): NODE_ZONES, ("zone", "per_cpu_pageset"): 8,
          ("zone", "zone_start_pfn"): 16, ("zone", "spanned_pages"): 24, ("zone", "present_pages"): 32,
          ("per_cpu_pages", "count"): PCP_COUNT, ("per_cpu_pages", "lists"): PCP_LISTS,
          ("page", "pcp_list"): LINK, ("page", "_refcount"): REFCOUNT}


class FakeKernel:
    """What find_pcp_free asks of fastdump.kernel.types.kernel.Kernel, from a made-up layout."""

    def __init__(self, mem):
        self.mem = mem
        self.dump = type("Dump", (), {"vmcoreinfo": VmcoreInfo(f"SYMBOL(node_data)={NODE_DATA:x}\n"
                                                               "LENGTH(node_data)=1\n")})()

    def read(self, va, n):
        return self.mem.read(va, n)

    def read_u32(self, va):
        return struct.unpack("<I", self.read(va, 4))[0]

    def symbol(self, name):
        return SYMBOLS[name]

    def sizeof(self, name):
        return LAYOUT[(name, None)]

    def offsetof(self, name, path):
        return LAYOUT[(name, path)]

    def length(self, name, path):
        return {("pglist_data", "node_zones"): NR_ZONES, ("per_cpu_pages", "lists"): NR_LISTS}[(name, path)]

    def enumerator(self, name):
        assert name == "MIGRATE_PCPTYPES"
        return 3


class FakeMemmap:
    def pfn_of_struct_va(self, va, near):
        if va < VMEMMAP or (va - VMEMMAP) % PAGE:
            return None
        return (va - VMEMMAP) // PAGE


class CompiledFollow:
    """find_pcp_free's follow() as the page judge gives it: _pagescan's compiled walk, on a
    file holding the struct pages of pfns 0..8191 (vmemmap read through one span)."""

    def __init__(self, machine, tmp_path):
        from array import array
        from fastdump import _pagescan
        from fastdump.kernel import pagetypes
        from test_pagetypes import K510
        image = bytearray(8192 * PAGE)
        for va, data in machine.regions.items():
            if VMEMMAP <= va < VMEMMAP + len(image):
                image[va - VMEMMAP:va - VMEMMAP + len(data)] = data
        path = tmp_path / "struct-pages"
        path.write_bytes(bytes(image))
        self.fd = os.open(path, os.O_RDONLY)
        params = _pagescan.ScanParams(pagetypes.detect(VmcoreInfo(K510)), level=31, section_shift=15)
        self.scanner = _pagescan.Scanner(params, fd=self.fd, extents=array("Q", [0, len(image), 0]),
                                         use_mmap=True)
        # only the struct pages the machine has are translated, as in a vmemmap with holes
        self.spans = array("Q", [v for va in sorted(machine.regions) if VMEMMAP <= va < VMEMMAP + len(image)
                                 for v in (va, va - VMEMMAP, PAGE)])

    def __call__(self, zone_start, zone_end, first, head, limit, link_off, ref_off):
        return self.scanner.follow_list(self.spans, first, head, link_off, ref_off, limit)


@pytest.fixture(params=["reading", "compiled"])
def walk(request, tmp_path):
    """find_pcp_free with either follow(): each entry read through the kernel's memory
    (the default), or the compiled walk over a file."""
    def run(machine, kernel=None):
        kernel = kernel or machine.build()
        if request.param == "reading":
            return find_pcp_free(kernel, FakeMemmap())
        follow = CompiledFollow(machine, tmp_path)
        try:
            return find_pcp_free(kernel, FakeMemmap(), follow)
        finally:
            os.close(follow.fd)
    return run


class Machine:
    """Two CPUs, one node, zone 0 empty, zone 1 spanning pfns 4096..8192."""

    def __init__(self):
        self.regions = {}
        self.put(SYMBOLS["nr_cpu_ids"], struct.pack("<I", 2))
        self.put(SYMBOLS["__cpu_online_mask"], struct.pack("<Q", 0b11))
        self.put(SYMBOLS["__per_cpu_offset"], struct.pack("<2Q", *CPU_OFFSETS))
        self.put(NODE_DATA, struct.pack("<Q", PGDAT))
        for z, (start, span, present) in enumerate([(0, 0, 0), (4096, 4096, 4096)]):
            zone = bytearray(ZONE_SIZE)
            struct.pack_into("<QQQQ", zone, 8, PERCPU_PTR, start, span, present)
            self.put(PGDAT + NODE_ZONES + z * ZONE_SIZE, bytes(zone))
        self.lists = {cpu: [[] for _ in range(NR_LISTS)] for cpu in range(2)}

    def put(self, va, data):
        self.regions[va] = data

    def page_va(self, pfn):
        return VMEMMAP + pfn * PAGE

    def build(self, count_fix=None, refcount=None):
        """Lay the per-CPU lists out as the kernel links them."""
        pages = {}
        for cpu, lists in self.lists.items():
            pcp = PERCPU_PTR + CPU_OFFSETS[cpu]
            raw = bytearray(PCP_SIZE)
            count = 0
            for i, pfns in enumerate(lists):
                head = pcp + PCP_LISTS + 16 * i
                nodes = [head] + [self.page_va(p) + LINK for p in pfns]
                for j, node in enumerate(nodes):
                    nxt, prev = nodes[(j + 1) % len(nodes)], nodes[j - 1]
                    if j == 0:
                        struct.pack_into("<QQ", raw, PCP_LISTS + 16 * i, nxt, prev)
                    else:
                        pages[node] = (nxt, prev)
                order = i // 3 if i < 12 else 9
                count += len(pfns) << order
            struct.pack_into("<i", raw, PCP_COUNT, count + (count_fix or {}).get(cpu, 0))
            self.put(pcp, bytes(raw))
        for node, (nxt, prev) in pages.items():
            page = bytearray(PAGE)
            struct.pack_into("<QQ", page, LINK, nxt, prev)
            struct.pack_into("<I", page, REFCOUNT, (refcount or {}).get(node, 0))
            self.put(node - LINK, bytes(page))
        return FakeKernel(PageMemory(self.regions.items()))


def test_lists_that_check_out_are_dropped_with_their_orders(walk):
    m = Machine()
    m.lists[0][1] = [5000, 5001]           # order 0, movable
    m.lists[0][3] = [5002]                 # order 1
    m.lists[1][12] = [4608]                # pageblock order (THP list)
    r = walk(m)
    assert r.runs == [(4608, 512), (5000, 1), (5001, 1), (5002, 2)]
    assert r.pages == r.counted == 516 and r.lists_ok == 2 and r.lists_rejected == 0


@pytest.mark.parametrize("spoil, reason", [
    (lambda m: m.lists[0].__setitem__(1, [5000, 5001]) or {"count_fix": {0: 1}}, "count says"),
    (lambda m: m.lists[0].__setitem__(1, [5000, 100]) or {}, "not a struct page of this zone"),   # zone 0's pfn
    (lambda m: m.lists[0].__setitem__(3, [5001]) or {}, "not a struct page of this zone"),        # odd order-1 head
    (lambda m: m.lists[0].__setitem__(1, [5000, 5001]) or {"refcount": {VMEMMAP + 5001 * PAGE + LINK: 1}},
     "references"),
])
def test_a_list_that_does_not_check_out_keeps_that_cpus_pages(spoil, reason, walk):
    m = Machine()
    m.lists[1][1] = [6000]
    r = walk(m, m.build(**spoil(m)))
    assert r.runs == [(6000, 1)] and r.lists_rejected == 1
    assert reason in r.problems[0]


def test_a_loop_or_a_broken_back_link_is_caught(walk):
    m = Machine()
    m.lists[0][1] = [5000, 5001]
    k = m.build()
    a, b = VMEMMAP + 5000 * PAGE + LINK, VMEMMAP + 5001 * PAGE + LINK
    page = bytearray(m.regions[b - LINK])
    struct.pack_into("<Q", page, LINK, a)               # 5001 -> 5000: a loop that never reaches the head
    m.regions[b - LINK] = bytes(page)
    r = walk(m, FakeKernel(PageMemory(m.regions.items())))
    assert r.pages == 0 and ("prev does not point back" in r.problems[0] or "more pages" in r.problems[0])
    page = bytearray(m.regions[a - LINK])
    struct.pack_into("<Q", page, LINK + 8, b)           # 5000's prev is not the head
    m.regions[a - LINK] = bytes(page)
    r = walk(m, FakeKernel(PageMemory(m.regions.items())))
    assert r.pages == 0 and "prev does not point back" in r.problems[0]
    assert k is not None


def test_an_unknown_list_layout_is_not_available():
    global NR_LISTS
    m = Machine()
    saved, NR_LISTS = NR_LISTS, 9
    try:
        with pytest.raises(NotAvailable, match="9 lists"):
            find_pcp_free(m.build(), FakeMemmap())
    finally:
        NR_LISTS = saved


def test_runs_are_cleared_from_a_cycle_bitmap_exactly():
    from fastdump.kernel.pcp import PcpPages, PcpResult
    r = PcpResult()
    r.runs = [(10, 1), (20, 4), (4096 - 2, 8)]
    pages = PcpPages(r)
    keep = bytearray(b"\xff" * 512)                       # pfns 0..4095 of one cycle
    keep[2] = 0xEF                                        # pfn 20 already dropped
    assert pages.clear(keep, 0, 4096) == 1 + 3 + 2
    assert keep[1] == 0xFB and keep[2] == 0x0F
    assert keep[511] == 0x3F
    later = bytearray(b"\xff" * 2)                        # the next cycle: pfns 4096..4111
    assert pages.clear(later, 4096, 4112) == 6 and later == bytearray(b"\xc0\xff")


def test_an_entry_whose_struct_page_cannot_be_read_keeps_that_cpus_pages(walk):
    m = Machine()
    m.lists[0][1] = [5000, 5001]
    m.lists[1][1] = [6000]
    m.build()
    page = bytearray(m.regions[VMEMMAP + 5000 * PAGE])
    struct.pack_into("<Q", page, LINK, VMEMMAP + 7000 * PAGE + LINK)     # 7000's struct page is not there
    m.regions[VMEMMAP + 5000 * PAGE] = bytes(page)
    r = walk(m, FakeKernel(PageMemory(m.regions.items())))
    assert r.runs == [(6000, 1)] and r.lists_rejected == 1
    assert "struct page of pfn 7000 is not readable" in r.problems[0]


def test_a_vmemmap_entry_in_a_section_without_memory_map_is_not_taken():
    """With one virtual memory map, pfns are computed, not looked up one by one; the
    mem_sections they fall in are still looked up, and one without a map rejects the list."""
    class VmemmapMemmap:
        vmemmap_base, struct_size, section_shift = VMEMMAP, PAGE, 10

        def struct_va(self, pfn):
            return None if pfn >> 10 == 5 else VMEMMAP + pfn * PAGE      # pfns 5120..6143: no map
    m = Machine()
    m.lists[0][1] = [5000, 5200]
    m.lists[1][1] = [6200, 6300]
    r = find_pcp_free(m.build(), VmemmapMemmap())
    assert r.runs == [(6200, 1), (6300, 1)] and r.lists_ok == 1 and r.lists_rejected == 1
    assert "not a struct page of this zone" in r.problems[0]


def test_the_compiled_walk_and_the_reading_walk_say_the_same_statuses():
    from fastdump import _pagescan
    from fastdump.kernel import pcp
    assert [_pagescan.FOLLOW_OK, _pagescan.FOLLOW_TOO_MANY, _pagescan.FOLLOW_BAD_PREV,
            _pagescan.FOLLOW_REFERENCED, _pagescan.FOLLOW_UNREADABLE] == [
        pcp.OK, pcp.TOO_MANY, pcp.BAD_PREV, pcp.REFERENCED, pcp.UNREADABLE]


@pytest.mark.parametrize("kind", ["reading", "compiled"])
def test_a_loop_is_caught_within_a_few_entries_whatever_the_count(kind, tmp_path):
    """A corrupt count (up to MAX_PCP_PAGES) must not make a looping list walk millions of
    entries or hold them: the first entry met twice has a prev that cannot point back."""
    from fastdump.kernel import pcp
    m = Machine()
    m.lists[0][1] = [5000, 5001, 5002]
    m.build()
    a, c = VMEMMAP + 5000 * PAGE + LINK, VMEMMAP + 5002 * PAGE + LINK
    page = bytearray(m.regions[c - LINK])
    struct.pack_into("<Q", page, LINK, a)               # 5002 -> 5000: round and round
    m.regions[c - LINK] = bytes(page)
    kernel = FakeKernel(PageMemory(m.regions.items()))
    follow = pcp._reading_follow(kernel) if kind == "reading" else CompiledFollow(m, tmp_path)
    head = PERCPU_PTR + CPU_OFFSETS[0] + PCP_LISTS + 16
    status, pages = follow(4096, 8192, a, head, pcp.MAX_PCP_PAGES, LINK, REFCOUNT)
    if kind == "compiled":
        os.close(follow.fd)
    assert status == pcp.BAD_PREV and len(pages) == 4, (status, len(pages))


def test_a_vmemmap_entry_in_a_section_mapped_elsewhere_is_not_taken():
    """A section whose memory map does not lie where the one virtual map puts it (a corrupt
    mem_section) does not vouch for the pfns that the arithmetic gives there."""
    class MovedSection:
        vmemmap_base, struct_size, section_shift = VMEMMAP, PAGE, 10

        def struct_va(self, pfn):
            return VMEMMAP + pfn * PAGE + (1 << 20 if pfn >> 10 == 6 else 0)   # pfns 6144..7167
    m = Machine()
    m.lists[0][1] = [5000]
    m.lists[1][1] = [6200]
    r = find_pcp_free(m.build(), MovedSection())
    assert r.runs == [(5000, 1)] and r.lists_rejected == 1
    assert "not a struct page of this zone" in r.problems[0]


def test_compiled_clear_matches_bit_by_bit_on_random_runs():
    """bitmap_clear_runs against clearing bit by bit: runs straddling the range's ends,
    byte edges, and runs wholly outside."""
    import random
    from array import array
    from fastdump import _core
    rng = random.Random(13)
    for _ in range(200):
        nbits = rng.randrange(1, 300)
        base = rng.randrange(0, 100)
        keep = bytearray(rng.getrandbits(8) for _ in range((nbits + 7) // 8))
        runs = sorted((rng.randrange(0, base + nbits + 20), rng.randrange(1, 40)) for _ in range(rng.randrange(0, 12)))
        want, cleared = bytearray(keep), 0
        for a, n in runs:
            for pfn in range(max(a, base), min(a + n, base + nbits)):
                i = pfn - base
                if want[i >> 3] >> (i & 7) & 1:
                    cleared += 1
                    want[i >> 3] &= ~(1 << (i & 7))
        got = _core.bitmap_clear_runs(keep, array("Q", [v for r in runs for v in r]), base, nbits)
        assert (got, keep) == (cleared, want)
