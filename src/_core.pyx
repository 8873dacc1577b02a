# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""fastdump's copy engine: every per-page step, in C, with the GIL released.

A *Job* is one window of pfns.  A worker thread calls ``Job.run()``; inside, with
the GIL released, the job reads its pages (pread, or mmap windows of the source),
tests each for all-zero, compresses it with the job's own codec state and packs
the results into one output buffer.  The ordered writer then turns a finished
job into format bytes (kdump page descriptors) with one more C loop.
Buffers and codec states belong to the job and are reused for every window.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t, INT64_MAX
from libc.stdlib cimport malloc, free, calloc
from libc.string cimport memcpy, memset, memcmp
from libc.errno cimport errno
from posix.unistd cimport pread, lseek
from posix.stat cimport struct_stat, fstat
from posix.mman cimport mmap, munmap, PROT_READ, MAP_SHARED, MAP_FAILED
from cpython.buffer cimport PyBUF_WRITABLE

from compressors cimport *
from source_file cimport copy_extents, map_window, mappable_bytes

if lzo_init() != LZO_E_OK:
    raise ImportError("liblzo2 failed to initialise")

# kdump page descriptor flags, the on-disk values (makedumpfile's DUMP_DH_COMPRESSED_*;
# 0x40 is fastdump's own for LZ4).  formats/codecs.py gives each its name and option.
cpdef enum:
    KD_ZLIB = 0x1
    KD_LZO = 0x2
    KD_SNAPPY = 0x4
    KD_ZSTD = 0x20
    KD_LZ4_FASTDUMP = 0x40


def decompress_page(unsigned int flag, const unsigned char[::1] data not None, size_t page_size):
    """Decode one kdump page (any method makedumpfile or fastdump writes), GIL released.
    Returns the page, or raises ValueError when it does not decode to exactly page_size."""
    out = bytearray(page_size)
    cdef unsigned char[::1] o = out
    cdef size_t n = data.shape[0], got = 0, r
    cdef unsigned long zl = page_size, zin
    cdef lzo_uint ll = page_size
    cdef int rc = -1
    cdef const unsigned char* src = &data[0] if n else NULL
    if n == 0:
        raise ValueError("empty compressed page")
    with nogil:
        if flag == KD_ZLIB:
            # uncompress2 says how much of the input the stream took: bytes after its end
            # (a descriptor's size grown over the next page's data) are corruption, as the
            # other codecs already find
            zin = n
            rc = uncompress2(&o[0], &zl, src, &zin)
            got = zl
            rc = 0 if rc == Z_OK and zin == n else -1
        elif flag == KD_ZSTD:
            r = ZSTD_decompress(&o[0], page_size, src, n)
            rc = -1 if ZSTD_isError(r) else 0
            got = r
        elif flag == KD_LZ4_FASTDUMP:
            rc = LZ4_decompress_safe(<const char*>src, <char*>&o[0], n, page_size)
            got = rc
            rc = 0 if rc >= 0 else -1
        elif flag == KD_LZO:
            rc = lzo1x_decompress_safe(src, n, &o[0], &ll, NULL)
            got = ll
            rc = 0 if rc == LZO_E_OK else -1
        elif flag == KD_SNAPPY:
            got = page_size
            rc = 0 if snappy_uncompress(<const char*>src, n, <char*>&o[0], &got) == SNAPPY_OK else -1
    if flag not in (KD_ZLIB, KD_ZSTD, KD_LZ4_FASTDUMP, KD_LZO, KD_SNAPPY):
        raise ValueError(f"unknown page compression flag {flag:#x}")
    if rc != 0:
        raise ValueError("corrupt compressed page")
    if got != page_size:
        raise ValueError(f"page decodes to {got} bytes, not {page_size}")
    return bytes(out)


def deflate_page(const unsigned char[::1] data not None):
    """One page (1 byte to 32 KiB) as fastdump's `-c` writes it: a zlib stream (tests read it
    back with zlib)."""
    cdef size_t n = data.shape[0], r = 0
    if n == 0 or n > <size_t>FD_DEFLATE_MAX_PAGE:
        raise ValueError(f"a page of 1 to {FD_DEFLATE_MAX_PAGE} bytes, not {n}")
    cdef fd_deflate_ws* ws = fd_deflate_new(n)
    if ws == NULL:
        raise MemoryError()
    out = bytearray(n + n // 4 + 64)            # fixed codes: at most 9 bits a byte, plus framing
    cdef unsigned char[::1] o = out
    with nogil:
        r = fd_deflate_page(ws, &data[0], n, &o[0], o.shape[0])
    fd_deflate_free(ws)
    if r == 0:
        raise RuntimeError("a page did not fit its worst-case bound")
    return bytes(out[:r])


def huffman_code_lengths(freqs, int limit):
    """The page compressor's Huffman code lengths for symbol counts (at most 288, each below
    65536), none longer than ``limit`` bits (tests check the limit and the Kraft sum)."""
    cdef uint32_t f[288]
    cdef unsigned char out[288]
    cdef int n = len(freqs), i
    if n > 288 or not 1 <= limit <= 15:
        raise ValueError("at most 288 symbols, limit 1-15")
    for i in range(n):
        if not 0 <= freqs[i] < 65536:
            raise ValueError("counts must be below 65536")
        f[i] = freqs[i]
    if sum(1 for x in freqs if x) > (1 << limit):
        raise ValueError("more symbols than codes of that length")
    fd_code_lengths(f, n, limit, out)
    return [out[i] for i in range(n)]


# Codec identifiers (fastdump's own; formats/codecs.py pairs each with its kdump flag).
cpdef enum:
    CODEC_NONE = 0
    CODEC_ZLIB = 1
    CODEC_LZ4 = 2
    CODEC_ZSTD = 3
    CODEC_LZO = 4
    CODEC_SNAPPY = 5

# Per-page result flags kept in the job's flag array.
cpdef enum:
    PAGE_ZERO = 1 << 30        # all-zero page (not stored when zero filtering is on)
    PAGE_FILLED = 1 << 29      # not read: written as zeros (dense/ELF windows)
    PAGE_UNREADABLE = 1 << 28  # the source gave an error for it: recorded, not stored
    CODEC_MASK = 0xFFFF        # low bits: which codec compressed it (0 = stored raw)

cdef extern from "<unistd.h>" nogil:
    int SEEK_DATA
    int SEEK_HOLE

cdef extern from "<errno.h>" nogil:
    int ENXIO

cdef enum:
    PACK_CHUNK = 32            # pages gathered, then tested and compressed while cache-hot


def library_versions():
    v = ZSTD_versionNumber()
    l = LZ4_versionNumber()
    return {"zstd": f"{v // 10000}.{v // 100 % 100}.{v % 100}",
            "lz4": f"{l // 10000}.{l // 100 % 100}.{l % 100}",
            "zlib": zlibVersion().decode(), "libdeflate": LIBDEFLATE_VERSION_STRING.decode()}



# ------------------------------------------------------------ SIGBUS guard --
# A SIGBUS in a mapping is caught per window (fd_sigbus.h); the window is read again
# with pread, where the same failure is an errno and the page is recorded as unreadable.
cdef extern from "fd_sigbus.h":
    int fd_bus_install() nogil
    int fd_bus_arm() nogil
    void fd_bus_disarm() nogil

fd_bus_install()

# ---------------------------------------------------------------- bitmaps --
# LSB-first bitmaps, bit i of byte i>>3 is (i & 7): the kdump on-disk order.

cdef inline bint _bit(const uint8_t* bm, uint64_t i) noexcept nogil:
    return (bm[i >> 3] >> (i & 7)) & 1


cdef inline uint64_t _pop64(uint64_t x) noexcept nogil:
    """Set bits of a word, in registers: without -mpopcnt (Debian's x86-64 baseline)
    __builtin_popcount is a call into libgcc for every byte."""
    x = x - ((x >> 1) & 0x5555555555555555ULL)
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL)
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL
    return (x * 0x0101010101010101ULL) >> 56


