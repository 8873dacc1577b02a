"""A synthetic x86_64 kernel for the vmcore generator: struct pages, mem_section,
page tables and VMCOREINFO, consistent with a known class for every pfn.

    layout = KernelLayout(default_ram_ranges(ram_size), encoding="6.12", seed=3)
    SyntheticVmcore(VmcoreSpec(ram_size=ram_size, sparse=True), layout=layout).write(path)
    layout.dropped_pfns(31)   # the truth a page judge must reproduce

Encodings (key values as in real Debian kernels, see docs/real-kernels.md):

* ``"4.x"``  pre-4.18: _mapcount -128, PG_slab, u16 compound_dtor/order, init_level4_pgt,
  struct page of 4.9 (mapping at 8, _mapcount at 24, compound_head at 32), no PG_swapbacked;
* ``"5.10"``, ``"6.1"``: page_type -129/-257, PG_slab=9, compound_dtor/order 16/17, HUGETLB_PAGE_DTOR=2;
* ``"6.3"`` (6.3-6.5): as 6.1, but the order and dtor are OFFSET(folio._folio_order/_folio_dtor);
* ``"6.6"`` (6.6-6.8): order in page[1].flags & 0xff, hugetlb = NUMBER(PG_hugetlb) there,
  PG_head at bit 6, PG_slab and the 4.18 page_type values still used;
* ``"6.12"``: PGTY top byte (0xf0.., printed negative), no PG_slab, order in page[1].flags;
* ``"7.1"`` (alias ``"7.2"``): OFFSET(page.compound_info), tails encoded as mask|1,
  PAGE_UNACCEPTED_MAPCOUNT_VALUE, SIZE(free_area)=104, LENGTH(free_area.free_list)=6.

Page classes (the generator's): kept ones are zero, random, text, pointers,
kernel, slab and ``metadata`` (pages holding what this layout writes: struct
pages, tables; their contents come only from :meth:`metadata_writes`); dropped
ones are free (16), cache (2|4), cache_private (4), user (8), hwpoison and
offline (always).  Trap pages (class ``kernel``) carry struct pages that look
droppable but are impossible (bad order, misaligned, broken tails), and a few
kernel-text pages look free or anonymous: a correct judge keeps all of them.

The kernel image (``kernel_text``) is, as on a real x86_64 kernel, the whole
_text.._end range of the kernel-image PT_LOAD: live image pages carry
PG_reserved (bit PG_private - 1, not exported, as memblock-reserved pages do);
its top part (``freed_init``, the freed __init sections) was given back to the
page allocator and holds ordinary mixed classes (free blocks, cache, anonymous
pages, THPs) with PG_reserved clear.  With ``image_reserved=False`` the image
pages lack PG_reserved, the judge cannot verify the bit, and the whole image
is kept (the truth says so).
"""

import random
import struct

PAGE = 4096
MiB = 1 << 20
GiB = 1 << 30
KMAP = 0xFFFFFFFF80000000
PAGE_OFFSET = 0xFFFF888000000000
VMEMMAP_4L = 0xFFFFEA0000000000
VMEMMAP_5L = 0xFFD4000000000000
U64 = (1 << 64) - 1

DROP_BITS = {"free": 16, "cache": 2 | 4, "cache_private": 4, "user": 8}
ALWAYS_DROPPED = ("hwpoison", "offline")

_BASE = {
    "SIZE(page)": 64, "SIZE(mem_section)": 16, "OFFSET(mem_section.section_mem_map)": 0,
    "SIZE(pglist_data)": 26880, "SIZE(zone)": 1600, "SIZE(list_head)": 16, "SIZE(nodemask_t)": 128,
    "OFFSET(pglist_data.node_zones)": 0, "OFFSET(pglist_data.nr_zones)": 8000 + 4608,
    "OFFSET(pglist_data.node_start_pfn)": 12624, "OFFSET(pglist_data.node_spanned_pages)": 12640,
    "OFFSET(pglist_data.node_id)": 12648, "OFFSET(zone.free_area)": 192, "OFFSET(zone.vm_stat)": 1280,
    "OFFSET(zone.spanned_pages)": 96, "OFFSET(free_area.free_list)": 0, "OFFSET(list_head.next)": 0,
    "OFFSET(list_head.prev)": 8, "LENGTH(zone.free_area)": 11, "NUMBER(NR_FREE_PAGES)": 0,
    "LENGTH(node_data)": 1024, "NUMBER(KERNEL_IMAGE_SIZE)": GiB,
}

