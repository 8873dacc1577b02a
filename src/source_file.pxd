"""What both compiled readers of the source file (the copy core's Source and the page
scan's Scanner) do with it, written once."""

from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc
from libc.string cimport memcpy
from posix.stat cimport struct_stat, fstat, S_ISREG


cdef inline uint64_t mappable_bytes(int fd) noexcept nogil:
    """How much of the file may be mapped: a regular file's size (a mapped read past it is
    SIGBUS); a device or anything else has no such limit."""
    cdef struct_stat st
    if fd >= 0 and fstat(fd, &st) == 0 and S_ISREG(st.st_mode):
        return <uint64_t>st.st_size
    return <uint64_t>-1


cdef inline uint64_t* copy_extents(const uint64_t[::1] e, size_t* n_ext) except NULL:
    """The extent table (phys_start, phys_end, file_offset triples) as a C array, which the
    caller frees; its number of triples in ``n_ext``."""
    cdef uint64_t* ext = <uint64_t*>malloc(max(1, e.shape[0]) * sizeof(uint64_t))
    if ext == NULL:
        raise MemoryError()
    if e.shape[0]:
        memcpy(ext, &e[0], e.shape[0] * sizeof(uint64_t))
    n_ext[0] = e.shape[0] // 3
    return ext


cdef inline uint64_t map_window(uint64_t off, size_t n, uint64_t lo, uint64_t hi, uint64_t map_limit,
                                uint64_t window, uint64_t* length) noexcept nogil:
    """Where to map the file so that bytes [off, off+n) are in view: its offset (the
    length in ``length``), aligned to ``window`` but never outside the extent's
    page-rounded bytes [lo, hi) (/proc/vmcore refuses a mapping that spans two PT_LOADs)
    nor past the file's last page (a mapped read there is SIGBUS)."""
    cdef uint64_t clo = lo & ~(<uint64_t>4095)
    cdef uint64_t chi = (hi + 4095) & ~(<uint64_t>4095)
    cdef uint64_t moff = off & ~(window - 1)
    cdef uint64_t mend = (off + n + window - 1) & ~(window - 1)
    # no limit (a device): rounding it up would wrap to 0 and no mapping would ever be made
    if map_limit != <uint64_t>-1 and chi > ((map_limit + 4095) & ~(<uint64_t>4095)):
        chi = (map_limit + 4095) & ~(<uint64_t>4095)
    if moff < clo:
        moff = clo
    if mend > chi:
        mend = chi
    length[0] = mend - moff
    return moff