cdef inline uint64_t _count_bytes(const uint8_t* p, uint64_t n) noexcept nogil:
    """Set bits in ``n`` whole bytes, a word at a time."""
    cdef uint64_t total = 0, w = 0, i = 0
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        total += _pop64(w)
        i += 8
    while i < n:
        total += _pop64(p[i])
        i += 1
    return total


def bitmap_set_range(unsigned char[::1] bm not None, uint64_t first, uint64_t count):
    """Set ``count`` bits from bit ``first``."""
    cdef uint64_t i = first, end = first + count
    if count > <uint64_t>bm.shape[0] * 8 or first > <uint64_t>bm.shape[0] * 8 - count:
        raise ValueError("bit range past the end of the bitmap")
    with nogil:
        while i < end and (i & 7):
            bm[i >> 3] |= 1 << (i & 7)
            i += 1
        if end - i >= 8:
            memset(&bm[i >> 3], 0xFF, (end - i) >> 3)
            i += ((end - i) >> 3) << 3
        while i < end:
            bm[i >> 3] |= 1 << (i & 7)
            i += 1


def bitmap_count(const unsigned char[::1] bm not None, uint64_t nbits):
    """Number of set bits among the first ``nbits``."""
    cdef uint64_t i, full = nbits >> 3, total = 0
    cdef uint8_t last
    if nbits > <uint64_t>bm.shape[0] * 8:
        raise ValueError("nbits past the end of the bitmap")
    with nogil:
        total = _count_bytes(&bm[0], full) if full else 0
        if nbits & 7:
            last = bm[full] & ((1 << (nbits & 7)) - 1)
            total += _pop64(last)
    return total


def bitmap_count_range(const unsigned char[::1] bm not None, uint64_t first, uint64_t end):
    """Number of set bits in [first, end)."""
    cdef uint64_t i = first, total = 0
    if end > <uint64_t>bm.shape[0] * 8 or first > end:
        raise ValueError("bit range past the end of the bitmap, or reversed")
    with nogil:
        while i < end and (i & 7):
            total += _bit(&bm[0], i)
            i += 1
        if i + 8 <= end:
            total += _count_bytes(&bm[i >> 3], (end - i) >> 3)
            i += ((end - i) >> 3) << 3
        while i < end:
            total += _bit(&bm[0], i)
            i += 1
    return total


def bitmap_clear_bits(unsigned char[::1] bm not None, const unsigned char[::1] mask not None):
    """bm &= ~mask (same length)."""
    cdef Py_ssize_t i, n = min(bm.shape[0], mask.shape[0])
    with nogil:
        for i in range(n):
            bm[i] &= ~mask[i]


def bitmap_clear_runs(unsigned char[::1] bm not None, const uint64_t[::1] runs not None,
                      uint64_t base, uint64_t nbits):
    """Clear the bits of the ``(first, count)`` pfn runs (flattened pairs) that fall in
    pfns ``base``..``base + nbits`` (bit 0 = ``base``); returns how many were set.  One
    call per cycle for thousands of short runs (the per-CPU free lists)."""
    cdef Py_ssize_t r
    cdef uint64_t a, b, i, cleared = 0
    cdef uint8_t m
    if nbits > <uint64_t>bm.shape[0] * 8:
        raise ValueError("nbits past the end of the bitmap")
    if runs.shape[0] % 2:
        raise ValueError("runs must be (first, count) pairs")
    with nogil:
        for r in range(0, runs.shape[0], 2):
            a = runs[r] if runs[r] > base else base
            b = runs[r] + runs[r + 1]
            if b > base + nbits:
                b = base + nbits
            if a >= b:
                continue
            i = a - base
            b -= base
            while i < b and (i & 7):
                cleared += _bit(&bm[0], i)
                bm[i >> 3] &= ~(1 << (i & 7))
                i += 1
            if i + 8 <= b:
                cleared += _count_bytes(&bm[i >> 3], (b - i) >> 3)
                memset(&bm[i >> 3], 0, (b - i) >> 3)
                i += ((b - i) >> 3) << 3
            while i < b:
                cleared += _bit(&bm[0], i)
                bm[i >> 3] &= ~(1 << (i & 7))
                i += 1
    return cleared


cdef inline uint64_t _next_bit(const uint8_t* bm, uint64_t i, uint64_t nbits, bint value) noexcept nogil:
    """First bit index >= i equal to ``value`` (nbits if none); skips whole bytes."""
    cdef uint8_t skip = 0 if value else 0xFF
    while i < nbits:
        if (i & 7) == 0 and bm[i >> 3] == skip:
            i += 8
            continue
        if _bit(bm, i) == value:
            return i
        i += 1
    return nbits