ENCODINGS = {
    "4.x": {
        "off": {"flags": 0, "mapping": 8, "_mapcount": 24, "_refcount": 28, "lru": 32,
                "compound_head": 32, "compound_dtor": 40, "compound_order": 42, "private": 48},
        "pg": {"PG_lru": 5, "PG_private": 11, "PG_swapcache": 15, "PG_slab": 7, "PG_hwpoison": 22},
        "head_bit": 14, "types": {"PAGE_BUDDY_MAPCOUNT_VALUE": -128},
        "order": "u16", "dtor": 2, "chead": "compound_head", "mask_tails": False,
        "free_area": (88, 5), "pgt": "init_level4_pgt", "l5_key": False, "section_keys": False,
    },
    "5.10": {
        "off": {"flags": 0, "lru": 8, "compound_head": 8, "compound_dtor": 16, "compound_order": 17,
                "mapping": 24, "private": 40, "_mapcount": 48, "_refcount": 52},
        "pg": {"PG_lru": 4, "PG_private": 13, "PG_swapcache": 10, "PG_swapbacked": 19, "PG_slab": 9,
               "PG_hwpoison": 22},
        "head_bit": 16, "types": {"PAGE_BUDDY_MAPCOUNT_VALUE": -129, "PAGE_OFFLINE_MAPCOUNT_VALUE": -257},
        "order": "u8", "dtor": 2, "chead": "compound_head", "mask_tails": False,
        "free_area": (88, 5), "pgt": "init_top_pgt", "l5_key": True, "section_keys": False,
    },
    "6.12": {
        "off": {"flags": 0, "lru": 8, "compound_head": 8, "mapping": 24, "private": 40,
                "_mapcount": 48, "_refcount": 52},
        "pg": {"PG_lru": 5, "PG_private": 14, "PG_swapcache": 10, "PG_swapbacked": 17, "PG_hwpoison": 21},
        "head_bit": 6,
        "types": {"PAGE_BUDDY_MAPCOUNT_VALUE": -0x10000000, "PAGE_OFFLINE_MAPCOUNT_VALUE": -0x0F000000,
                  "PAGE_HUGETLB_MAPCOUNT_VALUE": -0x0C000000, "PAGE_SLAB_MAPCOUNT_VALUE": -0x0B000000},
        "order": "flags", "dtor": None, "chead": "compound_head", "mask_tails": False,
        "free_area": (88, 5), "pgt": "init_top_pgt", "l5_key": True, "section_keys": True,
    },
    "7.1": {
        "off": {"flags": 0, "lru": 8, "compound_info": 8, "mapping": 24, "private": 40,
                "_mapcount": 48, "_refcount": 52},
        "pg": {"PG_lru": 5, "PG_private": 14, "PG_swapcache": 10, "PG_swapbacked": 17, "PG_hwpoison": 21},
        "head_bit": 6,
        "types": {"PAGE_BUDDY_MAPCOUNT_VALUE": 0xF0000000, "PAGE_OFFLINE_MAPCOUNT_VALUE": 0xF1000000,
                  "PAGE_HUGETLB_MAPCOUNT_VALUE": 0xF4000000, "PAGE_SLAB_MAPCOUNT_VALUE": 0xF5000000,
                  "PAGE_UNACCEPTED_MAPCOUNT_VALUE": 0xF7000000},
        "order": "flags", "dtor": None, "chead": "compound_info", "mask_tails": True,
        "free_area": (104, 6), "pgt": "init_top_pgt", "l5_key": True, "section_keys": True,
    },
}
ENCODINGS["6.1"] = ENCODINGS["5.10"]
ENCODINGS["7.2"] = ENCODINGS["7.1"]
# 6.3-6.5: struct folio overlays the first tail; its order and destructor bytes are exported
# as OFFSET(folio._folio_order) / OFFSET(folio._folio_dtor), counted from the head page
ENCODINGS["6.3"] = dict(ENCODINGS["5.10"], off={k: v for k, v in ENCODINGS["5.10"]["off"].items()
                                                  if not k.startswith("compound_") or k == "compound_head"},
                        folio_off={"_folio_dtor": 64 + 16, "_folio_order": 64 + 17}, order="folio_u8")
# 6.6-6.8: the order is the low byte of the first tail's flags, hugetlb a flag there
# (NUMBER(PG_hugetlb), above that byte); page flags renumbered with PG_head at bit 6,
# PG_slab and the 4.18 page_type values still in use
ENCODINGS["6.6"] = dict(ENCODINGS["6.3"], folio_off={}, order="flags", dtor=None, head_bit=6,
                        pg={"PG_lru": 5, "PG_private": 15, "PG_swapcache": 12, "PG_swapbacked": 19,
                            "PG_slab": 11, "PG_hwpoison": 23, "PG_hugetlb": 8})


def dropped_classes(level, *, scan=True):
    """Classes a correct judge drops at ``level`` (``scan``: hwpoison/offline handled)."""
    out = {c for c, bits in DROP_BITS.items() if level & bits}
    if scan:
        out.update(ALWAYS_DROPPED)
    return out


