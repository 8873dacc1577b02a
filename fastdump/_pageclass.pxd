# The classes the struct-page scan sorts pages into, and its extra counters: the
# index of each in the scan's counts[] array.  One definition for Cython (cimport
# the names) and Python (fastdump._pageclass.PageClass; kernel/pagetypes.py takes
# its CLASSES from it).  It lives beside the compiled module (src/_pageclass.pyx),
# where Cython looks for a module's own declarations.
cpdef enum PageClass:
    C_FREE = 0
    C_CACHE = 1
    C_CACHE_PRIVATE = 2
    C_USER = 3
    C_HWPOISON = 4
    C_OFFLINE = 5
    C_UNCLASSIFIED = 6
    C_FREE_SEEN = 7       # buddy/unaccepted pages seen (any dump level), for the self-check
    C_PROTECTED = 8       # would have been dropped but lie in the kernel image
    C_SLAB = 9            # slab pages seen (kept)
    NCOUNTS = 10
