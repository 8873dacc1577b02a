"""Which struct page encoding this kernel uses, decided from which VMCOREINFO keys
exist (never from OSRELEASE).

The result, :class:`PageEncoding`, is a flat set of offsets, masks and
constants that the C scanner (``fastdump._pagescan``) consumes, plus the list
of things that were not understood (each one keeps a class of pages instead of
guessing).

Eras (x86_64), as seen in VMCOREINFO:

* page type in ``_mapcount``: -128 (2.6.38-4.17), "type bit cleared" values
  such as -129 (4.18-6.11; whole 32-bit compare), one type in the top byte
  (6.12+, PGTY_*; exported values have zero low 24 bits: compare the top byte);
* slab: flag bit ``PG_slab`` (<= 6.9) or ``PAGE_SLAB_MAPCOUNT_VALUE`` (6.10+);
* compound order: ``OFFSET(page.compound_order)`` in page[1] (<= 6.2),
  ``OFFSET(folio._folio_order)`` (6.3-6.5), page[1].flags & 0xff (6.6+, seen
  from ``PG_hugetlb`` or ``PAGE_HUGETLB_MAPCOUNT_VALUE``);
* hugetlb: ``compound_dtor == HUGETLB_PAGE_DTOR`` (<= 6.5), page[1] flag
  ``PG_hugetlb`` (6.6-6.8), head page type ``PAGE_HUGETLB_MAPCOUNT_VALUE`` (6.9+);
* tail pages: ``OFFSET(page.compound_head)``, renamed ``compound_info`` in 7.1
  (tails then hold either head|1 or a mask|1 applied to their own address).
"""


from .._pageclass import HugetlbMode, OrderMode, PageClass, TypeMode
from .levels import DumpLevel

U32 = 0xFFFFFFFF

# the layout modes the compiled scan takes (fastdump/_pageclass.pxd defines them once)
TYPE_NONE, TYPE_FULL, TYPE_TOPBYTE = TypeMode
ORDER_NONE, ORDER_U8, ORDER_FLAGS = OrderMode
HUGETLB_NONE, HUGETLB_DTOR, HUGETLB_FLAG, HUGETLB_TYPE = HugetlbMode

# the names judge.py uses
DL_ZERO, DL_CACHE, DL_CACHE_PRI, DL_USER, DL_FREE = (DumpLevel.ZERO, DumpLevel.CACHE, DumpLevel.CACHE_PRIVATE,
                                                   DumpLevel.USER, DumpLevel.FREE)
#: the classes a page is judged into, named as in stats and estimates, in the order of the
#: scan's counters (``PageClass``, shared with the compiled scan)
CLASSES = tuple(c.name[2:].lower() for c in PageClass if c < PageClass.C_FREE_SEEN)


class PageEncoding:
    """Offsets, masks and modes of one kernel's struct page, filled in by ``detect``
    (a plain class: dataclasses would cost every start its import)."""

    struct_size: int = 64
    off_flags: int = 0
    off_mapping: int = -1
    off_mapcount: int = -1
    off_private: int = -1
    off_chead: int = -1
    off_lru: int = -1
    lru_mask: int = 0
    private_mask: int = 0
    swapcache_mask: int = 0
    swapbacked_mask: int = 0       # 0: unknown -> swapcache alone means cache
    slab_mask: int = 0
    hwpoison_mask: int = 0
    head_mask: int = 0
    hugetlb_flag_mask: int = 0     # page[1].flags bit (6.6-6.8)
    reserved_mask: int = 0         # PG_reserved, inferred: never exported, always PG_private - 1
    type_mode: int = TYPE_NONE
    buddy_value: int = -1          # -1: absent (values are u32 otherwise)
    offline_value: int = -1
    slab_value: int = -1
    hugetlb_value: int = -1
    unaccepted_value: int = -1
    order_mode: int = ORDER_NONE
    off_order: int = -1            # within page[1]
    hugetlb_mode: int = HUGETLB_NONE
    off_dtor: int = -1             # within page[1]
    hugetlb_dtor: int = -1
    nr_orders: int = 11
    chead_name: str = ""

    def __init__(self):
        self.problems = []      # what was not understood

    def can(self, bit):
        """Can pages of dump-level ``bit`` be recognised at all?"""
        if bit == DL_FREE:
            return self.buddy_value >= 0 and self.off_mapcount >= 0 and self.off_private >= 0
        if bit in (DL_CACHE, DL_CACHE_PRI):
            return bool(self.lru_mask) and self.off_mapping >= 0 and self.off_chead >= 0
        if bit == DL_USER:
            return self.off_mapping >= 0 and self.off_chead >= 0
        return True