class KernelLayout:
    """See the module doc.  Options:

    sparse: big order-10 free blocks, struct pages of kept pages left zero (file holes);
    five_level: 5-level page tables (NUMBER(pgtable_l5_enabled)=1);
    memory_model: "vmemmap" (default), "sparse" (SPARSEMEM without VMEMMAP), "flatmem";
    mem_section_deref: SYMBOL(mem_section) is the address of the pointer (4.15-era bug);
    vmemmap_4k: map the last section's vmemmap with 4 KiB PTEs (memory hotplug style);
    sme: set an SME C-bit (bit 47) in page-table entries and export NUMBER(sme_mask);
    drop_keys: VMCOREINFO keys to leave out (unknown-layout tests);
    extra_keys: additional/overriding ``KEY=VALUE`` lines.
    """

    def __init__(self, ram_ranges=None, encoding="6.12", seed=1, *, sparse=None, kernel_text=None,
                 five_level=False, memory_model="vmemmap", mem_section_deref=False, vmemmap_4k=False,
                 sme=False, drop_keys=(), extra_keys=(), traps=True, free_fraction=0.75,
                 freed_init=True, image_reserved=True):
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}; choose from {sorted(ENCODINGS)}")
        self.ram_ranges = list(ram_ranges) if ram_ranges else None
        self.encoding, self.enc = encoding, ENCODINGS[encoding]
        self.seed = seed
        self.sparse = sparse
        self.kernel_text = kernel_text
        self.five_level = five_level
        self.memory_model = memory_model
        self.mem_section_deref = mem_section_deref
        self.vmemmap_4k = vmemmap_4k
        self.sme_bit = (1 << 47) if sme else 0
        self.drop_keys = set(drop_keys)
        self.extra_keys = list(extra_keys)
        self.traps = traps
        self.free_fraction = free_fraction
        self.freed_init = freed_init
        self.image_reserved = image_reserved
        self._built = False

    # -- generator plug-in --------------------------------------------------------
    @property
    def suppress_keys(self):
        """Generator-provided VMCOREINFO keys this kernel does not export."""
        keys = set(self.drop_keys)
        if self.enc["pgt"] != "init_top_pgt":
            keys |= {"SYMBOL(init_top_pgt)", "NUMBER(pgtable_l5_enabled)"}
        return keys

    def bind(self, spec, ram_ranges, generator=None):
        """Called by SyntheticVmcore: learn the spec's RAM map, sparseness and kernel text
        (and which pages the generator itself writes, e.g. utsname, so they are "metadata")."""
        if generator is not None and hasattr(generator, "kernel_image_writes"):
            self._foreign = [(a, len(d)) for a, d in generator.kernel_image_writes() if any(d)]
        if self.ram_ranges is None:
            self.ram_ranges = list(ram_ranges)
        if self.sparse is None:
            self.sparse = spec.sparse
        if self.kernel_text is None:
            self.kernel_text = tuple(spec.kernel_text)

    def class_runs(self):
        self._build()
        return iter(self.runs)

    def metadata_writes(self):
        self._build()
        return iter(self.writes)

    def vmcoreinfo_lines(self):
        self._build()
        return list(self.lines)

    # -- truth -------------------------------------------------------------------
    def class_of(self, pfn):
        import bisect
        self._build()
        i = bisect.bisect_right(self._run_starts, pfn) - 1
        if i >= 0:
            a, b, c = self.runs[i]
            if a <= pfn < b:
                return c
        return None

    def image_guarded(self):
        """True when a correct judge must keep every page of the kernel image
        (PG_reserved cannot be verified there)."""
        return not self.image_reserved or "NUMBER(PG_private)" in self.drop_keys

    def dropped_runs(self, level, *, scan=True):
        cls = dropped_classes(level, scan=scan)
        self._build()
        out = [(a, b) for a, b, c in self.runs if c in cls]
        if self.image_guarded():
            k0, k1 = self.kernel_text[0] // PAGE, -(-self.kernel_text[1] // PAGE)
            clipped = []
            for a, b in out:
                if a < k0:
                    clipped.append((a, min(b, k0)))
                if b > k1:
                    clipped.append((max(a, k1), b))
            out = [(a, b) for a, b in clipped if b > a]
        return out

    def dropped_pfns(self, level, *, scan=True):
        out = set()
        for a, b in self.dropped_runs(level, scan=scan):
            out.update(range(a, b))
        return out

    def class_counts(self):
        self._build()
        counts = {}
        for a, b, c in self.runs:
            counts[c] = counts.get(c, 0) + b - a
        return counts

    # -- building ------------------------------------------------------------
    def _build(self):
        if self._built:
            return
        if self.ram_ranges is None:
            raise ValueError("KernelLayout needs ram_ranges (or a generator that calls bind())")
        if self.sparse is None:
            self.sparse = False
        if self.kernel_text is None:
            self.kernel_text = (16 * MiB, 48 * MiB)
        self._built = True
        e = self.enc
        self.rng = random.Random(self.seed * 7919 + 17)
        self.off = e["off"]
        self.rec_size = 64
        self.head_mask = 1 << e["head_bit"]
        self.pg = {k: 1 << v for k, v in e["pg"].items()}
        self.types = {k: v & 0xFFFFFFFF for k, v in e["types"].items()}
        self.nr_orders = 11
        self.vmemmap = VMEMMAP_5L if self.five_level else VMEMMAP_4L
        self.phys_base = self.kernel_text[0] - 0x1000000
        self.section_shift = 15
        self.max_pfn = -(-max(b for _, b in self.ram_ranges) // PAGE)
        self.sections = sorted({s for a, b in self.ram_ranges
                                for s in range(a // PAGE >> 15, ((-(-b // PAGE)) - 1 >> 15) + 1)})
        self.writes = []
        self._meta_pages = set()       # pfns written with non-zero data
        self._alloc_top = None
        self._layout_memory()
        self._plan_classes()
        self._struct_pages()
        self._zones()
        self._finish_runs()
        self._vmcoreinfo()

    # physical allocation, top-down from the end of the largest RAM range
    def _alloc(self, size, align=PAGE):
        top = (self._alloc_top - size) // align * align
        self._alloc_top = top
        if top < self._area_floor:
            raise ValueError("RAM too small for the synthetic kernel's metadata")
        return top

    def _write(self, phys, data):
        data = bytes(data)
        if not any(data):
            return
        self.writes.append((phys, data))
        for pfn in range(phys // PAGE, (phys + len(data) - 1) // PAGE + 1):
            self._meta_pages.add(pfn)

    def va_direct(self, phys):
        return PAGE_OFFSET + phys

    def va_image(self, phys):
        return KMAP + phys - self.phys_base

    def _layout_memory(self):
        rr = max(self.ram_ranges, key=lambda r: r[1] - r[0])
        self._area_end = rr[1] // (2 * MiB) * (2 * MiB)
        self._area_floor = max(rr[0], self.kernel_text[1] if self.kernel_text[1] <= rr[1] else rr[0])
        self._alloc_top = self._area_end
        # struct page backing: 2 MiB per section (32768 pages * 64 bytes)
        self.backing = {}
        if self.memory_model == "flatmem":
            nsec = self.sections[-1] + 1
            base = self._alloc(nsec * 2 * MiB, 2 * MiB)
            self.backing = {s: base + s * 2 * MiB for s in range(nsec)}
            self.flat_base = base
        else:
            for s in self.sections:
                self.backing[s] = self._alloc(2 * MiB, 2 * MiB)
        # kernel-image pages: PGD, node_data, pointer variables
        kt0 = self.kernel_text[0]
        self.pgd_phys = kt0 + 4 * MiB
        self.node_data_phys = kt0 + 4 * MiB + PAGE
        self.vars_phys = kt0 + 4 * MiB + 3 * PAGE
        self._tables = {}
        self._pt_build()
        # mem_section
        if self.memory_model != "flatmem":
            self._mem_section()
        else:
            ptr = self.va_direct(self.flat_base)
            self._write(self.vars_phys, struct.pack("<Q", ptr))
            self.mem_map_sym = self.va_image(self.vars_phys)
        # pglist_data
        self.pgdat_phys = self._alloc(_BASE["SIZE(pglist_data)"])
        self._write(self.node_data_phys, struct.pack("<Q", self.va_direct(self.pgdat_phys)))
        self._write(self.vars_phys + 64, struct.pack("<Q", 1))   # node_online_map: node 0
        self._write_tables()
        self._area_start = self._alloc_top // PAGE * PAGE

    # -- page tables ---------------------------------------------------------
    def _table(self, phys=None):
        if phys is None:
            phys = self._alloc(PAGE)
        self._tables.setdefault(phys, {})
        return phys

    def _entry(self, table, idx, value):
        self._tables[table][idx] = value

    def _next(self, table, idx):
        ent = self._tables[table].get(idx)
        if ent is None:
            t = self._table()
            self._entry(table, idx, t | self.sme_bit | 0x63)
            return t
        return ent & 0x000FFFFFFFFFF000 & ~self.sme_bit

    def _map(self, va, pa, level_size):
        """Map one page of ``level_size`` (1 GiB, 2 MiB, 4 KiB) at va -> pa."""
        t = self.pgd_phys
        if self.five_level:
            t = self._next(t, (va >> 48) & 511)
        t = self._next(t, (va >> 39) & 511)
        if level_size == GiB:
            self._entry(t, (va >> 30) & 511, pa | self.sme_bit | 0xE3)
            return
        t = self._next(t, (va >> 30) & 511)
        if level_size == 2 * MiB:
            self._entry(t, (va >> 21) & 511, pa | self.sme_bit | 0xE3)
            return
        t = self._next(t, (va >> 21) & 511)
        self._entry(t, (va >> 12) & 511, pa | self.sme_bit | 0x63)

    def _pt_build(self):
        self._table(self.pgd_phys)
        # direct map with 1 GiB pages
        top = max(b for _, b in self.ram_ranges)
        for g in range(0, -(-top // GiB)):
            self._map(PAGE_OFFSET + g * GiB, g * GiB, GiB)
        # kernel image with 2 MiB pages
        k0, k1 = self.kernel_text
        for pa in range(k0 // (2 * MiB) * 2 * MiB, k1, 2 * MiB):
            self._map(KMAP + pa - self.phys_base, pa, 2 * MiB)
        # vmemmap
        if self.memory_model == "vmemmap":
            last = self.sections[-1]
            for s in self.sections:
                va = self.vmemmap + (s << 15) * 64
                if self.vmemmap_4k and s == last:
                    for k in range(512):
                        self._map(va + k * PAGE, self.backing[s] + k * PAGE, PAGE)
                else:
                    self._map(va, self.backing[s], 2 * MiB)

    def _write_tables(self):
        for phys, entries in self._tables.items():
            page = bytearray(PAGE)
            for i, v in entries.items():
                struct.pack_into("<Q", page, i * 8, v)
            self._write(phys, page)

    def _mem_section(self):
        bits = 52 if self.five_level else 46
        nr_sections = 1 << (bits - 27)
        per_root = PAGE // 16
        self.nr_roots = nr_roots = nr_sections // per_root
        roots_phys = self._alloc(nr_roots * 8, PAGE)
        roots = {}
        for s in self.sections:
            r = s // per_root
            if r not in roots:
                roots[r] = self._alloc(PAGE)
                self._write(roots_phys + r * 8, struct.pack("<Q", self.va_direct(roots[r])))
            if self.memory_model == "vmemmap":
                enc = self.vmemmap
            else:  # mem_map in the direct map, encoded minus the section's first pfn
                enc = (self.va_direct(self.backing[s]) - (s << 15) * 64) & U64
            usage = self.va_direct(roots[r]) + 2048 + (s % per_root) * 8  # any kernel pointer
            self._write(roots[r] + (s % per_root) * 16, struct.pack("<QQ", enc | 0xF, usage))
        if self.mem_section_deref:
            self._write(self.vars_phys + 8, struct.pack("<Q", self.va_direct(roots_phys)))
            self.mem_section_sym = self.va_image(self.vars_phys + 8)
        else:
            self.mem_section_sym = self.va_direct(roots_phys)

    # -- struct pages ---------------------------------------------------------
    def struct_va(self, pfn):
        s = pfn >> 15
        if self.memory_model == "vmemmap":
            return self.vmemmap + pfn * 64
        if self.memory_model == "flatmem":
            return self.va_direct(self.flat_base) + pfn * 64
        return self.va_direct(self.backing[s]) + (pfn - (s << 15)) * 64

    def struct_phys(self, pfn):
        s = pfn >> 15
        return self.backing[s] + (pfn - (s << 15)) * 64

    def _rec(self, flags=0, mapping=0, private=0, mapcount=None, chead=0, refcount=0, page1=None):
        o = self.off
        r = bytearray(64)
        struct.pack_into("<Q", r, o["flags"], flags)
        # compound_head shares storage with lru: write it first, mapping etc. after
        ch = o.get("compound_head", o.get("compound_info"))
        if chead:
            struct.pack_into("<Q", r, ch, chead)
        struct.pack_into("<Q", r, o["mapping"], mapping)
        struct.pack_into("<Q", r, o["private"], private)
        if mapcount is not None:
            struct.pack_into("<I", r, o["_mapcount"], mapcount & 0xFFFFFFFF)
        struct.pack_into("<I", r, o["_refcount"], refcount)
        return r

    def _zone_bits(self, pfn):
        if self.sparse:
            return 0
        z = 0 if pfn < 4096 else (1 if pfn < (1 << 20) else 2)
        return (z + 1) << 58

    def _plain(self, pfn, n):
        """Allocated kernel pages (kept)."""
        if self.sparse:
            return None
        return bytes(self._rec(flags=self._zone_bits(pfn), mapcount=-1, refcount=1)) * n

    def _tail(self, head_pfn, pfn, order):
        e = self.enc
        if e["mask_tails"]:
            shift = order + 6
            ci = ((U64 >> shift) << shift) | 1
        else:
            ci = self.struct_va(head_pfn) | 1
        return self._rec(flags=self._zone_bits(pfn), mapcount=-1, chead=ci)

    def _page1(self, head_pfn, order, hugetlb=False):
        """page[1] of a compound page: a tail with the order (and hugetlb mark)."""
        e, o = self.enc, self.off
        r = self._tail(head_pfn, head_pfn + 1, order)
        if e["order"] == "flags":
            flags = struct.unpack_from("<Q", r, o["flags"])[0] | order
            struct.pack_into("<Q", r, o["flags"], flags)
            if hugetlb and "PG_hugetlb" in e["pg"]:
                struct.pack_into("<Q", r, o["flags"], flags | 1 << e["pg"]["PG_hugetlb"])
        elif e["order"] == "u8":
            r[o["compound_order"]] = order
            r[o["compound_dtor"]] = 2 if hugetlb else 1
        elif e["order"] == "folio_u8":
            r[e["folio_off"]["_folio_order"] - 64] = order
            r[e["folio_off"]["_folio_dtor"] - 64] = 2 if hugetlb else 1
        else:  # u16 (4.x)
            struct.pack_into("<H", r, o["compound_order"], order)
            struct.pack_into("<H", r, o["compound_dtor"], 2 if hugetlb else 1)
        return r

    def _compound(self, pfn, order, head_rec, hugetlb=False):
        n = 1 << order
        parts = [head_rec, self._page1(pfn, order, hugetlb)]
        if n > 2:
            parts.append(bytes(self._tail(pfn, pfn + 2, order)) * (n - 2))
        return b"".join(bytes(p) for p in parts)

    # -- the class plan ---------------------------------------------------------
    def _features(self):
        """(weight, name, order, class) of what a mixed region holds."""
        f = [(14, "free", None, "free"), (10, "cache", 0, "cache"), (4, "cache_swap", 0, "cache"),
             (4, "shmem", 0, "cache"), (8, "cache_private", 0, "cache_private"),
             (4, "folio_cache", None, "cache"), (10, "anon", 0, "user"), (3, "anon_swap", 0, "user"),
             (2, "thp", 9, "user"), (2, "hugetlb", 9, "user"), (6, "slab", 0, "slab"),
             (3, "slab_big", 2, "slab"), (10, "kernel", 0, "kernel"), (6, "zero", 0, "zero"),
             (6, "random", 0, "random"), (4, "pointers", 0, "pointers"), (2, "hwpoison", 0, "hwpoison"),
             (2, "pcp_free", 0, "kernel")]
        if "PAGE_OFFLINE_MAPCOUNT_VALUE" in self.types:
            f.append((2, "offline", 0, "offline"))
        if self.traps:
            f += [(1, "trap_order", 0, "kernel"), (1, "trap_misaligned", 0, "kernel"),
                  (1, "trap_tails", 2, "kernel"), (1, "trap_bigorder", 1, "kernel")]
        return f

    def _plan_classes(self):
        """self.segs: (first_pfn, n, kind, order, class) over RAM outside text/metadata."""
        segs = []
        kt = (self.kernel_text[0] // PAGE, self.kernel_text[1] // PAGE)
        area = (self._area_start // PAGE, self._area_end // PAGE)
        # freed __init memory: the top of the image above every page written as metadata
        self.init_range = (kt[1], kt[1])
        if self.freed_init and kt[1] - kt[0] >= 2048:
            meta = set(self._meta_pages)
            for a, n in getattr(self, "_foreign", ()):
                meta.update(range(a // PAGE, (a + n - 1) // PAGE + 1))
            hi = max([p for p in meta if kt[0] <= p < kt[1]] + [kt[0] + 1024])
            i0 = max(kt[1] - (kt[1] - kt[0]) // 8, hi + 1)
            i0 = -(-i0 // 512) * 512
            if i0 + 64 <= kt[1]:
                self.init_range = (i0, kt[1])
        excluded = sorted([(kt[0], self.init_range[0]), area])
        pieces = []
        for a, b in self.ram_ranges:
            pa, pb = -(-a // PAGE), b // PAGE   # whole pages only
            # partial pages at range edges (the 640 KiB range) are plain kernel pages
            if a // PAGE < pa:
                segs.append((a // PAGE, 1, "plain", 0, "kernel"))
            if -(-b // PAGE) > pb:
                segs.append((pb, 1, "plain", 0, "kernel"))
            cur = pa
            for xa, xb in excluded:
                if xb <= cur or xa >= pb:
                    continue
                if xa > cur:
                    pieces.append((cur, xa))
                cur = max(cur, xb)
            if cur < pb:
                pieces.append((cur, pb))
        # text and traps inside the kernel image (the freed __init part is a mixed piece)
        segs.append((kt[0], self.init_range[0] - kt[0], "text", 0, "text"))
        feats = self._features()
        weights = [w for w, *_ in feats]
        unaccepted_done = "PAGE_UNACCEPTED_MAPCOUNT_VALUE" not in self.types
        total = sum(b - a for a, b in pieces)
        p_mixed = 1 / 48 if total <= 1 << 22 else (1 / 48) * (1 << 22) / total
        for a, b in pieces:
            pfn = a
            while pfn < b:
                if self.sparse and (pfn % 1024 == 0) and b - pfn >= 1024 and self.rng.random() > p_mixed:
                    # bulk: order-10 free blocks or zero pages, struct pages mostly empty
                    n = min(b - pfn, 1024 * self.rng.randint(1, 64)) // 1024 * 1024
                    if self.rng.random() < self.free_fraction:
                        segs.append((pfn, n, "free_bulk", 10, "free"))
                    else:
                        segs.append((pfn, n, "plain", 0, "zero"))
                    pfn += n
                    continue
                if not unaccepted_done and pfn % 1024 == 0 and b - pfn >= 1024:
                    segs.append((pfn, 1024, "unaccepted", 10, "free"))
                    unaccepted_done = True
                    pfn += 1024
                    continue
                _, kind, order, cls = self.rng.choices(feats, weights)[0]
                if kind == "free":
                    order = self.rng.choice([0, 0, 0, 1, 2, 3, 4, 5, 7, 10])
                elif kind == "folio_cache":
                    order = self.rng.choice([2, 3, 4])
                n = 1 << order
                if kind in ("kernel", "zero", "random", "pointers", "slab", "pcp_free") and self.rng.random() < 0.5:
                    n = self.rng.randint(1, 24)  # a run of order-0 pages
                start = -(-pfn // (1 << order)) * (1 << order)
                if start + n > b:
                    segs.append((pfn, b - pfn, "plain", 0, "kernel"))
                    break
                if start > pfn:
                    segs.append((pfn, start - pfn, "plain", 0, "kernel"))
                if kind == "trap_misaligned" and start % 2 == 0:
                    segs.append((start, 1, "plain", 0, "kernel"))
                    start += 1
                    if start + 1 > b:
                        pfn = start
                        continue
                segs.append((start, n, kind, order, cls))
                pfn = start + n
        segs.sort()
        self.segs = segs

    def _struct_pages(self):
        o, pg, T = self.off, self.pg, self.types
        head = self.head_mask
        lru, priv = pg.get("PG_lru", 0), pg.get("PG_private", 0)
        reserved = (priv >> 1) if self.image_reserved else 0      # PG_reserved = PG_private - 1
        swc, swb = pg.get("PG_swapcache", 0), pg.get("PG_swapbacked", 0)
        slab_flag, hwp = pg.get("PG_slab", 0), pg.get("PG_hwpoison", 0)
        buddy = T["PAGE_BUDDY_MAPCOUNT_VALUE"]
        anon = lambda pfn: (0xFFFF888100000000 + (pfn * 8 & 0xFFFFFFF) * 64) | 1     # anon_vma | 1
        fmap = lambda pfn: 0xFFFF888110000000 + (pfn % 97) * 0x100                   # address_space
        rng = self.rng
        self.free_per_zone = [0, 0, 0]
        self.text_traps = []

        def put(pfn, data):
            if data is None:
                return
            # struct pages of consecutive pfns may change backing at section ends
            i = 0
            while i < len(data) // 64:
                p = pfn + i
                n = min(len(data) // 64 - i, ((p >> 15) + 1 << 15) - p)
                self._write(self.struct_phys(p), data[i * 64:(i + n) * 64])
                i += n

        def zone(pfn):
            return 0 if pfn < 4096 else (1 if pfn < (1 << 20) else 2)

        for pfn, n, kind, order, cls in self.segs:
            zb = self._zone_bits(pfn)
            if kind in ("plain", "kernel", "zero", "random", "pointers"):
                put(pfn, self._plain(pfn, n))
            elif kind == "text":
                # live kernel-image pages: memblock-reserved, PG_reserved set (also when sparse)
                put(pfn, bytes(self._rec(flags=zb | reserved, mapcount=-1, refcount=1)) * n)
                if self.traps and n > 64:
                    # kernel-image pages whose struct pages look free / anonymous (but reserved)
                    t = pfn + 32 - pfn % 4 if pfn % 4 else pfn + 32
                    self._write(self.struct_phys(t), self._rec(flags=zb | reserved, mapcount=buddy, private=2))
                    put(t + 1, bytes(self._rec(flags=zb | reserved, mapcount=-1)) * 3)
                    self._write(self.struct_phys(t + 8), self._rec(flags=zb | lru | reserved, mapping=anon(t),
                                                                   mapcount=0))
                    # a slab page (not reserved) inside the image: kept as any slab
                    mc = T.get("PAGE_SLAB_MAPCOUNT_VALUE", -1)
                    self._write(self.struct_phys(t + 12), self._rec(
                        flags=zb | slab_flag, mapping=anon(t + 12), mapcount=mc, refcount=1))
                    self.text_traps += [t, t + 1, t + 8, t + 12]
            elif kind in ("free", "free_bulk"):
                for b0 in range(pfn, pfn + n, 1 << order):
                    self._write(self.struct_phys(b0), self._rec(flags=zb, mapcount=buddy, private=order))
                    if not self.sparse and order:
                        put(b0 + 1, bytes(self._rec(flags=zb, mapcount=-1)) * ((1 << order) - 1))
                    self.free_per_zone[zone(b0)] += 1 << order
            elif kind == "unaccepted":
                self._write(self.struct_phys(pfn), self._rec(flags=zb, mapcount=T["PAGE_UNACCEPTED_MAPCOUNT_VALUE"]))
                if not self.sparse:
                    put(pfn + 1, bytes(self._rec(flags=zb, mapcount=-1)) * (n - 1))
                self.free_per_zone[zone(pfn)] += n
            elif kind in ("cache", "cache_private", "shmem", "cache_swap"):
                flags = {"cache": lru, "cache_private": lru | priv, "shmem": lru | swb,
                         "cache_swap": (swc | swb) if swb else swc}[kind] | zb
                recs = b"".join(bytes(self._rec(flags=flags, mapping=fmap(pfn + i), mapcount=-1, refcount=1))
                                for i in range(n))
                put(pfn, recs)
            elif kind == "folio_cache":
                hr = self._rec(flags=zb | lru | head, mapping=fmap(pfn), mapcount=-1, refcount=1)
                put(pfn, self._compound(pfn, order, hr))
            elif kind in ("anon", "anon_swap"):
                flags = zb | lru | swb | (swc if kind == "anon_swap" else 0)
                put(pfn, b"".join(bytes(self._rec(flags=flags, mapping=anon(pfn + i), mapcount=0, refcount=1))
                                  for i in range(n)))
            elif kind == "thp":
                hr = self._rec(flags=zb | lru | swb | head, mapping=anon(pfn), mapcount=0, refcount=1)
                put(pfn, self._compound(pfn, order, hr))
            elif kind == "hugetlb":
                mc = T.get("PAGE_HUGETLB_MAPCOUNT_VALUE", -1)
                hr = self._rec(flags=zb | head, mapping=fmap(pfn) + 0x40, mapcount=mc, refcount=1)
                put(pfn, self._compound(pfn, order, hr, hugetlb=True))
            elif kind in ("slab", "slab_big"):
                mc = T.get("PAGE_SLAB_MAPCOUNT_VALUE", -1)
                if "PAGE_SLAB_MAPCOUNT_VALUE" in T:
                    mc |= rng.randrange(1 << 16)   # low bits are free for the owner in 6.12+
                # since 6.2 slab fields overlay page.mapping: an odd value must not look anonymous
                mapping = (0xFFFF888120000001 + pfn * 2) if "PG_slab" not in pg or self.encoding != "4.x" else 0
                if kind == "slab":
                    put(pfn, b"".join(bytes(self._rec(flags=zb | slab_flag, mapping=mapping, mapcount=mc, refcount=1))
                                      for _ in range(n)))
                else:
                    hr = self._rec(flags=zb | slab_flag | head, mapping=mapping, mapcount=mc, refcount=1)
                    put(pfn, self._compound(pfn, order, hr))
            elif kind == "pcp_free":
                # free pages on a per-CPU list (real 6.12: ~11 % of freed pages): not buddy,
                # no type, refcount 0, linked through lru to a list head in per-CPU memory;
                # nothing in the struct page says "free", so they are kept
                head_va = 0xFFFF888FFF43C470 + (pfn % 64) * 0x40
                nodes = [head_va] + [self.struct_va(pfn + i) + o["lru"] for i in range(n)] + [head_va]
                recs = bytearray()
                for i in range(n):
                    r = self._rec(flags=zb, mapcount=-1, refcount=0)
                    struct.pack_into("<QQ", r, o["lru"], nodes[i + 2], nodes[i])
                    recs += r
                put(pfn, bytes(recs))
            elif kind == "hwpoison":
                put(pfn, bytes(self._rec(flags=zb | hwp, mapcount=-1, refcount=1)) * n)
            elif kind == "offline":
                put(pfn, bytes(self._rec(flags=zb, mapcount=T["PAGE_OFFLINE_MAPCOUNT_VALUE"], refcount=1)) * n)
            elif kind == "trap_order":      # buddy with an order beyond the free lists
                put(pfn, bytes(self._rec(flags=zb, mapcount=buddy, private=self.nr_orders + 3)))
            elif kind == "trap_misaligned":  # buddy of order 3 at an odd pfn
                put(pfn, bytes(self._rec(flags=zb, mapcount=buddy, private=3)))
            elif kind == "trap_bigorder":    # anonymous compound head with an absurd order
                hr = self._rec(flags=zb | lru | head, mapping=anon(pfn), mapcount=0, refcount=1)
                p1 = self._tail(pfn, pfn + 1, 1)
                if self.enc["order"] == "flags":
                    struct.pack_into("<Q", p1, o["flags"], struct.unpack_from("<Q", p1, o["flags"])[0] | 45)
                elif self.enc["order"] == "u8":
                    p1[o["compound_order"]] = 45
                elif self.enc["order"] == "folio_u8":
                    p1[self.enc["folio_off"]["_folio_order"] - 64] = 45
                else:
                    struct.pack_into("<H", p1, o["compound_order"], 45)
                put(pfn, bytes(hr) + bytes(p1))
            elif kind == "trap_tails":       # cache head of order 2 whose tails are not its tails
                hr = self._rec(flags=zb | lru | head, mapping=fmap(pfn), mapcount=-1, refcount=1)
                p1 = self._page1(pfn, order)
                rest = self._rec(flags=zb | 1, mapcount=-1, refcount=1)     # plain pages
                put(pfn, bytes(hr) + bytes(p1) + bytes(rest) * 2)
            else:
                raise AssertionError(kind)

    def class_of_seg(self, pfn):
        import bisect
        starts = getattr(self, "_seg_starts", None)
        if starts is None:
            starts = self._seg_starts = [s[0] for s in self.segs]
        i = bisect.bisect_right(starts, pfn) - 1
        if i >= 0 and self.segs[i][0] <= pfn < self.segs[i][0] + self.segs[i][1]:
            return self.segs[i][4]
        return None

    def _zones(self):
        pg = self.pgdat_phys
        B = _BASE
        nz = 3 if self.max_pfn > (1 << 20) else 2
        spans = [(0, 4096), (4096, min(self.max_pfn, 1 << 20)), (1 << 20, self.max_pfn)]
        for z in range(nz):
            zp = pg + B["OFFSET(pglist_data.node_zones)"] + z * B["SIZE(zone)"]
            self._write(zp + B["OFFSET(zone.vm_stat)"] + 8 * B["NUMBER(NR_FREE_PAGES)"],
                        struct.pack("<q", self.free_per_zone[z]))
            self._write(zp + B["OFFSET(zone.spanned_pages)"], struct.pack("<Q", max(0, spans[z][1] - spans[z][0])))
        self._write(pg + B["OFFSET(pglist_data.nr_zones)"], struct.pack("<i", nz))
        self._write(pg + B["OFFSET(pglist_data.node_spanned_pages)"], struct.pack("<Q", self.max_pfn))
        self.nr_free_pages = sum(self.free_per_zone)

    def _finish_runs(self):
        """Class runs over every RAM pfn: planned segments, metadata pages, text."""
        meta = self._meta_pages
        for a, n in getattr(self, "_foreign", ()):
            meta.update(range(a // PAGE, (a + n - 1) // PAGE + 1))
        runs = []

        def emit(a, b, c):
            if b <= a:
                return
            if runs and runs[-1][2] == c and runs[-1][1] == a:
                runs[-1] = (runs[-1][0], b, c)
            else:
                runs.append((a, b, c))

        def split_meta(a, b, c):
            """[a, b) of class c, except pages written with metadata."""
            cur = a
            for p in self._meta_sorted_in(a, b):
                emit(cur, p, c)
                emit(p, p + 1, "metadata")
                cur = p + 1
            emit(cur, b, c)

        self._meta_list = sorted(meta)
        area = (self._area_start // PAGE, self._area_end // PAGE)
        items = [(a, a + n, c) for a, n, _, _, c in self.segs] + [(area[0], area[1], "zero")]
        items.sort()
        for a, b, c in items:
            split_meta(a, b, c)
        self.runs = runs
        self._run_starts = [r[0] for r in runs]

    def _meta_sorted_in(self, a, b):
        import bisect
        lst = self._meta_list
        i = bisect.bisect_left(lst, a)
        while i < len(lst) and lst[i] < b:
            yield lst[i]
            i += 1

    def _vmcoreinfo(self):
        e = self.enc
        L = {}
        L[f"SYMBOL({e['pgt']})"] = f"{self.va_image(self.pgd_phys):x}"
        L["SYMBOL(swapper_pg_dir)"] = f"{self.va_image(self.pgd_phys):x}"
        L["SYMBOL(_stext)"] = f"{KMAP + self.kernel_text[0] - self.phys_base:x}"
        L["SYMBOL(node_online_map)"] = f"{self.va_image(self.vars_phys + 64):x}"
        L["SYMBOL(node_data)"] = f"{self.va_image(self.node_data_phys):x}"
        if self.memory_model == "flatmem":
            L["SYMBOL(mem_map)"] = f"{self.mem_map_sym:x}"
        else:
            L["SYMBOL(mem_section)"] = f"{self.mem_section_sym:x}"
            L["LENGTH(mem_section)"] = str(self.nr_roots)
        for k, v in _BASE.items():
            L[k] = str(v)
        L["SIZE(free_area)"], L["LENGTH(free_area.free_list)"] = map(str, e["free_area"])
        if e["section_keys"]:
            L["NUMBER(SECTION_SIZE_BITS)"] = "27"
        if e["l5_key"]:
            L["NUMBER(MAX_PHYSMEM_BITS)"] = "52" if self.five_level else "46"
        for name, v in e["off"].items():
            L[f"OFFSET(page.{name})"] = str(v)
        for name, v in e.get("folio_off", {}).items():
            L[f"OFFSET(folio.{name})"] = str(v)
        for name, v in e["pg"].items():
            L[f"NUMBER({name})"] = str(v)
        L["NUMBER(PG_head_mask)"] = str(self.head_mask)
        for name, v in e["types"].items():
            L[f"NUMBER({name})"] = str(v)
        if e["dtor"] is not None:
            L["NUMBER(HUGETLB_PAGE_DTOR)"] = str(e["dtor"])
        L["NUMBER(phys_base)"] = str(self.phys_base)
        L["KERNELOFFSET"] = "0"
        if e["l5_key"]:
            L["NUMBER(pgtable_l5_enabled)"] = "1" if self.five_level else "0"
        L["NUMBER(sme_mask)"] = str(self.sme_bit)
        for line in self.extra_keys:
            k, v = line.split("=", 1)
            L[k] = v
        self.lines = [f"{k}={v}" for k, v in L.items() if k not in self.drop_keys]
