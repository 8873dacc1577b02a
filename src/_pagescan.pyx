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

``Scanner.scan_chunks`` does the same for a whole pfn range without a Python call
per batch: it reads each batch's records straight from the source (a pointer into an
mmap window, or one pread per physically contiguous run) with the GIL released, so
one Scanner per thread scans its own part of memory in parallel.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memset
from libc.errno cimport errno
from array import array
from posix.unistd cimport pread
from source_file cimport copy_extents, map_window, mappable_bytes
from posix.mman cimport mmap, munmap, PROT_READ, MAP_SHARED, MAP_FAILED

cdef extern from "fd_sigbus.h":
    int fd_bus_install() nogil
    int fd_bus_arm() nogil
    void fd_bus_disarm() nogil

fd_bus_install()

# class indexes (counts[]) and layout modes: one definition, fastdump/_pageclass.pxd
from fastdump._pageclass cimport (
    C_FREE, C_CACHE, C_CACHE_PRIVATE, C_USER, C_HWPOISON, C_OFFLINE, C_UNCLASSIFIED, C_FREE_SEEN,
    C_PROTECTED, C_SLAB, NCOUNTS, TYPE_FULL, TYPE_TOPBYTE, ORDER_U8, ORDER_FLAGS, HUGETLB_DTOR,
    HUGETLB_FLAG, HUGETLB_TYPE)

cdef enum:
    MAX_COMPOUND_ORDER = 30
    MAX_REC = 4096              # bytes of one struct page at most (limits.check allows 512)


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
        counts[<int>C_PROTECTED] += 1
        return
    keep[i >> 3] &= <uint8_t>~bit
    counts[cls] += 1


cdef inline int present(const uint8_t* keep, Py_ssize_t i) noexcept nogil:
    return (keep[i >> 3] >> (i & 7)) & 1


cdef void scan_c(const uint8_t* recs, Py_ssize_t nrec, uint64_t start, Py_ssize_t npfn,
                 uint8_t* keep, Py_ssize_t kb, const Params* P, Carry* C, uint64_t* counts) noexcept nogil:
    """Classify npfn pages from ``start``; bit kb+i of ``keep`` is pfn start+i."""
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
                drop(keep, kb + i, C.cls, pfn, r, P, counts)
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
            counts[<int>C_SLAB] += 1
        # -- free (buddy) --------------------------------------------------
        if not is_slab and type_is(P, mc, P.has_buddy, P.buddy):
            private_ = rd64(r, P.off_private)
            if (P.off_private < 0 or private_ >= <uint64_t>P.nr_orders
                    or (pfn & ((1ULL << private_) - 1)) != 0
                    or (pfn >> P.section_shift) != ((pfn + (1ULL << private_) - 1) >> P.section_shift)):
                if present(keep, kb + i):
                    counts[<int>C_UNCLASSIFIED] += 1
                continue
            nr = 1ULL << private_
            counts[<int>C_FREE_SEEN] += nr
            if lvl & 16:
                drop(keep, kb + i, C_FREE, pfn, r, P, counts)
                if nr > 1:
                    C.until = pfn + nr
                    C.cls = C_FREE
                    C.verify = 0
            continue
        if type_is(P, mc, P.has_unaccepted, P.unaccepted):
            nr = 1ULL << (P.nr_orders - 1)
            if (pfn & (nr - 1)) != 0:
                if present(keep, kb + i):
                    counts[<int>C_UNCLASSIFIED] += 1
                continue
            counts[<int>C_FREE_SEEN] += nr
            if lvl & 16:
                drop(keep, kb + i, C_FREE, pfn, r, P, counts)
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
                if present(keep, kb + i):
                    counts[<int>C_UNCLASSIFIED] += 1
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
            cls = C_CACHE_PRIVATE if is_priv else C_CACHE
        elif (lvl & 8) and (is_anon or hugetlb) and not is_slab:
            cls = C_USER
        elif P.hwpoison and (flags & P.hwpoison):
            cls = C_HWPOISON
        elif not is_slab and type_is(P, mc, P.has_offline, P.offline):
            cls = C_OFFLINE
        if cls < 0:
            continue
        if cls == C_CACHE or cls == C_CACHE_PRIVATE:
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
                if present(keep, kb + i):
                    counts[<int>C_UNCLASSIFIED] += 1
                continue
        drop(keep, kb + i, cls, pfn, r, P, counts)
        if nr > 1:
            C.until = pfn + nr
            C.cls = cls
            C.head_va = my_va
            C.verify = 1