def bitmap_runs(const unsigned char[::1] bm not None, uint64_t nbits):
    """``(first, end)`` runs of set bits among the first ``nbits``."""
    cdef uint64_t i = 0, start
    runs = []
    if nbits > <uint64_t>bm.shape[0] * 8:
        raise ValueError("nbits past the end of the bitmap")
    while True:
        with nogil:
            start = _next_bit(&bm[0], i, nbits, True)
            i = _next_bit(&bm[0], start, nbits, False)
        if start >= nbits:
            return runs
        runs.append((start, i))


def plan_window(const unsigned char[::1] bm not None, uint64_t start, uint64_t end, uint64_t max_pages):
    """End bit of a window from ``start`` holding at most ``max_pages`` set bits."""
    cdef uint64_t i = start, n = 0, c, w = 0
    if end > <uint64_t>bm.shape[0] * 8:
        raise ValueError("end past the end of the bitmap")
    with nogil:
        while i < end:
            if (i & 63) == 0 and i + 64 <= end:
                memcpy(&w, &bm[i >> 3], 8)
                c = _pop64(w)
                if n + c <= max_pages:
                    n += c
                    i += 64
                    continue
            if (i & 7) == 0 and i + 8 <= end:
                c = _pop64(bm[i >> 3])
                if n + c <= max_pages:
                    n += c
                    i += 8
                    continue
            if _bit(&bm[0], i):
                if n == max_pages:
                    break
                n += 1
            i += 1
    return i




# ------------------------------------------------------------------ pages --

cdef inline void _put_le32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF; p[1] = (v >> 8) & 0xFF; p[2] = (v >> 16) & 0xFF; p[3] = v >> 24