def _flag(vi, name):
    v = vi.numbers.get(name)
    if v is None or not 0 <= v < 64:
        return 0
    return 1 << v


def detect(vi, page_size=4096):
    """Build a :class:`PageEncoding` from a :class:`~fastdump.kernel.vmcoreinfo.VmcoreInfo`."""
    e = PageEncoding()
    P = e.problems
    e.struct_size = vi.sizes.get("page", 0)
    if not e.struct_size:
        P.append("SIZE(page) missing")
    off = vi.offsets
    e.off_flags = off.get("page.flags", -1)
    if e.off_flags < 0:
        P.append("OFFSET(page.flags) missing")
    e.off_mapping = off.get("page.mapping", -1)
    e.off_mapcount = off.get("page._mapcount", -1)
    e.off_private = off.get("page.private", -1)
    e.off_lru = off.get("page.lru", -1)
    if "page.compound_info" in off:
        e.off_chead, e.chead_name = off["page.compound_info"], "compound_info"
    elif "page.compound_head" in off:
        e.off_chead, e.chead_name = off["page.compound_head"], "compound_head"
    else:
        P.append("no OFFSET(page.compound_head)/OFFSET(page.compound_info): tail pages "
                 "cannot be recognised, so page cache and user pages are kept")
    for name, o in (("flags", e.off_flags), ("mapping", e.off_mapping), ("_mapcount", e.off_mapcount),
                    ("private", e.off_private), (e.chead_name or "compound_head", e.off_chead)):
        if o >= 0 and e.struct_size and o + (4 if name == "_mapcount" else 8) > e.struct_size:
            P.append(f"OFFSET(page.{name})={o} lies outside SIZE(page)={e.struct_size}")
            if name == "_mapcount":
                e.off_mapcount = -1
            elif name == "mapping":
                e.off_mapping = -1
            elif name == "private":
                e.off_private = -1
            elif name == "flags":
                e.off_flags = -1
            else:
                e.off_chead = -1
    if e.off_mapping < 0:
        P.append("OFFSET(page.mapping) missing: cache and user pages are kept")
    # flag bits
    e.lru_mask = _flag(vi, "PG_lru")
    e.private_mask = _flag(vi, "PG_private")
    e.swapcache_mask = _flag(vi, "PG_swapcache")
    e.swapbacked_mask = _flag(vi, "PG_swapbacked")
    e.slab_mask = _flag(vi, "PG_slab")
    e.hwpoison_mask = _flag(vi, "PG_hwpoison")
    e.hugetlb_flag_mask = _flag(vi, "PG_hugetlb")
    # PG_reserved is not in VMCOREINFO, but every kernel since 2.6 declares it right
    # before PG_private (4.9: 10/11, 5.10 and 6.1: 12/13, 6.12 and 7.x: 13/14).  The
    # judge uses it only after checking it on pages that must be reserved (the
    # kernel image start), to tell released kernel-image pages from live ones.
    pp = vi.numbers.get("PG_private")
    if pp is not None and 1 <= pp < 64:
        e.reserved_mask = 1 << (pp - 1)
    hm = vi.numbers.get("PG_head_mask")
    if hm is not None and hm > 0 and hm & (hm - 1) == 0:
        e.head_mask = hm
    elif "PG_head" in vi.numbers:
        e.head_mask = _flag(vi, "PG_head")
    if not e.lru_mask:
        P.append("NUMBER(PG_lru) missing: page cache is kept")
    if not e.private_mask and e.lru_mask:
        P.append("NUMBER(PG_private) missing: all page cache treated as private (kept below -d 4)")
    if not e.head_mask:
        P.append("NUMBER(PG_head_mask) missing: compound pages are handled page by page")
    # page types in _mapcount
    nums = vi.numbers

    def u32(name):
        v = nums.get(name)
        return None if v is None else v & U32

    buddy = u32("PAGE_BUDDY_MAPCOUNT_VALUE")
    if buddy is not None and e.off_mapcount >= 0:
        e.buddy_value = buddy
        if buddy & 0x00FFFFFF == 0:
            e.type_mode = TYPE_TOPBYTE
        else:
            e.type_mode = TYPE_FULL
        for attr, name in (("offline_value", "PAGE_OFFLINE_MAPCOUNT_VALUE"),
                           ("slab_value", "PAGE_SLAB_MAPCOUNT_VALUE"),
                           ("hugetlb_value", "PAGE_HUGETLB_MAPCOUNT_VALUE"),
                           ("unaccepted_value", "PAGE_UNACCEPTED_MAPCOUNT_VALUE")):
            v = u32(name)
            if v is None:
                continue
            if (e.type_mode == TYPE_TOPBYTE) != (v & 0x00FFFFFF == 0):
                P.append(f"NUMBER({name})={v:#x} does not follow the encoding of "
                         f"PAGE_BUDDY_MAPCOUNT_VALUE={buddy:#x}; ignored")
                continue
            if e.type_mode == TYPE_TOPBYTE and v >> 24 == buddy >> 24 or v == buddy:
                P.append(f"NUMBER({name}) equals the buddy value; ignored")
                continue
            setattr(e, attr, v)
        if e.type_mode == TYPE_TOPBYTE and buddy >> 24 in (0x00, 0xFF):
            P.append(f"PAGE_BUDDY_MAPCOUNT_VALUE={buddy:#x} cannot be told from a mapcount")
            e.buddy_value = -1
    elif buddy is None:
        if "PG_buddy" in nums:
            P.append("free pages marked by PG_buddy (<= 2.6.37) are not supported: free pages kept")
        else:
            P.append("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE) missing: free pages cannot be recognised")
    else:
        P.append("OFFSET(page._mapcount) missing: free pages cannot be recognised")
    if e.off_private < 0 and e.buddy_value >= 0:
        P.append("OFFSET(page.private) missing: buddy order unknown, free pages kept")
    if e.slab_value < 0 and not e.slab_mask:
        P.append("neither NUMBER(PG_slab) nor NUMBER(PAGE_SLAB_MAPCOUNT_VALUE): slab pages "
                 "are not recognised (the anonymous-mapping test then trusts page.mapping)")
    # compound order and hugetlb
    sp = e.struct_size
    if "page.compound_order" in off:
        e.order_mode, e.off_order = ORDER_U8, off["page.compound_order"]
    elif "folio._folio_order" in off:
        e.order_mode, e.off_order = ORDER_U8, off["folio._folio_order"] - sp
    elif "PG_hugetlb" in nums or "PAGE_HUGETLB_MAPCOUNT_VALUE" in nums or "PAGE_SLAB_MAPCOUNT_VALUE" in nums:
        e.order_mode = ORDER_FLAGS
    else:
        P.append("compound order unknown (no OFFSET(page.compound_order), OFFSET(folio._folio_order) "
                 "or a 6.6+ marker): only head pages of compound pages are excluded")
    if e.order_mode == ORDER_U8 and not 0 <= e.off_order < sp:
        P.append(f"compound order offset {e.off_order} outside struct page; order unknown")
        e.order_mode, e.off_order = ORDER_NONE, -1
    if e.hugetlb_value >= 0:
        e.hugetlb_mode = HUGETLB_TYPE
    elif e.hugetlb_flag_mask:
        e.hugetlb_mode = HUGETLB_FLAG
    elif "HUGETLB_PAGE_DTOR" in nums:
        dt = off.get("page.compound_dtor")
        if dt is None and "folio._folio_dtor" in off:
            dt = off["folio._folio_dtor"] - sp
        if dt is not None and 0 <= dt < sp:
            e.hugetlb_mode, e.off_dtor, e.hugetlb_dtor = HUGETLB_DTOR, dt, nums["HUGETLB_PAGE_DTOR"] & 0xFF
        else:
            P.append("NUMBER(HUGETLB_PAGE_DTOR) without a compound_dtor offset: hugetlb pages kept")
    nro = vi.lengths.get("zone.free_area")
    if nro is not None and 1 <= nro <= 20:
        e.nr_orders = nro
    elif nro is not None:
        P.append(f"LENGTH(zone.free_area)={nro} is implausible; using 11")
    return e