cdef inline bint _fits(int off, int width, int rec) noexcept:
    """A field at ``off`` (-1: absent) of ``width`` bytes lies inside a record."""
    return off == -1 or (off >= 0 and off + width <= rec)


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
        if p.off_flags < 0 or not 0 < p.rec <= MAX_REC or not _fits(p.off_flags, 8, p.rec) \
                or not _fits(p.off_mapping, 8, p.rec) or not _fits(p.off_private, 8, p.rec) \
                or not _fits(p.off_chead, 8, p.rec) or not _fits(p.off_mapcount, 4, p.rec) \
                or (p.order_mode == ORDER_U8 and not 0 <= p.off_order < p.rec) \
                or (p.hugetlb_mode == HUGETLB_DTOR and not 0 <= p.off_dtor < p.rec) \
                or not 0 < p.nr_orders < 64 or not 0 < p.section_shift < 64:
            raise ValueError("struct page layout unusable")
        if p.off_mapping < 0 or p.off_chead < 0:
            # no mapping, or tail pages cannot be told from pages of their own
            # (7.x compound_info unknown): page cache and user pages are kept
            p.level &= ~(2 | 4 | 8)


cdef int _take_carry(carry, Carry* C) except -1:
    """A carry as scan() and scan_chunks() return it; its class indexes the counts."""
    C.until, C.cls, C.head_va, C.verify = carry
    if not 0 <= C.cls < NCOUNTS:
        raise ValueError("carry of no page class")
    return 0


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
    if npfn < 0:
        raise ValueError("negative pfn count")
    if carry is None:
        C.until = 0
        C.cls = 0
        C.head_va = 0
        C.verify = 0
    else:
        _take_carry(carry, &C)
    if npfn == 0:
        return carry
    with nogil:
        scan_c(&records[0], nrec, start_pfn, npfn, &keep[0], 0, &P, &C, &counts[0])
    if C.until > start_pfn + <uint64_t>npfn:
        return (C.until, C.cls, C.head_va, C.verify)
    return None


# ------------------------------------------------------------------ whole ranges --

cdef enum:
    BATCH = 8192              # pfns per batch: the same batches as one scan() call each
    SMALL = 64                # a batch that cannot be read whole is tried in pieces of this
    MAP_WINDOW = 4194304      # bytes mapped at once per scanner (counted in RSS while mapped)
    CHUNK_FIELDS = 6          # a, b, has_va, va, first span, end span

# follow_list's outcomes (kernel/pcp.py words them)
cdef enum:
    F_OK = 0
    F_TOO_MANY = 1
    F_BAD_PREV = 2
    F_REFERENCED = 3
    F_UNREADABLE = 4
    F_ERROR = -1               # read_phys raised (``error``)
    F_NO_MEMORY = -2
FOLLOW_OK, FOLLOW_TOO_MANY, FOLLOW_BAD_PREV, FOLLOW_REFERENCED, FOLLOW_UNREADABLE = (
    F_OK, F_TOO_MANY, F_BAD_PREV, F_REFERENCED, F_UNREADABLE)


cdef struct Span:
    uint64_t va, pa, n         # virtual va..va+n is physical pa..pa+n


cdef inline uint64_t bits_set(const uint8_t* keep, Py_ssize_t lo, Py_ssize_t n) noexcept nogil:
    cdef uint64_t c = 0
    cdef Py_ssize_t i
    for i in range(lo, lo + n):
        c += (keep[i >> 3] >> (i & 7)) & 1
    return c


