"""This test suite's own walk of a real kernel's struct pages and per-CPU free lists.

It needs no BTF: the lists are recognised by their shape (list_heads whose nodes are the
``lru`` of free struct pages, the head neither a struct page nor a zone's buddy free area),
so it checks fastdump's BTF-based walk (``fastdump/kernel/pcp.py``) independently.  Used by
tests/test_classification_real.py and by the booted Debian guest (tests/e2e/distro.py).
"""

from fastdump.errors import FastdumpError
from fastdump.kernel.judge import make_judge
from fastdump.kernel.vtop import TranslationError

# per-CPU free lists (include/linux/mmzone.h): MIGRATE_PCPTYPES lists per order up to
# PAGE_ALLOC_COSTLY_ORDER (3), since 5.13 plus 1-3 lists for THP blocks (pageblock order)
PCP_MIGRATE_TYPES = 3
PCP_LOWORDER_LISTS = PCP_MIGRATE_TYPES * 4
PCP_THP_ORDER = 9




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
        vt = self.judge.mem.vtop
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
        raw = self.judge.mem.vtop.read(va, 16)
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
                    nxt = int.from_bytes(self.judge.mem.vtop.read(node, 8), "little")
                    back = int.from_bytes(self.judge.mem.vtop.read(node + 8, 8), "little")
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
