# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Per-page classification of struct page records, in C with the GIL released.

``scan(records, start_pfn, npfn, keep, params, carry, counts)``

* ``records``: bytes-like, >= npfn records of ``params.struct_size`` bytes for
  consecutive pfns from start_pfn (one more record, when available, lets the
  last page's compound order be read from its page[1]);
* ``keep``: writable LSB-first bitmap, bit i = pfn start+i, set = present;
  bits of dropped pages are cleared;
* ``carry``: tuple (until_pfn, cls, head_va, verify) from the previous batch
  (a block that extends past its end), or None; the new carry is returned;
* ``counts``: writable array('Q') of NCOUNTS counters, incremented.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy

# class indexes (counts[]) -- keep in sync with fastdump.kernel.pagetypes.CLASSES
DEF C_FREE = 0
DEF C_CACHE = 1
DEF C_CACHE_PRI = 2
DEF C_USER = 3
DEF C_HWPOISON = 4
DEF C_OFFLINE = 5
DEF C_UNCLASSIFIED = 6
DEF C_FREE_SEEN = 7       # buddy/unaccepted pages seen (any dump level), for the self-check
DEF C_PROTECTED = 8       # would have been dropped but lie in the kernel image
DEF C_SLAB = 9            # slab pages seen (kept)
NCOUNTS = 10

DEF TYPE_NONE = 0
DEF TYPE_FULL = 1
DEF TYPE_TOPBYTE = 2
DEF ORDER_NONE = 0
DEF ORDER_U8 = 1
DEF ORDER_FLAGS = 2
DEF HUGETLB_NONE = 0
DEF HUGETLB_DTOR = 1
DEF HUGETLB_FLAG = 2
DEF HUGETLB_TYPE = 3

DEF MAX_COMPOUND_ORDER = 30


cdef struct Params:
    int rec
    int off_flags, off_mapping, off_mapcount, off_private, off_chead
    uint64_t lru, private_, swapcache, swapbacked, slab, hwpoison, head, hugetlb_flag
    int type_mode
    int has_buddy, has_offline, has_slabtype, has_hugetlbtype, has_unaccepted
    uint32_t buddy, offline, slabtype, hugetlbtype, unaccepted
    int order_mode, off_order
    int hugetlb_mode, off_dtor
    uint32_t hugetlb_dtor
    int nr_orders
    int section_shift
    uint64_t prot_start, prot_end
    uint64_t reserved           # PG_reserved (PG_private - 1), 0: guard the whole image
    uint64_t va0
    int have_va
    int level


cdef struct Carry:
    uint64_t until
    int cls
    uint64_t head_va
    int verify


cdef inline uint64_t rd64(const uint8_t* p, int off) noexcept nogil:
    cdef uint64_t v
    if off < 0:
        return 0
    memcpy(&v, p + off, 8)
    return v


cdef inline uint32_t rd32(const uint8_t* p, int off) noexcept nogil:
    cdef uint32_t v
    if off < 0:
        return 0xFFFFFFFFu
    memcpy(&v, p + off, 4)
    return v


cdef inline int type_is(const Params* P, uint32_t mc, int has, uint32_t val) noexcept nogil:
    if not has:
        return 0
    if P.type_mode == TYPE_TOPBYTE:
        return (mc >> 24) == (val >> 24)
    if P.type_mode == TYPE_FULL:
        return mc == val
    return 0


cdef inline int tail_of(const Params* P, const uint8_t* rec, uint64_t my_va, uint64_t head_va) noexcept nogil:
    """1 if rec (at virtual my_va) is a tail page of the head at head_va (or an
    HVO "fake head", an alias of the head's struct page); 0 otherwise."""
    cdef uint64_t ci = rd64(rec, P.off_chead)
    cdef uint64_t m
    if ci & 1:
        if ci - 1 == head_va:
            return 1
        m = ci - 1
        if (m >> 63) and ((~m) & ((~m) + 1)) == 0 and (my_va & m) == head_va:
            return 1            # 7.1+ mask encoding
        return 0
    # HugeTLB vmemmap optimisation: vmemmap pages of tails alias the head's page
    if P.head and (rd64(rec, P.off_flags) & P.head) and (my_va & 4095) == 0:
        return 1
    return 0


cdef inline int image_page_released(const Params* P, const uint8_t* r) noexcept nogil:
    """Inside the kernel-image PT_LOAD: 1 if this page's own struct page says the
    kernel gave it back (freed __init memory, the text/rodata/data gaps, unused
    brk): PG_reserved clear and not slab.  Live image pages stay PG_reserved."""
    cdef uint64_t flags
    if P.reserved == 0:
        return 0
    flags = rd64(r, P.off_flags)
    if flags & P.reserved:
        return 0
    if P.slab and (flags & P.slab):
        return 0
    if type_is(P, rd32(r, P.off_mapcount), P.has_slabtype, P.slabtype):
        return 0
    return 1


cdef inline void drop(uint8_t* keep, Py_ssize_t i, int cls, uint64_t pfn, const uint8_t* r,
                      const Params* P, uint64_t* counts) noexcept nogil:
    cdef uint8_t bit = <uint8_t>(1 << (i & 7))
    if not (keep[i >> 3] & bit):
        return
    if P.prot_start <= pfn < P.prot_end and not image_page_released(P, r):
        counts[C_PROTECTED] += 1
        return
    keep[i >> 3] &= <uint8_t>~bit
    counts[cls] += 1


cdef inline int present(const uint8_t* keep, Py_ssize_t i) noexcept nogil:
    return (keep[i >> 3] >> (i & 7)) & 1


cdef void scan_c(const uint8_t* recs, Py_ssize_t nrec, uint64_t start, Py_ssize_t npfn,
                 uint8_t* keep, const Params* P, Carry* C, uint64_t* counts) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef uint64_t pfn, flags, mapping, private_, ci, nr, my_va, lim
    cdef uint32_t mc
    cdef const uint8_t* r
    cdef const uint8_t* r1
    cdef int is_slab, is_anon, is_cache, is_priv, hugetlb, order, cls, ok, lvl = P.level
    for i in range(npfn):
        pfn = start + i
        r = recs + i * P.rec
        my_va = P.va0 + <uint64_t>i * P.rec
        if C.until > pfn:
            if C.verify and not (P.have_va and tail_of(P, r, my_va, C.head_va)):
                C.until = 0            # the block ends early: classify this page afresh
            else:
                drop(keep, i, C.cls, pfn, r, P, counts)
                continue
        C.until = 0
        flags = rd64(r, P.off_flags)
        if P.off_chead >= 0:
            ci = rd64(r, P.off_chead)
            if ci & 1:
                continue               # tail: decided with its head
        mc = rd32(r, P.off_mapcount)
        mapping = rd64(r, P.off_mapping)
        is_slab = 0
        if (P.slab and (flags & P.slab) != 0) or type_is(P, mc, P.has_slabtype, P.slabtype):
            is_slab = 1
        if is_slab:
            counts[C_SLAB] += 1
        # -- free (buddy) --------------------------------------------------
        if not is_slab and type_is(P, mc, P.has_buddy, P.buddy):
            private_ = rd64(r, P.off_private)
            if (P.off_private < 0 or private_ >= <uint64_t>P.nr_orders
                    or (pfn & ((1ULL << private_) - 1)) != 0
                    or (pfn >> P.section_shift) != ((pfn + (1ULL << private_) - 1) >> P.section_shift)):
                if present(keep, i):
                    counts[C_UNCLASSIFIED] += 1
                continue
            nr = 1ULL << private_
            counts[C_FREE_SEEN] += nr
            if lvl & 16:
                drop(keep, i, C_FREE, pfn, r, P, counts)
                if nr > 1:
                    C.until = pfn + nr
                    C.cls = C_FREE
                    C.verify = 0
            continue
        if type_is(P, mc, P.has_unaccepted, P.unaccepted):
            nr = 1ULL << (P.nr_orders - 1)
            if (pfn & (nr - 1)) != 0:
                if present(keep, i):
                    counts[C_UNCLASSIFIED] += 1
                continue
            counts[C_FREE_SEEN] += nr
            if lvl & 16:
                drop(keep, i, C_FREE, pfn, r, P, counts)
                C.until = pfn + nr
                C.cls = C_FREE
                C.verify = 0
            continue
        # -- compound head: order and hugetlb from page[1] -------------------
        order = 0
        hugetlb = 0
        if P.head and (flags & P.head):
            if i + 1 < nrec:
                r1 = r + P.rec
                if P.order_mode == ORDER_U8:
                    order = r1[P.off_order]
                elif P.order_mode == ORDER_FLAGS:
                    order = <int>(rd64(r1, P.off_flags) & 0xFF)
                if P.hugetlb_mode == HUGETLB_DTOR:
                    hugetlb = r1[P.off_dtor] == P.hugetlb_dtor
                elif P.hugetlb_mode == HUGETLB_FLAG:
                    hugetlb = (rd64(r1, P.off_flags) & P.hugetlb_flag) != 0
            if P.hugetlb_mode == HUGETLB_TYPE:
                hugetlb = type_is(P, mc, 1, P.hugetlbtype)
            if order >= MAX_COMPOUND_ORDER or (pfn & ((1ULL << order) - 1)) != 0:
                if present(keep, i):
                    counts[C_UNCLASSIFIED] += 1
                continue
            if order > 0 and not (P.off_chead >= 0 and P.have_va):
                order = 0              # cannot verify tails: head alone, tails kept
        is_anon = 1 if ((mapping & 1) != 0 and not is_slab) else 0
        is_priv = 1
        if P.private_:
            is_priv = 1 if (flags & P.private_) != 0 else 0
        is_cache = 0
        if P.lru and (flags & P.lru) != 0:
            is_cache = 1
        elif P.swapcache and (flags & P.swapcache) != 0 and (P.swapbacked == 0 or (flags & P.swapbacked) != 0):
            is_cache = 1
        cls = -1
        if (lvl & 2) and is_cache and not is_priv and not is_anon:
            cls = C_CACHE
        elif (lvl & 4) and is_cache and not is_anon:
            cls = C_CACHE_PRI if is_priv else C_CACHE
        elif (lvl & 8) and (is_anon or hugetlb) and not is_slab:
            cls = C_USER
        elif P.hwpoison and (flags & P.hwpoison):
            cls = C_HWPOISON
        elif not is_slab and type_is(P, mc, P.has_offline, P.offline):
            cls = C_OFFLINE
        if cls < 0:
            continue
        if cls == C_CACHE or cls == C_CACHE_PRI:
            if P.lru == 0 and P.swapcache == 0:
                continue
        nr = 1ULL << order
        if nr > 1:
            # verify the tails we can see now; the rest are verified as they come
            lim = nr
            if <uint64_t>(npfn - i) < lim:
                lim = <uint64_t>(npfn - i)
            ok = 1
            for j in range(1, <Py_ssize_t>lim):
                if i + j >= nrec or not tail_of(P, r + j * P.rec, my_va + <uint64_t>j * P.rec, my_va):
                    ok = 0
                    break
            if not ok:
                if present(keep, i):
                    counts[C_UNCLASSIFIED] += 1
                continue
        drop(keep, i, cls, pfn, r, P, counts)
        if nr > 1:
            C.until = pfn + nr
            C.cls = cls
            C.head_va = my_va
            C.verify = 1


cdef class ScanParams:
    cdef Params p

    def __init__(self, enc, *, level, section_shift, prot_start=0, prot_end=0, reserved_mask=0):
        p = &self.p
        p.rec = enc.struct_size
        p.off_flags = enc.off_flags
        p.off_mapping = enc.off_mapping
        p.off_mapcount = enc.off_mapcount
        p.off_private = enc.off_private
        p.off_chead = enc.off_chead
        p.lru = enc.lru_mask
        p.private_ = enc.private_mask
        p.swapcache = enc.swapcache_mask
        p.swapbacked = enc.swapbacked_mask
        p.slab = enc.slab_mask
        p.hwpoison = enc.hwpoison_mask
        p.head = enc.head_mask
        p.hugetlb_flag = enc.hugetlb_flag_mask
        p.type_mode = enc.type_mode
        p.has_buddy = enc.buddy_value >= 0 and enc.off_mapcount >= 0
        p.buddy = enc.buddy_value & 0xFFFFFFFF
        p.has_offline = enc.offline_value >= 0
        p.offline = enc.offline_value & 0xFFFFFFFF
        p.has_slabtype = enc.slab_value >= 0
        p.slabtype = enc.slab_value & 0xFFFFFFFF
        p.has_hugetlbtype = enc.hugetlb_value >= 0
        p.hugetlbtype = enc.hugetlb_value & 0xFFFFFFFF
        p.has_unaccepted = enc.unaccepted_value >= 0
        p.unaccepted = enc.unaccepted_value & 0xFFFFFFFF
        p.order_mode = enc.order_mode
        p.off_order = enc.off_order
        p.hugetlb_mode = enc.hugetlb_mode
        p.off_dtor = enc.off_dtor
        p.hugetlb_dtor = enc.hugetlb_dtor & 0xFF if enc.hugetlb_dtor >= 0 else 0xFFFF
        p.nr_orders = enc.nr_orders
        p.section_shift = section_shift
        p.prot_start = prot_start
        p.prot_end = prot_end
        p.reserved = reserved_mask
        p.va0 = 0
        p.have_va = 0
        p.level = level
        if p.off_flags < 0 or p.rec <= 0:
            raise ValueError("struct page layout unusable")
        if p.off_mapping < 0 or p.off_chead < 0:
            # no mapping, or tail pages cannot be told from pages of their own
            # (7.x compound_info unknown): page cache and user pages are kept
            p.level &= ~(2 | 4 | 8)


def scan(const uint8_t[::1] records, uint64_t start_pfn, Py_ssize_t npfn, uint8_t[::1] keep,
         ScanParams params, carry, uint64_t[::1] counts, va0=None):
    """Classify npfn pages; returns the carry for the next batch (or None)."""
    cdef Params P = params.p
    cdef Carry C
    cdef Py_ssize_t nrec
    if P.rec <= 0:
        raise ValueError("bad record size")
    nrec = records.shape[0] // P.rec
    if nrec < npfn:
        raise ValueError(f"{nrec} records for {npfn} pfns")
    if keep.shape[0] * 8 < npfn:
        raise ValueError("keep bitmap too small")
    if counts.shape[0] < NCOUNTS:
        raise ValueError("counts too small")
    if va0 is None:
        P.have_va = 0
        P.va0 = 0
    else:
        P.have_va = 1
        P.va0 = va0
    if carry is None:
        C.until = 0
        C.cls = 0
        C.head_va = 0
        C.verify = 0
    else:
        C.until, C.cls, C.head_va, C.verify = carry
    if npfn == 0:
        return carry
    with nogil:
        scan_c(&records[0], nrec, start_pfn, npfn, &keep[0], &P, &C, &counts[0])
    if C.until > start_pfn + <uint64_t>npfn:
        return (C.until, C.cls, C.head_va, C.verify)
    return None