cdef class Scanner:
    """One thread's struct page scanner (see ``scan_chunks``).

    Reads go to the source's file (``fd`` and its extents: physical start, end,
    file offset) through an mmap window or pread, or, for a source without a file
    (a kdump-compressed input), to ``read_phys(pa, n)``, which returns the bytes or
    None when they cannot be read.  A read is all or nothing, as a batch read was."""
    cdef ScanParams params
    cdef int fd
    cdef readonly bint use_mmap
    cdef bint mmap_broken
    cdef uint64_t map_limit
    cdef uint64_t* ext
    cdef size_t n_ext
    cdef object read_phys
    cdef object error
    cdef uint8_t* buf
    cdef uint8_t* map_base
    cdef uint64_t map_off, map_len
    cdef uint64_t nbytes
    cdef readonly int sigbus_batches
    # a batch's state before it ran, to run it again with pread after a SIGBUS
    cdef uint8_t saved_keep[1026]       # BATCH / 8 + 2
    cdef uint64_t saved_counts[NCOUNTS]
    cdef Carry saved_carry
    cdef uint64_t saved_nbytes
    # follow_list's entries (heap: a SIGBUS jump leaves them as they were)
    cdef uint64_t* ring
    cdef uint64_t ring_n, ring_cap

    def __cinit__(self, ScanParams params, *, int fd=-1, extents=None, bint use_mmap=False, read_phys=None):
        self.params = params
        self.fd = fd
        self.read_phys = read_phys
        if (fd < 0) == (read_phys is None):
            raise ValueError("a Scanner reads either a file (fd, extents) or read_phys")
        self.use_mmap = use_mmap and fd >= 0
        self.map_limit = mappable_bytes(fd)
        self.buf = <uint8_t*>malloc(<size_t>(BATCH + 1) * params.p.rec)
        if self.buf == NULL:
            raise MemoryError()
        if fd >= 0:
            self.ext = copy_extents(extents, &self.n_ext)

    def __dealloc__(self):
        if self.map_base != NULL:
            munmap(self.map_base, self.map_len)
        free(self.buf)
        free(self.ext)
        free(self.ring)

    # -- reading ----------------------------------------------------------------
    cdef const uint8_t* _map(self, uint64_t off, size_t n, uint64_t lo, uint64_t hi) noexcept nogil:
        """File bytes [off, off+n) through this scanner's window, which never leaves the
        extent's file bytes [lo, hi) (/proc/vmcore maps no two PT_LOADs at once) nor
        the file; NULL when they cannot be mapped (then pread from here on)."""
        cdef uint64_t moff
        if not self.use_mmap or self.mmap_broken or off + n > self.map_limit:
            return NULL
        if self.map_base == NULL or off < self.map_off or off + n > self.map_off + self.map_len:
            if self.map_base != NULL:
                munmap(self.map_base, self.map_len)
                self.map_base = NULL
            moff = map_window(off, n, lo, hi, self.map_limit, MAP_WINDOW, &self.map_len)
            self.map_base = <uint8_t*>mmap(NULL, self.map_len, PROT_READ, MAP_SHARED, self.fd, moff)
            if <void*>self.map_base == MAP_FAILED:
                self.map_base = NULL
                self.mmap_broken = True
                return NULL
            self.map_off = moff
        return self.map_base + (off - self.map_off)

    cdef int _read_file(self, uint64_t pa, size_t n, uint8_t* dst, const uint8_t** out) noexcept nogil:
        """Physical [pa, pa+n) from the file: 0, or 1 when some bytes are not in the dump
        or cannot be read.  With ``out`` and a mapping, a pointer into it (no copy)."""
        cdef Py_ssize_t lo = 0, hi = <Py_ssize_t>self.n_ext, i
        cdef uint64_t* x
        cdef uint64_t cur = pa, end = pa + n, take, off
        cdef const uint8_t* p
        cdef ssize_t got
        while lo < hi:                      # the last extent starting at or before pa
            i = (lo + hi) >> 1
            if self.ext[3 * i] <= pa:
                lo = i + 1
            else:
                hi = i
        i = lo - 1
        if i < 0:
            return 1
        while cur < end:
            if i >= <Py_ssize_t>self.n_ext:
                return 1
            x = self.ext + 3 * i
            if x[0] > cur or x[1] <= cur:
                return 1
            take = min(end, x[1]) - cur
            off = x[2] + (cur - x[0])
            p = self._map(off, take, x[2], x[2] + (x[1] - x[0]))
            if p != NULL and out != NULL and take == n:
                out[0] = p
                return 0
            if p != NULL:
                memcpy(dst + (cur - pa), p, take)
            else:
                while take:
                    got = pread(self.fd, dst + (cur - pa), take, off)
                    if got <= 0:
                        return 1
                    cur += got
                    off += got
                    take -= got
                i += 1
                continue
            cur += take
            i += 1
        if out != NULL:
            out[0] = dst
        return 0

    cdef int _read_py(self, uint64_t pa, size_t n, uint8_t* dst) noexcept nogil:
        cdef const uint8_t[::1] data
        with gil:
            try:
                got = self.read_phys(pa, n)
                if got is None or len(got) != n:
                    return 1
                data = got
                memcpy(dst, &data[0], n)
                return 0
            except BaseException as e:
                self.error = e
                return -1

    cdef int _read(self, const Span* sp, Py_ssize_t nsp, uint64_t va, size_t n,
                   const uint8_t** out) noexcept nogil:
        """The n bytes at virtual ``va``: 0 (``out`` set), 1 when some are not translatable
        (no span) or not readable, -1 when read_phys raised (``error``)."""
        cdef Py_ssize_t lo = 0, hi = nsp, i
        cdef uint64_t done = 0, take, v
        cdef int rc
        if va + n < va:
            return 1
        while lo < hi:
            i = (lo + hi) >> 1
            if sp[i].va <= va:
                lo = i + 1
            else:
                hi = i
        i = lo - 1
        if i < 0 or sp[i].va + sp[i].n <= va:
            return 1
        if self.read_phys is None and va + n <= sp[i].va + sp[i].n:
            return self._read_file(sp[i].pa + (va - sp[i].va), n, self.buf, out)
        while done < n:
            v = va + done
            if i >= nsp or sp[i].va > v or sp[i].va + sp[i].n <= v:
                return 1
            take = min(n - done, sp[i].va + sp[i].n - v)
            if self.read_phys is None:
                rc = self._read_file(sp[i].pa + (v - sp[i].va), take, self.buf + done, NULL)
            else:
                rc = self._read_py(sp[i].pa + (v - sp[i].va), take, self.buf + done)
            if rc:
                return rc
            done += take
            i += 1
        out[0] = self.buf
        return 0

    # -- scanning ---------------------------------------------------------------
    cdef int _records(self, const Span* sp, Py_ssize_t nsp, uint64_t a, uint64_t b, uint64_t va,
                      uint8_t* keep, Py_ssize_t kb, Carry* C, uint64_t* counts) noexcept nogil:
        """Scan pfns [a, b) whose struct pages start at ``va`` if they can be read: 0,
        1 when they cannot, -1 on a Python error."""
        cdef const uint8_t* recs
        cdef Params P = self.params.p
        cdef int rc = self._read(sp, nsp, va, (b - a) * P.rec, &recs)
        if rc:
            return rc
        self.nbytes += (b - a) * P.rec
        P.va0, P.have_va = va, 1
        scan_c(recs, b - a, a, b - a, keep, kb, &P, C, counts)
        if C.until <= b:
            memset(C, 0, sizeof(Carry))
        return 0

    cdef int _batch(self, const Span* sp, Py_ssize_t nsp, uint64_t a, uint64_t b, uint64_t va,
                    uint8_t* keep, Py_ssize_t kb, Carry* C, uint64_t* counts) noexcept nogil:
        """One batch, as judge.py read it: its records and the next one (the last page's
        compound order), else its records alone, else in pieces of SMALL pfns; what
        cannot be read is kept and counted unclassified."""
        cdef const uint8_t* recs
        cdef Params P = self.params.p
        cdef uint64_t x, y
        cdef int rc = self._read(sp, nsp, va, (b - a + 1) * P.rec, &recs)
        if rc == 0:
            self.nbytes += (b - a + 1) * P.rec
            P.va0, P.have_va = va, 1
            scan_c(recs, b - a + 1, a, b - a, keep, kb, &P, C, counts)
            if C.until <= b:
                memset(C, 0, sizeof(Carry))
            return 0
        if rc < 0:
            return rc
        rc = self._records(sp, nsp, a, b, va, keep, kb, C, counts)
        if rc <= 0:
            return rc
        if b - a <= SMALL:
            counts[<int>C_UNCLASSIFIED] += bits_set(keep, kb, b - a)
            memset(C, 0, sizeof(Carry))
            return 0
        x = a
        while x < b:
            y = min(b, x + SMALL)
            rc = self._records(sp, nsp, x, y, va + (x - a) * P.rec, keep, kb + (x - a), C, counts)
            if rc < 0:
                return rc
            if rc:
                counts[<int>C_UNCLASSIFIED] += bits_set(keep, kb + (x - a), y - x)
                memset(C, 0, sizeof(Carry))
            x = y
        return 0

    cdef void _save(self, const uint8_t* keep, Py_ssize_t kb, uint64_t n, const Carry* C,
                    const uint64_t* counts) noexcept nogil:
        memcpy(self.saved_keep, keep + (kb >> 3), ((kb + n + 7) >> 3) - (kb >> 3))
        memcpy(self.saved_counts, counts, NCOUNTS * sizeof(uint64_t))
        self.saved_carry = C[0]
        self.saved_nbytes = self.nbytes

    cdef void _restore(self, uint8_t* keep, Py_ssize_t kb, uint64_t n, Carry* C, uint64_t* counts) noexcept nogil:
        memcpy(keep + (kb >> 3), self.saved_keep, ((kb + n + 7) >> 3) - (kb >> 3))
        memcpy(counts, self.saved_counts, NCOUNTS * sizeof(uint64_t))
        C[0] = self.saved_carry
        self.nbytes = self.saved_nbytes

    cdef int _chunks(self, const uint64_t* ch, Py_ssize_t nch, const Span* sp, uint8_t* keep, Py_ssize_t kb0,
                     uint64_t start, Carry* C, uint64_t* counts) noexcept nogil:
        cdef Py_ssize_t c, kb, sp_lo, nsp
        cdef uint64_t a, b, a0, b0, va
        cdef int rc
        for c in range(nch):
            a0, b0 = ch[CHUNK_FIELDS * c], ch[CHUNK_FIELDS * c + 1]
            a = a0
            while a < b0:
                b = min(b0, a - a % BATCH + BATCH)
                kb = kb0 + <Py_ssize_t>(a - start)
                if not ch[CHUNK_FIELDS * c + 2]:            # no memory map here
                    counts[<int>C_UNCLASSIFIED] += bits_set(keep, kb, b - a)
                    memset(C, 0, sizeof(Carry))
                    a = b
                    continue
                va = ch[CHUNK_FIELDS * c + 3] + (a - a0) * <uint64_t>self.params.p.rec
                sp_lo = ch[CHUNK_FIELDS * c + 4]
                nsp = ch[CHUNK_FIELDS * c + 5] - sp_lo
                if self.read_phys is not None:
                    rc = self._batch(sp + sp_lo, nsp, a, b, va, keep, kb, C, counts)
                else:
                    self._save(keep, kb, b - a, C, counts)
                    if fd_bus_arm() == 0:
                        rc = self._batch(sp + sp_lo, nsp, a, b, va, keep, kb, C, counts)
                        fd_bus_disarm()
                    else:                               # SIGBUS in the mapping: again, with pread
                        self._restore(keep, kb, b - a, C, counts)
                        if self.map_base != NULL:
                            munmap(self.map_base, self.map_len)
                            self.map_base = NULL
                        self.mmap_broken = True
                        self.sigbus_batches += 1
                        rc = self._batch(sp + sp_lo, nsp, a, b, va, keep, kb, C, counts)
                if rc < 0:
                    return rc
                a = b
        return 0

    def scan_chunks(self, const uint64_t[::1] chunks not None, const uint64_t[::1] spans not None,
                    uint8_t[::1] keep not None, Py_ssize_t kb0, uint64_t start, carry,
                    uint64_t[::1] counts not None):
        """Classify the pfns of ``chunks`` (CHUNK_FIELDS values each: pfns a..b, whether
        they have a memory map, the virtual address of pfn a's struct page, and the
        range of ``spans`` translating it: va, pa, length triples sorted by va);
        bit kb0 of ``keep`` is pfn ``start``.  Batches and carries are exactly those of
        one scan() call per batch.  Returns (carry, struct page bytes read)."""
        cdef Py_ssize_t nch = chunks.shape[0] // CHUNK_FIELDS, nsp = spans.shape[0] // 3, c
        cdef Carry C
        cdef int rc
        cdef const uint64_t* ch = &chunks[0] if nch else NULL
        cdef const Span* sp = <const Span*>&spans[0] if nsp else NULL
        if counts.shape[0] < NCOUNTS:
            raise ValueError("counts too small")
        if kb0 < 0:
            raise ValueError("negative keep bit")
        for c in range(nch):
            if ch[CHUNK_FIELDS * c] < start or ch[CHUNK_FIELDS * c + 1] < ch[CHUNK_FIELDS * c] \
                    or kb0 + (ch[CHUNK_FIELDS * c + 1] - start) > <uint64_t>keep.shape[0] * 8 \
                    or ch[CHUNK_FIELDS * c + 5] > <uint64_t>nsp or ch[CHUNK_FIELDS * c + 4] > ch[CHUNK_FIELDS * c + 5]:
                raise ValueError("chunk outside the keep bitmap or the spans")
        if carry is None:
            memset(&C, 0, sizeof(Carry))
        else:
            _take_carry(carry, &C)
        self.nbytes = 0
        self.error = None
        if nch:
            with nogil:
                rc = self._chunks(ch, nch, sp, &keep[0], kb0, start, &C, &counts[0])
            if rc < 0:
                err, self.error = self.error, None
                raise err
        carry = (C.until, C.cls, C.head_va, C.verify) if C.until else None
        return carry, self.nbytes

    # -- the per-CPU free lists ---------------------------------------------------
    cdef int _follow(self, const Span* sp, Py_ssize_t nsp, uint64_t first, uint64_t head,
                     uint32_t link_off, uint32_t ref_off, uint64_t limit) noexcept nogil:
        """The walk of follow_list: its status; the entries in ``ring``."""
        cdef uint32_t lo = min(link_off, ref_off)
        cdef uint32_t n = max(link_off + 16, ref_off + 4) - lo
        cdef uint64_t cur = head, nxt = first, page
        cdef uint64_t* grown
        cdef const uint8_t* p
        cdef int rc
        self.ring_n = 0
        while nxt != head:
            if self.ring_n >= limit:
                return F_TOO_MANY
            if self.ring_n == self.ring_cap:
                grown = <uint64_t*>realloc(self.ring, (self.ring_cap * 2 + 256) * sizeof(uint64_t))
                if grown == NULL:
                    return F_NO_MEMORY
                self.ring, self.ring_cap = grown, self.ring_cap * 2 + 256
            page = nxt - link_off
            self.ring[self.ring_n] = page
            self.ring_n += 1
            rc = self._read(sp, nsp, page + lo, n, &p)
            if rc < 0:
                return F_ERROR
            if rc:
                return F_UNREADABLE
            if rd64(p, link_off + 8 - lo) != cur:
                return F_BAD_PREV
            if rd32(p, ref_off - lo) != 0:
                return F_REFERENCED
            cur, nxt = nxt, rd64(p, link_off - lo)
        return F_OK

    cdef int _follow_guarded(self, const Span* sp, Py_ssize_t nsp, uint64_t first, uint64_t head,
                             uint32_t link_off, uint32_t ref_off, uint64_t limit) noexcept nogil:
        """_follow under the SIGBUS guard, as a scan batch: again with pread after one."""
        cdef int status
        if self.read_phys is not None:
            return self._follow(sp, nsp, first, head, link_off, ref_off, limit)
        if fd_bus_arm() == 0:
            status = self._follow(sp, nsp, first, head, link_off, ref_off, limit)
            fd_bus_disarm()
            return status
        if self.map_base != NULL:
            munmap(self.map_base, self.map_len)
            self.map_base = NULL
        self.mmap_broken = True
        self.sigbus_batches += 1
        return self._follow(sp, nsp, first, head, link_off, ref_off, limit)

    def follow_list(self, const uint64_t[::1] spans not None, uint64_t first, uint64_t head,
                    uint32_t link_off, uint32_t ref_off, uint64_t limit):
        """Follow a ring of struct pages linked by the list_head at ``link_off`` (a per-CPU
        free list, kernel/pcp.py) from ``first``, the head's next, back to ``head``, reading
        each struct page through ``spans`` (va, pa, length triples sorted by va).  Every
        entry's prev must point back and its u32 at ``ref_off`` (_refcount) must be 0; so
        a loop is caught at the first entry met twice (its prev cannot name both the entry
        before it then and now), whatever ``limit`` a corrupt count gives.

        Returns (status, array('Q') of the entries' struct page addresses in list order):
        FOLLOW_OK when the ring closed; else the status of the first entry that failed
        (the last address), or FOLLOW_TOO_MANY when entry ``limit`` + 1 was reached (too
        many pages, or a loop).  No Python runs per entry: a CPU's lists can hold
        thousands of pages, and a big machine has hundreds of CPUs."""
        cdef Py_ssize_t nsp = spans.shape[0] // 3
        cdef const Span* sp = <const Span*>&spans[0] if nsp else NULL
        cdef int status
        if link_off > 4096 or ref_off > 4096:
            raise ValueError("a struct page member past 4096 bytes")
        self.error = None
        with nogil:
            status = self._follow_guarded(sp, nsp, first, head, link_off, ref_off, limit)
        if status == F_ERROR:
            err, self.error = self.error, None
            raise err
        if status == F_NO_MEMORY:
            raise MemoryError()
        out = array("Q")
        if self.ring_n:
            out.frombytes((<char*>self.ring)[:self.ring_n * sizeof(uint64_t)])
        return status, out
