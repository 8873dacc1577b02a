# The numbers the struct-page scan and its Python set-up must agree on, defined once
# for Cython (src/_pagescan.pyx cimports the names) and Python (fastdump._pageclass;
# kernel/pagetypes.py takes its CLASSES and the layout modes from it).
#
# PageClass: the classes the scan sorts pages into, and its extra counters: the
# index of each in the scan's counts[] array.  It lives beside the compiled module (src/_pageclass.pyx),
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


# How a kernel layout encodes what the scan reads (chosen by kernel/pagetypes.py).
cpdef enum TypeMode:          # page_type
    TYPE_NONE = 0
    TYPE_FULL = 1             # the whole word is the type (older kernels)
    TYPE_TOPBYTE = 2          # the type is the top byte (6.12+)

cpdef enum OrderMode:         # a compound page's order
    ORDER_NONE = 0
    ORDER_U8 = 1              # a byte at an offset in page[1] (compound_order / _folio_order)
    ORDER_FLAGS = 2           # in page[1]'s flags (folio order bits)

cpdef enum HugetlbMode:       # how a hugetlb head is recognised
    HUGETLB_NONE = 0
    HUGETLB_DTOR = 1          # compound destructor index
    HUGETLB_FLAG = 2          # a page flag
    HUGETLB_TYPE = 3          # a page_type
