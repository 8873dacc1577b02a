"""Free pages on the per-CPU lists (``zone->per_cpu_pageset``), proven free list by list.

Pages a CPU freed last sit on its ``per_cpu_pages.lists[]``, not in the buddy
allocator: their struct pages are not PageBuddy, so VMCOREINFO alone cannot tell
them from used pages.  With the kernel's own types (``fastdump.kernel.types``)
they can be found: for each online CPU and each populated zone, the CPU's
``per_cpu_pages`` (the zone's per-CPU pointer plus ``__per_cpu_offset[cpu]``)
holds ``count`` pages on ``lists[]``; list ``i`` holds blocks of order
``i // MIGRATE_PCPTYPES`` (orders 0-3, PAGE_ALLOC_COSTLY_ORDER), and the lists
after those hold pageblock-order blocks (THP, 5.13+).  Kernels with only
``MIGRATE_PCPTYPES`` lists keep order 0 only.

A crashed kernel's lists can be corrupt or caught mid-update, so a CPU's lists
count only when every entry checks out: the walk is bounded, a loop ends it,
each link's ``prev`` points back, each entry is the struct page of a pfn inside
the zone with a zero reference count, and the pages found add up to
``per_cpu_pages.count``.  Otherwise none of that CPU's pages in that zone are
dropped, and the statistics say so.
"""

from array import array
from bisect import bisect_left

from .. import _core
from ..errors import FastdumpError
from .types import NotAvailable

#: orders 0..PAGE_ALLOC_COSTLY_ORDER have a list per migrate type (include/linux/mmzone.h)
PAGE_ALLOC_COSTLY_ORDER = 3
#: pageblock order of x86_64 with 4 KiB pages (HPAGE_PMD_ORDER)
PAGEBLOCK_ORDER = 9
MAX_CPUS = 8192
MAX_NODES = 1024
#: far beyond any per_cpu_pages.high (the kernel caps it well below a zone's pages)
MAX_PCP_PAGES = 1 << 24


class PcpResult:
    """``runs``: [(first pfn, pages)] proven free; ``stats``: what was walked, kept and why."""

    def __init__(self):
        self.runs = []
        self.pages = 0
        self.lists_ok = 0          # (cpu, zone) pairs whose lists checked out
        self.lists_rejected = 0    # pairs whose pages are kept
        self.counted = 0           # sum of per_cpu_pages.count over the pairs that checked out
        self.problems = []

    def stats(self):
        return {"pcp_free_pages": self.pages, "pcp_sets_checked": self.lists_ok,
                "pcp_sets_kept": self.lists_rejected, "pcp_count_sum": self.counted,
                "pcp_problems": self.problems[:5]}


def find_pcp_free(kernel, memmap, follow=None):
    """Walk every online CPU's per-CPU free lists of every populated zone.

    ``follow(zone_start, zone_end, first, head, limit, link_off, ref_off)`` walks one list
    and returns (status, struct page addresses) as ``_pagescan.Scanner.follow_list`` does;
    the page judge passes that compiled walk, bound to the zone's struct pages.  By
    default each entry is read through ``kernel.read`` (no Scanner needed).

    Raises NotAvailable when the kernel's types or symbols cannot say where the lists are."""
    k = kernel
    cpus = _online_cpus(k)          # symbols first: BTF's load lets the name tables go
    layout = _Layout(k)
    follow = follow or _reading_follow(k)
    result = PcpResult()
    for zone_va in _zones(k, layout):
        zone = _Zone(k, layout, zone_va)
        if not zone.present:
            continue
        for cpu, offset in cpus:
            pcp = (zone.pcp_pointer + offset) & ((1 << 64) - 1)
            try:
                runs, count = _walk_cpu(k, memmap, layout, zone, pcp, follow)
            except _Reject as e:
                result.lists_rejected += 1
                result.problems.append(f"cpu {cpu} zone {zone_va:#x}: {e}")
                continue
            except FastdumpError as e:
                result.lists_rejected += 1
                result.problems.append(f"cpu {cpu} zone {zone_va:#x}: {_line(e)}")
                continue
            result.lists_ok += 1
            result.counted += count
            result.runs.extend(runs)
            result.pages += sum(n for _, n in runs)
    result.runs.sort()
    return result


class _Reject(Exception):
    """This CPU's lists in this zone do not check out: keep their pages."""