cdef inline uint32_t _get_le32(const uint8_t* p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline int64_t _get_le64(const uint8_t* p) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v |= (<uint64_t>p[i]) << (8 * i)
    return <int64_t>v


def crc_blocks(const unsigned char[::1] data not None, size_t block, unsigned long carry=0, size_t carry_len=0):
    """crc32 of each ``block`` bytes of a stream that arrives in parts, GIL released.
    ``carry``/``carry_len`` are the crc and length of the unfinished block before
    ``data``.  Returns (the finished blocks' crcs as u32 LE bytes, carry, carry_len)."""
    cdef size_t n = data.shape[0], at = 0, take, count = 0
    cdef unsigned long c = carry
    cdef size_t have = carry_len
    if block == 0 or carry_len >= block:
        raise ValueError("bad block size or carry")
    # the blocks finished: (carry_len + n) // block, without the sum (it may wrap)
    out = bytearray(4 * (n // block + (1 if n % block >= block - carry_len else 0)))
    cdef unsigned char[::1] o = out
    cdef const uint8_t* p = &data[0] if n else NULL
    with nogil:
        while at < n:
            take = min(block - have, n - at)
            c = libdeflate_crc32(c, p + at, take)
            at += take
            have += take
            if have == block:
                _put_le32(&o[4 * count], <uint32_t>c)
                count += 1
                c = 0
                have = 0
    return bytes(out), c & 0xFFFFFFFF, have


cdef inline void _put_le64(uint8_t* p, uint64_t v) noexcept nogil:
    cdef int i
    for i in range(8):
        p[i] = (v >> (8 * i)) & 0xFF


#: the top half of a kdump descriptor's page_flags when its low half is fastdump's checksum.
#: 1 (dumps of 2026-12-02 and 03): crc32 of the stored bytes continued over size and flags.
#: 2 and 3: continued over the pfn too, so that two descriptors swapped no longer pass;
#: 2 also says that the file was written whole and ends with a checksum trailer once it is
#: complete, 3 that it was written into a ``--split`` part (a file another tool joins from
#: parts carries the part's descriptors and no trailer).
cdef enum:
    _TAG_V1 = 0x66640001
    _TAG_WHOLE = 0x66640002
    _TAG_PART = 0x66640003
DESC_CHECKSUM_TAG, DESC_TAG_WHOLE, DESC_TAG_PART = _TAG_V1, _TAG_WHOLE, _TAG_PART


cdef inline bint _is_desc_tag(uint64_t tag) noexcept nogil:
    return tag == _TAG_V1 or tag == _TAG_WHOLE or tag == _TAG_PART


cdef inline uint64_t _desc_checksum(uint32_t data_crc, const uint8_t* d, uint64_t pfn,
                                    uint64_t tag) noexcept nogil:
    """page_flags of descriptor ``d`` of page ``pfn``: the tag, then crc32 of the page's
    stored bytes (``data_crc``) continued over the descriptor's size and flags and (tags 2
    and 3) the pfn.  The offset is left out: a reassembled file moves the data, and a
    wrong offset reads other bytes anyway."""
    cdef uint8_t p[8]
    cdef uint32_t c = <uint32_t>libdeflate_crc32(data_crc, d + 8, 8)
    if tag != _TAG_V1:
        _put_le64(p, pfn)
        c = <uint32_t>libdeflate_crc32(c, p, 8)
    return (tag << 32) | c


def desc_checksum(unsigned long data_crc, const unsigned char[::1] desc not None, uint64_t pfn=0,
                  uint64_t tag=_TAG_WHOLE):
    """``_desc_checksum`` for a descriptor packed in Python (split parts, reassembly)."""
    if desc.shape[0] < 16:
        raise ValueError("a descriptor is 24 bytes")
    if not _is_desc_tag(tag):
        raise ValueError("not a descriptor checksum tag")
    return _desc_checksum(<uint32_t>data_crc, &desc[0], pfn, tag)


def kdump_crc_mismatches(int fd, const unsigned char[::1] descs not None, size_t page_size,
                         const uint64_t[::1] pfns not None):
    """(indices of the kdump descriptors in ``descs`` (24 bytes each; ``pfns`` their pages)
    whose page_flags checksum does not match their stored bytes read back from ``fd``, how
    many carry one, how many of those are tagged ``DESC_TAG_WHOLE``, how many ``DESC_TAG_PART``).
    Never-written descriptors (all zero) and untagged ones (another tool's) are skipped.
    Page data is read in large spans, the GIL released: the check costs no Python call per page."""
    cdef size_t n = descs.shape[0] // 24, i, tagged = 0, whole = 0, part = 0
    cdef uint64_t tag
    cdef size_t span = 1 << 20
    cdef uint8_t* buf = <uint8_t*>malloc(span)
    cdef uint32_t* bad = <uint32_t*>malloc(max(n, 1) * sizeof(uint32_t))
    cdef size_t nbad = 0
    cdef int64_t off, buf_off = -1, hi_water = 0, memo_off = -1
    cdef uint32_t size, memo_size = 0
    cdef unsigned long c, memo_crc = 0
    cdef ssize_t got, buf_len = 0
    cdef const uint8_t* d
    cdef const uint8_t* dp = &descs[0] if n else NULL
    if page_size == 0 or page_size > (1 << 30) or <size_t>pfns.shape[0] < n:
        free(buf); free(bad)
        raise ValueError("implausible page size, or fewer pfns than descriptors")
    if buf == NULL or bad == NULL:
        free(buf); free(bad)
        raise MemoryError()
    with nogil:
        for i in range(n):
            d = dp + 24 * i
            tag = <uint64_t>_get_le64(d + 16) >> 32
            if not _is_desc_tag(tag):
                continue                                   # never written, or not ours
            tagged += 1
            whole += tag == _TAG_WHOLE
            part += tag == _TAG_PART
            off = _get_le64(d)
            size = _get_le32(d + 8)
            if off <= 0 or size > page_size or <uint64_t>off > <uint64_t>INT64_MAX - page_size:
                bad[nbad] = i; nbad += 1      # (an offset near 2**63 would wrap off + size)
                continue
            if off == memo_off and size == memo_size:     # the shared zero block, met again
                c = memo_crc
            else:
                if not (buf_off >= 0 and off >= buf_off and off - buf_off <= buf_len - <int64_t>size):
                    got = pread(fd, buf, span, off)
                    buf_off, buf_len = off, (got if got > 0 else 0)
                    if <size_t>buf_len < size:
                        bad[nbad] = i; nbad += 1
                        buf_off = -1
                        continue
                c = libdeflate_crc32(0, buf + (off - buf_off), size)
                if off < hi_water:                         # a jump back: remember it (zero block)
                    memo_off, memo_size, memo_crc = off, size, c
                hi_water = max(hi_water, off + size)
            if _desc_checksum(<uint32_t>c, d, pfns[i], tag) != <uint64_t>_get_le64(d + 16):
                bad[nbad] = i; nbad += 1
    out = [bad[k] for k in range(nbad)]
    free(buf); free(bad)
    return out, tagged, whole, part



cdef inline bint _is_zero(const uint8_t* p, size_t n) noexcept nogil:
    if (<const uint64_t*>p)[0] != 0:
        return False
    return memcmp(p, p + 8, n - 8) == 0


cdef class Source:
    """What a job needs of the input: fd, extent table, read mode."""
    cdef int fd
    cdef bint use_mmap
    cdef uint64_t map_limit  # bytes of the file that may be mapped (its size; past it, SIGBUS)
    cdef uint64_t* ext      # triples: phys_start, phys_end, file_offset
    cdef size_t n_ext
    cdef uint64_t* erase    # quadruples: pfn, offset in page, length, fill (sorted; see set_erase)
    cdef size_t n_erase
    cdef readonly int page_size
    cdef readonly uint64_t map_window  # bytes each job maps at once (a power of two)

    def __cinit__(self, int fd, extents, int page_size=4096, bint use_mmap=False, uint64_t map_window=1 << 20):
        if map_window < 4096 or map_window & (map_window - 1):
            raise ValueError("map_window must be a power of two of at least 4096 bytes")
        if page_size < 4096 or page_size > (1 << 20) or page_size & (page_size - 1):
            raise ValueError("page_size must be a power of two from 4096 to 1 MiB")
        self.fd = fd
        self.page_size = page_size
        self.use_mmap = use_mmap
        self.map_window = map_window
        self.map_limit = mappable_bytes(fd)
        self.ext = copy_extents(extents, &self.n_ext)

    def __dealloc__(self):
        free(self.ext)
        free(self.erase)

    def set_erase(self, table):
        """Bytes to overwrite in every page copied from now on (makedumpfile's --config):
        uint64 quadruples (pfn, offset, length, fill), sorted by pfn, each inside one page.
        Applied by every job before its zero test and compression."""
        cdef const uint64_t[::1] e = table
        cdef size_t n = e.shape[0] // 4, i
        if e.shape[0] % 4:
            raise ValueError("the erase table holds quadruples")
        for i in range(n):
            if e[4 * i + 1] > <uint64_t>self.page_size or e[4 * i + 2] > <uint64_t>self.page_size - e[4 * i + 1] \
                    or e[4 * i + 3] > 0xFF \
                    or (i and e[4 * i] < e[4 * i - 4]):
                raise ValueError("erase entry out of its page, bad fill, or not sorted by pfn")
        free(self.erase)
        self.erase = <uint64_t*>malloc(max(1, n) * 4 * sizeof(uint64_t))
        if self.erase == NULL:
            self.n_erase = 0
            raise MemoryError()
        if n:
            memcpy(self.erase, &e[0], n * 4 * sizeof(uint64_t))
        self.n_erase = n


cdef class Job:
    """One window: its buffers, codec state, inputs and results (reused)."""
    cdef Source src
    cdef readonly int codec
    cdef readonly int capacity          # pages per window
    cdef size_t slot_bound              # max bytes one compressed page may take
    cdef uint8_t* inbuf
    cdef uint8_t* outbuf
    cdef size_t outbuf_size
    cdef uint64_t* pfn_arr
    cdef uint32_t* size_arr
    cdef uint32_t* flag_arr
    cdef uint8_t* descbuf
    cdef uint32_t* crc_arr              # crc32 of each page's stored bytes (computed where they are packed)
    cdef uint32_t zero_crc
    cdef const uint8_t** page_ptr       # where each page's bytes are: its inbuf slot or the mmap window
    # codec states
    cdef ZSTD_CCtx* zctx
    cdef void* lz4state
    cdef void* lzowrk
    cdef libdeflate_compressor* deflater
    cdef fd_deflate_ws* page_deflater
    # mmap window cache
    cdef uint8_t* map_base
    cdef uint64_t map_off, map_len
    cdef bint mmap_broken
    cdef bint zero_copy                 # this window's pages are compressed straight from the mapping
    # pending coalesced pread run, and how far the window is gathered and packed
    cdef uint64_t run_off, run_len, run_dst, run_lo, run_hi
    cdef size_t n_collected, packed
    # file holes (a saved vmcore copied sparse): pages there are zeros, not read
    cdef bint seek_holes
    cdef uint64_t hole_lo, hole_hi, data_lo, data_hi
    cdef uint8_t* zeros
    cdef readonly bint used_pread_fallback
    cdef readonly int sigbus_windows    # windows redone with pread after a SIGBUS in the mapping
    cdef readonly uint64_t windows_mapped  # mmap calls made (all runs): the window size at work
    # inputs of the current window
    cdef object bitmap_obj
    cdef const uint8_t* bitmap
    cdef uint64_t base_pfn, start, end
    cdef public bint zero_check, dense, scan_only
    # results
    cdef readonly int n_pages
    cdef readonly size_t out_len
    cdef readonly uint64_t zero_pages, bytes_read, raw_pages, unreadable_pages
    cdef readonly int err_no
    cdef readonly uint64_t err_pfn

    def __cinit__(self, Source src, int codec, int capacity):
        if capacity < 1 or capacity > (1 << 20):
            raise ValueError("a job holds 1 to 1 Mi pages")
        self.src = src
        self.codec = codec
        self.capacity = capacity
        cdef size_t ps = src.page_size
        self.slot_bound = max(ZSTD_compressBound(ps), <size_t>LZ4_compressBound(ps), compressBound(ps),
                              snappy_max_compressed_length(ps), ps + ps // 16 + 64 + 3)
        self.inbuf = <uint8_t*>malloc(<size_t>capacity * ps)
        self.outbuf_size = capacity * ps + self.slot_bound
        self.outbuf = <uint8_t*>malloc(self.outbuf_size)
        self.pfn_arr = <uint64_t*>malloc(capacity * sizeof(uint64_t))
        self.size_arr = <uint32_t*>malloc(capacity * sizeof(uint32_t))
        self.flag_arr = <uint32_t*>malloc(capacity * sizeof(uint32_t))
        self.descbuf = <uint8_t*>malloc(<size_t>capacity * 24)
        self.crc_arr = <uint32_t*>malloc(capacity * sizeof(uint32_t))
        self.page_ptr = <const uint8_t**>malloc(capacity * sizeof(uint8_t*))
        self.zeros = <uint8_t*>calloc(1, ps)
        self.seek_holes = src.fd >= 0 and src.map_limit != <uint64_t>-1
        if not (self.inbuf and self.outbuf and self.pfn_arr and self.size_arr and self.flag_arr and self.descbuf
                and self.page_ptr and self.zeros and self.crc_arr):
            raise MemoryError()
        self.zero_crc = libdeflate_crc32(0, self.zeros, ps)
        if codec == CODEC_ZSTD:
            self.zctx = ZSTD_createCCtx()
            if self.zctx == NULL:
                raise MemoryError()
        elif codec == CODEC_LZ4:
            self.lz4state = malloc(LZ4_sizeofState())
            if self.lz4state == NULL:
                raise MemoryError()
        elif codec == CODEC_LZO:
            self.lzowrk = malloc(LZO1X_1_MEM_COMPRESS)
            if self.lzowrk == NULL:
                raise MemoryError()
        elif codec == CODEC_ZLIB and ps <= FD_DEFLATE_MAX_PAGE:
            self.page_deflater = fd_deflate_new(ps)
            if self.page_deflater == NULL:
                raise MemoryError()
        elif codec == CODEC_ZLIB:
            # larger pages: libdeflate's level 2, not 1: its level 1 stores up to 4 % more than
            # zlib's level 1 (makedumpfile's) on some pages; level 2 stores less
            self.deflater = libdeflate_alloc_compressor(2)
            if self.deflater == NULL:
                raise MemoryError()
        elif codec != CODEC_NONE and codec != CODEC_SNAPPY:
            raise ValueError(f"unknown codec {codec}")

    def __dealloc__(self):
        if self.map_base != NULL:
            munmap(self.map_base, self.map_len)
        free(self.inbuf); free(self.outbuf); free(self.pfn_arr)
        free(self.size_arr); free(self.flag_arr); free(self.descbuf); free(<void*>self.page_ptr); free(self.zeros)
        free(self.crc_arr)
        if self.zctx != NULL:
            ZSTD_freeCCtx(self.zctx)
        free(self.lz4state)
        free(self.lzowrk)
        if self.deflater != NULL:
            libdeflate_free_compressor(self.deflater)
        fd_deflate_free(self.page_deflater)

    def setup(self, bitmap, uint64_t base_pfn, uint64_t start, uint64_t end):
        """Window = pfns base_pfn+start .. base_pfn+end whose bit is set in ``bitmap``
        (``dense``: every pfn in the range is output, unset ones as zeros)."""
        cdef const unsigned char[::1] bm = bitmap
        if start > end or end > <uint64_t>bm.shape[0] * 8:
            raise ValueError("window past the end of its bitmap, or reversed")
        self.bitmap_obj = bitmap
        self.bitmap = &bm[0]
        self.base_pfn, self.start, self.end = base_pfn, start, end

    # -- reading ----------------------------------------------------------
    cdef const uint8_t* _map(self, uint64_t off, size_t n, uint64_t lo, uint64_t hi) noexcept nogil:
        """A pointer to bytes [off, off+n) through this job's mmap window, inside the
        extent whose bytes are at file offsets [lo, hi); NULL when they cannot be
        mapped (mmap failed once: this job reads with pread from then on; or the
        bytes lie past the end of the file, where a mapping would raise SIGBUS).

        A window never crosses the extent's page-aligned chunk: /proc/vmcore refuses
        mappings that span two PT_LOADs.  Before the old window goes, the pages that
        still point into it are packed (zero-copy windows)."""
        cdef uint64_t moff
        if not self.src.use_mmap or self.mmap_broken or off + n > self.src.map_limit:
            return NULL
        if self.map_base == NULL or off < self.map_off or off + n > self.map_off + self.map_len:
            if self.map_base != NULL:
                if self.zero_copy:
                    self._pack_upto(self.n_collected)
                munmap(self.map_base, self.map_len)
                self.map_base = NULL
            moff = map_window(off, n, lo, hi, self.src.map_limit, self.src.map_window, &self.map_len)
            self.map_base = <uint8_t*>mmap(NULL, self.map_len, PROT_READ, MAP_SHARED, self.src.fd, moff)
            if <void*>self.map_base == MAP_FAILED:
                self.map_base = NULL
                self.mmap_broken = True
                self.zero_copy = False
                self.used_pread_fallback = True
                return NULL
            self.map_off = moff
            self.windows_mapped += 1
        return self.map_base + (off - self.map_off)

    cdef bint _in_hole(self, uint64_t off, size_t n) noexcept nogil:
        """True when file bytes [off, off+n) lie in a hole of a sparse file: they read
        as zeros, so they are not read.  One SEEK_DATA/SEEK_HOLE pair per data or hole
        range, remembered; files without hole support report all data (/proc/vmcore),
        devices refuse (then this job stops asking).  lseek moves the shared file
        offset, which nothing uses: every read of the source is a pread or a mapping."""
        cdef int64_t d, h
        cdef struct_stat st
        if not self.seek_holes or off + n > self.src.map_limit:
            return False
        if off >= self.hole_lo and off + n <= self.hole_hi:
            return True
        if off >= self.data_lo and off < self.data_hi:
            return False
        d = lseek(self.src.fd, off, SEEK_DATA)
        if d < 0:
            if errno == ENXIO and fstat(self.src.fd, &st) == 0 and <uint64_t>st.st_size >= off + n:
                # no data after off, and off is not past the end (a file cut short since
                # it was opened must give read errors, not zeros): a hole up to the end
                self.hole_lo, self.hole_hi = off, <uint64_t>st.st_size
                return True
            if errno == ENXIO:
                return False
            self.seek_holes = False
            return False
        if <uint64_t>d > off:
            self.hole_lo, self.hole_hi = off, <uint64_t>d
            return off + n <= <uint64_t>d
        h = lseek(self.src.fd, off, SEEK_HOLE)
        self.data_lo = off
        self.data_hi = <uint64_t>h if h > <int64_t>off else self.src.map_limit
        return False

    cdef int _read(self, uint8_t* dst, uint64_t off, size_t n, uint64_t lo, uint64_t hi) noexcept nogil:
        """Copy n bytes at file offset off (inside the extent at file offsets [lo, hi))
        into dst, through the mmap window when there is one, else pread; 0 or an errno."""
        cdef ssize_t got
        cdef const uint8_t* p = self._map(off, n, lo, hi)
        if p != NULL:
            memcpy(dst, p, n)
            return 0
        while n:
            got = pread(self.src.fd, dst, n, off)
            if got < 0:
                return errno
            if got == 0:
                return 5  # EIO: the file ended inside a PT_LOAD
            dst += got
            off += got
            n -= got
        return 0

    cdef int _read_page(self, uint8_t* dst, uint64_t pfn, size_t* ext_i) noexcept nogil:
        """Fill one page slot from the extents (uncovered bytes are zero)."""
        cdef size_t ps = self.src.page_size, i = ext_i[0]
        cdef uint64_t a = pfn * ps, b = a + ps, lo, hi
        cdef uint64_t* ext = self.src.ext
        cdef int rc
        while i < self.src.n_ext and ext[3 * i + 1] <= a:
            i += 1
        ext_i[0] = i
        if i < self.src.n_ext and ext[3 * i] <= a and ext[3 * i + 1] >= b:
            rc = self._read(dst, ext[3 * i + 2] + (a - ext[3 * i]), ps, ext[3 * i + 2],
                            ext[3 * i + 2] + ext[3 * i + 1] - ext[3 * i])
            if rc == 0:
                self.bytes_read += ps
            return rc
        memset(dst, 0, ps)
        while i < self.src.n_ext and ext[3 * i] < b:
            lo = ext[3 * i] if ext[3 * i] > a else a
            hi = ext[3 * i + 1] if ext[3 * i + 1] < b else b
            if hi > lo:
                rc = self._read(dst + (lo - a), ext[3 * i + 2] + (lo - ext[3 * i]), hi - lo, ext[3 * i + 2],
                                ext[3 * i + 2] + ext[3 * i + 1] - ext[3 * i])
                if rc:
                    return rc
                self.bytes_read += hi - lo
            if ext[3 * i + 1] > b:
                break
            i += 1
        return 0

    cdef void _salvage(self, uint64_t run_dst, uint64_t run_off, uint64_t run_len,
                       uint64_t lo, uint64_t hi) noexcept nogil:
        """A run read failed: read it page by page; pages that still fail are
        zero-filled and flagged unreadable instead of ending the dump."""
        cdef size_t ps = self.src.page_size
        cdef uint64_t done = 0, k
        while done < run_len:
            k = (run_dst + done) // ps
            if self._read(self.inbuf + run_dst + done, run_off + done, ps, lo, hi) == 0:
                self.bytes_read += ps
            else:
                self._unreadable(k)
            done += ps

    cdef void _unreadable(self, size_t k) noexcept nogil:
        """Slot k could not be read: zeros, flagged, counted (it gets no descriptor)."""
        memset(self.inbuf + k * self.src.page_size, 0, self.src.page_size)
        self.flag_arr[k] |= PAGE_UNREADABLE
        self.unreadable_pages += 1

    cdef void _flush_run(self) noexcept nogil:
        """Read the pending run of contiguous pages into their slots."""
        if self.run_len:
            if self._read(self.inbuf + self.run_dst, self.run_off, self.run_len, self.run_lo, self.run_hi):
                self._salvage(self.run_dst, self.run_off, self.run_len, self.run_lo, self.run_hi)
            else:
                self.bytes_read += self.run_len
            self.run_len = 0

    cdef int _collect(self) noexcept nogil:
        """Gather the window's pages and pack them in chunks of PACK_CHUNK pages, so
        each chunk is tested and compressed while it is still in the CPU cache.

        A page is found either in the job's mmap window (zero-copy: the codec reads
        the mapping directly) or in its slot of inbuf (pread of coalesced runs, partial
        pages, dense windows)."""
        cdef uint64_t i, nxt, pfn, a, off, lo, hi
        cdef size_t ps = self.src.page_size, ext_i = 0, k = 0
        cdef uint64_t* ext = self.src.ext
        cdef const uint8_t* p
        cdef bint want, whole
        self.run_len = 0
        self.packed = 0
        self.out_len = 0
        self.n_collected = 0
        self.zero_copy = self.src.use_mmap and not self.mmap_broken and not self.dense
        nxt = self.start
        while nxt < self.end:
            # sparse windows (-d 31 keeps a few pages in many): whole empty bytes skipped
            i = nxt if self.dense else _next_bit(self.bitmap, nxt, self.end, True)
            if i >= self.end:
                break
            nxt = i + 1
            want = _bit(self.bitmap, i)
            if k >= <size_t>self.capacity:
                self.err_no = 75  # EOVERFLOW: planner gave too many pages
                return 75
            pfn = self.base_pfn + i
            self.pfn_arr[k] = pfn
            self.flag_arr[k] = 0
            self.page_ptr[k] = self.inbuf + k * ps
            if not want:
                memset(self.inbuf + k * ps, 0, ps)
                self.flag_arr[k] = PAGE_FILLED
            else:
                a = pfn * ps
                while ext_i < self.src.n_ext and ext[3 * ext_i + 1] <= a:
                    ext_i += 1
                whole = ext_i < self.src.n_ext and ext[3 * ext_i] <= a and ext[3 * ext_i + 1] >= a + ps
                if whole:
                    off = ext[3 * ext_i + 2] + (a - ext[3 * ext_i])
                    lo = ext[3 * ext_i + 2]
                    hi = lo + ext[3 * ext_i + 1] - ext[3 * ext_i]
                    if self._in_hole(off, ps):
                        if self.dense:
                            memset(self.inbuf + k * ps, 0, ps)
                        else:
                            self.page_ptr[k] = self.zeros
                    else:
                        p = self._map(off, ps, lo, hi) if self.zero_copy else NULL
                        if p != NULL:
                            self.page_ptr[k] = p
                            self.bytes_read += ps
                        elif self.zero_copy or (self.src.use_mmap and not self.mmap_broken):
                            # past the end of the file, or a mapped copy for a dense window
                            if self._read(self.inbuf + k * ps, off, ps, lo, hi):
                                self._unreadable(k)
                            else:
                                self.bytes_read += ps
                        elif self.run_len and self.run_off + self.run_len == off \
                                and self.run_dst + self.run_len == k * ps and self.run_lo == lo:
                            self.run_len += ps   # same extent, contiguous in file and in the buffer
                        else:
                            self._flush_run()
                            self.run_off, self.run_dst, self.run_len = off, k * ps, ps
                            self.run_lo, self.run_hi = lo, hi
                elif self._read_page(self.inbuf + k * ps, pfn, &ext_i):
                    self._unreadable(k)
            k += 1
            self.n_collected = k
            if k - self.packed >= PACK_CHUNK:
                self._pack_upto(k)
        self._pack_upto(k)
        self.n_pages = k
        return 0

    # -- compressing --------------------------------------------------------
    cdef size_t _compress(self, const uint8_t* src, uint8_t* dst, size_t cap) noexcept nogil:
        """Compressed size, or 0 when the codec fails or does not shrink the page."""
        cdef size_t ps = self.src.page_size, r
        cdef int n
        cdef lzo_uint ll
        if self.codec == CODEC_ZSTD:
            r = ZSTD_compressCCtx(self.zctx, dst, cap, src, ps, 1)
            if ZSTD_isError(r):
                return 0
        elif self.codec == CODEC_LZ4:
            n = LZ4_compress_fast_extState(self.lz4state, <const char*>src, <char*>dst, ps, cap, 1)
            r = n if n > 0 else 0
        elif self.codec == CODEC_LZO:
            ll = cap
            if lzo1x_1_compress(src, ps, dst, &ll, self.lzowrk) != LZO_E_OK:
                return 0
            r = ll
        elif self.codec == CODEC_SNAPPY:
            r = cap
            if snappy_compress(<const char*>src, ps, <char*>dst, &r) != SNAPPY_OK:
                return 0
        elif self.codec == CODEC_ZLIB and self.page_deflater != NULL:
            r = fd_deflate_page(self.page_deflater, src, ps, dst, cap)      # 0: did not fit
        elif self.codec == CODEC_ZLIB:
            r = libdeflate_zlib_compress(self.deflater, src, ps, dst, cap)
        else:
            return 0
        return r if r < ps else 0

    cdef const uint8_t* _erase(self, size_t k, const uint8_t* page) noexcept nogil:
        """Overwrite the page's erased bytes (if any) in its own slot: a page seen through
        the mapping or the shared zero block is copied there first.  Binary search, so
        pages without erased bytes cost one lookup."""
        cdef uint64_t* e = self.src.erase
        cdef uint64_t pfn = self.pfn_arr[k]
        cdef size_t lo = 0, hi = self.src.n_erase, mid, ps = self.src.page_size
        cdef uint8_t* slot = self.inbuf + k * ps
        while lo < hi:
            mid = (lo + hi) // 2
            if e[4 * mid] < pfn:
                lo = mid + 1
            else:
                hi = mid
        if lo >= self.src.n_erase or e[4 * lo] != pfn:
            return page
        if page != slot:
            memcpy(slot, page, ps)
        while lo < self.src.n_erase and e[4 * lo] == pfn:
            memset(slot + e[4 * lo + 1], <int>e[4 * lo + 3], e[4 * lo + 2])
            lo += 1
        self.page_ptr[k] = slot
        return slot

    cdef void _pack_upto(self, size_t end) noexcept nogil:
        """Zero-test and compress pages [packed, end) into outbuf (their bytes are in
        place: the pending read run is read first)."""
        cdef size_t ps = self.src.page_size, cur = self.out_len, r, k
        cdef const uint8_t* page
        self._flush_run()
        for k in range(self.packed, end):
            page = self.page_ptr[k]
            if self.flag_arr[k] & PAGE_UNREADABLE:
                self.size_arr[k] = 0
                continue
            if self.src.n_erase and not (self.flag_arr[k] & PAGE_FILLED):
                page = self._erase(k, page)
            if self.zero_check and not (self.flag_arr[k] & PAGE_FILLED) and (page == self.zeros or _is_zero(page, ps)):
                self.flag_arr[k] |= PAGE_ZERO
                self.size_arr[k] = 0
                self.crc_arr[k] = self.zero_crc   # its descriptor points at the shared zero block
                self.zero_pages += 1
                continue
            if self.scan_only or self.dense:  # dense windows are written from pages_view()
                self.size_arr[k] = 0
                continue
            r = self._compress(page, self.outbuf + cur, self.outbuf_size - cur) if self.codec else 0
            if r:
                self.flag_arr[k] |= self.codec
            else:
                memcpy(self.outbuf + cur, page, ps)
                r = ps
                self.raw_pages += 1
            self.size_arr[k] = r
            self.crc_arr[k] = libdeflate_crc32(0, self.outbuf + cur, r)   # on the worker, while the bytes are cache-hot
            cur += r
        self.packed = end
        self.out_len = cur

    def run(self):
        """Read, test and compress the window.  Called from a worker thread."""
        cdef int rc
        self.n_pages = 0
        self.out_len = 0
        self.zero_pages = self.bytes_read = self.raw_pages = self.unreadable_pages = 0
        self.err_no = 0
        self.err_pfn = 0
        with nogil:
            if fd_bus_arm() == 0:
                rc = self._collect()
                fd_bus_disarm()
            else:
                rc = -1
        if rc == -1:
            # SIGBUS in the mapping: drop it and redo the window with pread
            if self.map_base != NULL:
                munmap(self.map_base, self.map_len)
                self.map_base = NULL
            self.mmap_broken = True
            self.used_pread_fallback = True
            self.sigbus_windows += 1
            self.n_pages = 0
            self.zero_pages = self.bytes_read = self.raw_pages = self.unreadable_pages = 0
            with nogil:
                rc = self._collect()
        self.err_no = rc
        return rc

    # -- results for the writer --------------------------------------------
    @property
    def data(self):
        """The packed page bytes of this window (a view; valid until the next run)."""
        return _View.make(self.outbuf, self.out_len, self)

    def pages_view(self):
        """The raw pages read (dense windows, uncompressed formats)."""
        return _View.make(self.inbuf, <size_t>self.n_pages * self.src.page_size, self)

    @property
    def bitmap(self):
        """The bitmap object this window was planned from."""
        return self.bitmap_obj

    @property
    def window_start(self):
        """Bit index of the window's first pfn within ``bitmap``."""
        return self.start

    @property
    def window(self):
        """(first pfn, end pfn) of the window; a dense window outputs all of them."""
        return self.base_pfn + self.start, self.base_pfn + self.end

    def unreadable_pfns(self):
        """Pfns the source could not deliver (only asked when unreadable_pages > 0)."""
        return [self.pfn_arr[k] for k in range(self.n_pages) if self.flag_arr[k] & PAGE_UNREADABLE]

    def pfns(self):
        """The pfns output, in order (for tests and tools, not the hot path)."""
        return [self.pfn_arr[k] for k in range(self.n_pages)]

    def page_result(self, int k):
        if not 0 <= k < self.n_pages:
            raise IndexError("no such page in this window")
        return self.pfn_arr[k], self.size_arr[k], self.flag_arr[k]

    def kdump_descriptors(self, int64_t data_offset, int64_t zero_offset, codec_flag,
                          uint64_t tag=_TAG_WHOLE):
        """24-byte page descriptors for this window, data starting at ``data_offset``.

        Zero pages point at the shared zero block; unreadable pages get none.  Each
        descriptor's page_flags carries its checksum under ``tag`` (``_desc_checksum``:
        readers leave the field alone).  Returns (view, data bytes)."""
        cdef uint32_t cflag = codec_flag
        if not _is_desc_tag(tag) or tag == _TAG_V1:
            raise ValueError("descriptors are written with DESC_TAG_WHOLE or DESC_TAG_PART")
        cdef int k
        cdef int64_t off = data_offset
        cdef uint8_t* d
        cdef size_t ps = self.src.page_size
        cdef int n = 0
        with nogil:
            for k in range(self.n_pages):
                if self.flag_arr[k] & PAGE_UNREADABLE:
                    continue  # no descriptor: the caller clears its 2nd-bitmap bit
                d = self.descbuf + 24 * n
                n += 1
                memset(d, 0, 24)
                if self.flag_arr[k] & PAGE_ZERO:
                    (<int64_t*>d)[0] = zero_offset
                    (<uint32_t*>(d + 8))[0] = ps
                else:
                    (<int64_t*>d)[0] = off
                    (<uint32_t*>(d + 8))[0] = self.size_arr[k]
                    if self.flag_arr[k] & CODEC_MASK:
                        (<uint32_t*>(d + 12))[0] = cflag
                    off += self.size_arr[k]
                _put_le64(d + 16, _desc_checksum(self.crc_arr[k], d, self.pfn_arr[k], tag))
        return _View.make(self.descbuf, 24 * <size_t>n, self), off - data_offset

    def compress_pages(self, const unsigned char[::1] pages not None):
        """Compress every page of ``pages`` on this thread (GIL released) and return the
        bytes out: the per-core codec ceiling that bench/ reports."""
        cdef size_t ps = self.src.page_size, n = pages.shape[0] // ps, i, r, total = 0
        with nogil:
            for i in range(n):
                r = self._compress(&pages[i * ps], self.outbuf, self.outbuf_size)
                total += r if r else ps
        return total

    def zero_bits_into(self, unsigned char[::1] bm not None, uint64_t base_pfn):
        """Set, in ``bm`` (bit i = base_pfn+i), the bits of this window's zero pages."""
        cdef int k
        cdef uint64_t i, nbits = <uint64_t>bm.shape[0] * 8
        for k in range(self.n_pages):
            if self.flag_arr[k] & PAGE_ZERO and self.pfn_arr[k] - base_pfn >= nbits:
                raise ValueError("a zero page of this window lies outside the bitmap")
        with nogil:
            for k in range(self.n_pages):
                if self.flag_arr[k] & PAGE_ZERO:
                    i = self.pfn_arr[k] - base_pfn
                    bm[i >> 3] |= 1 << (i & 7)


cdef class _View:
    """A read-only buffer over memory a Job owns (no copy on the write path).  It holds
    the Job, so the memory outlives every view of it (what it shows changes when the
    Job runs its next window)."""
    cdef uint8_t* ptr
    cdef Py_ssize_t length
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]
    cdef object owner

    @staticmethod
    cdef object make(uint8_t* ptr, size_t length, object owner):
        cdef _View v = _View.__new__(_View)
        v.ptr = ptr
        v.length = length
        v.owner = owner
        return memoryview(v)

    def __getbuffer__(self, Py_buffer* buf, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("read-only view")
        self.shape[0] = self.length
        self.strides[0] = 1
        buf.buf = self.ptr
        buf.obj = self
        buf.len = self.length
        buf.readonly = 1
        buf.itemsize = 1
        buf.format = NULL
        buf.ndim = 1
        buf.shape = self.shape
        buf.strides = self.strides
        buf.suboffsets = NULL
        buf.internal = NULL

    def __releasebuffer__(self, Py_buffer* buf):
        pass