class _Layout:
    """Offsets and sizes from BTF, read once."""

    def __init__(self, k):
        self.zone_size = k.sizeof("zone")
        self.node_zones = k.offsetof("pglist_data", "node_zones")
        self.nr_zones = k.length("pglist_data", "node_zones")
        self.zone_pcp = k.offsetof("zone", "per_cpu_pageset")
        self.zone_start = k.offsetof("zone", "zone_start_pfn")
        self.zone_spanned = k.offsetof("zone", "spanned_pages")
        self.zone_present = k.offsetof("zone", "present_pages")
        self.pcp_size = k.sizeof("per_cpu_pages")
        self.pcp_count = k.offsetof("per_cpu_pages", "count")
        self.pcp_lists = k.offsetof("per_cpu_pages", "lists")
        self.nr_lists = k.length("per_cpu_pages", "lists")
        self.list_head = k.sizeof("list_head")
        try:
            self.page_link = k.offsetof("page", "pcp_list")
        except NotAvailable:
            self.page_link = k.offsetof("page", "lru")
        self.page_refcount = k.offsetof("page", "_refcount")
        if not (0 <= self.page_link <= 4096 - 16 and 0 <= self.page_refcount <= 4096 - 4):
            raise NotAvailable("BTF: struct page's list link or _refcount lies past 4096 bytes")
        types = k.enumerator("MIGRATE_PCPTYPES")
        low = types * (PAGE_ALLOC_COSTLY_ORDER + 1)
        if self.nr_lists == types:
            self.orders = [0] * types
        elif low < self.nr_lists <= low + types:
            self.orders = [i // types for i in range(low)] + [PAGEBLOCK_ORDER] * (self.nr_lists - low)
        else:
            raise NotAvailable(f"per_cpu_pages has {self.nr_lists} lists, a layout not known here")
        if self.list_head != 16 or self.pcp_lists + 16 * self.nr_lists > self.pcp_size:
            raise NotAvailable("per_cpu_pages.lists does not fit its struct")


class _Zone:
    def __init__(self, k, layout, va):
        raw = k.read(va, layout.zone_size)
        q = lambda off: int.from_bytes(raw[off:off + 8], "little")
        self.va = va
        self.pcp_pointer = q(layout.zone_pcp)
        self.start = q(layout.zone_start)
        self.end = self.start + q(layout.zone_spanned)
        self.present = q(layout.zone_present) and self.pcp_pointer


def _online_cpus(k):
    """[(cpu, __per_cpu_offset[cpu])] of the CPUs in cpu_online_mask."""
    n = k.read_u32(k.symbol("nr_cpu_ids"))
    if not 0 < n <= MAX_CPUS:
        raise NotAvailable(f"nr_cpu_ids={n} is not plausible")
    mask = int.from_bytes(k.read(k.symbol("__cpu_online_mask"), (n + 63) // 64 * 8), "little")
    offsets = k.read(k.symbol("__per_cpu_offset"), 8 * n)
    cpus = [(c, int.from_bytes(offsets[8 * c:8 * c + 8], "little")) for c in range(n) if mask >> c & 1]
    if not cpus:
        raise NotAvailable("cpu_online_mask is empty")
    return cpus


def _zones(k, layout):
    vi = k.dump.vmcoreinfo
    if "node_data" in vi.symbols:
        n = max(1, min(vi.lengths.get("node_data", 1), MAX_NODES))
        raw = k.read(vi.symbols["node_data"], 8 * n)
        pgdats = [int.from_bytes(raw[8 * i:8 * i + 8], "little") for i in range(n)]
        pgdats = [p for p in pgdats if p >= 0xFF00000000000000]
    elif "contig_page_data" in vi.symbols:
        pgdats = [vi.symbols["contig_page_data"]]
    else:
        raise NotAvailable("VMCOREINFO names neither node_data nor contig_page_data")
    for pgdat in pgdats:
        for z in range(layout.nr_zones):
            yield pgdat + layout.node_zones + z * layout.zone_size


def _walk_cpu(k, memmap, layout, zone, pcp, follow):
    raw = k.read(pcp, layout.pcp_size)
    count = int.from_bytes(raw[layout.pcp_count:layout.pcp_count + 4], "little", signed=True)
    if not 0 <= count <= MAX_PCP_PAGES:
        raise _Reject(f"per_cpu_pages.count={count}")
    runs, found = [], 0
    for i, order in enumerate(layout.orders):
        head = pcp + layout.pcp_lists + 16 * i
        first = int.from_bytes(raw[layout.pcp_lists + 16 * i:layout.pcp_lists + 16 * i + 8], "little")
        if first == head:
            continue
        status, pages = follow(zone.start, zone.end, first, head, (count - found) >> order,
                               layout.page_link, layout.page_refcount)
        pfns = _pfns(memmap, zone, pages)
        for n, pfn in enumerate(pfns):
            if pfn is None or pfn < zone.start or pfn + (1 << order) > zone.end or pfn % (1 << order):
                raise _Reject(f"list {i}: an entry is not a struct page of this zone")
            if n == len(pfns) - 1 and status:
                raise _Reject(f"list {i}: {_FOLLOW_PROBLEMS.get(status, status)}".replace("PFN", str(pfn)))
            runs.append((pfn, 1 << order))
        if status:          # past the limit: no entry of its own to blame
            raise _Reject(f"list {i}: {_FOLLOW_PROBLEMS.get(status, status)}")
        found += len(pfns) << order
    if found != count:
        raise _Reject(f"lists hold {found} pages, per_cpu_pages.count says {count}")
    return runs, count


#: follow()'s statuses, the values of fastdump._pagescan's FOLLOW_* (tests/test_pcp.py checks),
#: and how a rejection says them
OK, TOO_MANY, BAD_PREV, REFERENCED, UNREADABLE = range(5)
_FOLLOW_PROBLEMS = {TOO_MANY: "holds more pages than per_cpu_pages.count",
                    BAD_PREV: "a link's prev does not point back", REFERENCED: "pfn PFN has references",
                    UNREADABLE: "the struct page of pfn PFN is not readable"}


def _pfns(memmap, zone, pages):
    """The pfn of each struct page address (None where it is not one of the zone's map)."""
    base = memmap.struct_va(zone.start) if getattr(memmap, "vmemmap_base", None) is not None else None
    if base is None:
        return [memmap.pfn_of_struct_va(va, zone.start) for va in pages]
    # one virtual map for all memory (vmemmap): arithmetic per entry, and a look-up per
    # mem_section that the entries fall in (it must have a memory map)
    size, shift = memmap.struct_size, memmap.section_shift
    pfns = [zone.start + (va - base) // size if va >= base and (va - base) % size == 0 else None
            for va in pages]
    # each section the entries fall in must map its pfns where the arithmetic put them
    mapped = {nr: memmap.struct_va(nr << shift) == base + ((nr << shift) - zone.start) * size
              for nr in {pfn >> shift for pfn in pfns if pfn is not None}}
    return [pfn if pfn is not None and mapped[pfn >> shift] else None for pfn in pfns]


def _reading_follow(k):
    """follow() through ``k.read``, one read per entry: for callers without a Scanner."""
    def follow(zone_start, zone_end, first, head, limit, link_off, ref_off):
        lo = min(link_off, ref_off)
        size = max(link_off + 16, ref_off + 4) - lo
        pages, cur, nxt = [], head, first
        while nxt != head:
            if len(pages) >= limit:
                return TOO_MANY, pages
            pages.append(nxt - link_off)
            try:
                raw = k.read(nxt - link_off + lo, size)
            except FastdumpError:
                return UNREADABLE, pages
            if int.from_bytes(raw[link_off + 8 - lo:link_off + 16 - lo], "little") != cur:
                return BAD_PREV, pages
            if int.from_bytes(raw[ref_off - lo:ref_off + 4 - lo], "little") != 0:
                return REFERENCED, pages
            cur, nxt = nxt, int.from_bytes(raw[link_off - lo:link_off + 8 - lo], "little")
        return OK, pages
    return follow


def _line(e):
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class PcpPages:
    """The proven per-CPU free runs, cleared from a cycle's keep bitmap on request."""

    def __init__(self, result):
        self.result = result
        self.runs = result.runs
        self._starts = [a for a, _ in self.runs]
        self._pairs = array("Q", [v for run in self.runs for v in run])

    def clear(self, keep, start, end):
        """Clear the bits of [start, end) that lie in a run; returns how many were set.
        The runs that can meet the range are found by bisection and cleared in one
        compiled call (a zone's lists hold thousands of them)."""
        i = max(0, bisect_left(self._starts, start) - 1)
        j = bisect_left(self._starts, end)
        if i >= j:
            return 0
        return _core.bitmap_clear_runs(keep, memoryview(self._pairs)[2 * i:2 * j], start, end - start)
