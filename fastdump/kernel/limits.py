"""Up-front sanity check of the VMCOREINFO values page classification computes with.

VMCOREINFO comes from the crashed kernel's memory, so any of its numbers may be
garbage.  Every size, length, offset and bit count the judge (memmap, pagetypes,
the scanner, the free-page self-check) divides by, shifts by or indexes with is
checked here, once, before anything is read: an implausible one is a one-line
FastdumpError naming the key (make_judge turns it into an error for levels that
need classification and into a warning for levels 0/1).  Absent keys are not
checked here; the code using them has its defaults or says what it cannot do.

The bounds are wide enough for every Linux architecture and configuration
(struct page 56-80 bytes with debug options, SECTION_SIZE_BITS 24-30,
MAX_PHYSMEM_BITS 32-57, up to ~16 page orders), and tight enough that nothing
derived from them can be zero, negative or absurdly large.
"""

from ..errors import FastdumpError

#: width of the struct page fields the judge reads (a field must fit in SIZE(page))
PAGE_FIELDS = {"flags": 8, "_refcount": 4, "_count": 4, "mapping": 8, "lru": 16, "_mapcount": 4,
               "private": 8, "compound_head": 8, "compound_info": 8, "compound_order": 1,
               "compound_dtor": 1}
STRUCT_PAGE = (16, 512)
MAX_ORDERS = 20               # LENGTH(zone.free_area): NR_PAGE_ORDERS / MAX_ORDER
MAX_STRUCT = 1 << 24          # SIZE/OFFSET of the zone/node structures read by the self-check
MAX_NR_FREE_PAGES_INDEX = 64  # NUMBER(NR_FREE_PAGES): an index into zone.vm_stat[]
MAX_SECTION_SHIFT = 40        # SECTION_SIZE_BITS - PAGE_SHIFT
DEFAULT_SECTION_SIZE_BITS = 27
# structures the free-page self-check walks (pglist_data -> zone -> vm_stat)
SELF_CHECK_PREFIXES = ("zone.", "pglist_data.", "free_area.", "list_head.")
SELF_CHECK_SIZES = ("zone", "pglist_data", "free_area", "list_head", "nodemask_t")


class VmcoreinfoValueError(FastdumpError):
    """A VMCOREINFO value page classification cannot work with."""


def _bad(key, value, why):
    raise VmcoreinfoValueError(f"VMCOREINFO: {key}={value} {why}")


def default_max_physmem_bits(vi):
    return 52 if vi.numbers.get("pgtable_l5_enabled", 0) else 46


def check(vi, page_size):
    """Raise VmcoreinfoValueError (one line) for the first implausible value."""
    if not page_size or page_size & (page_size - 1):
        _bad("PAGESIZE", page_size, "is not a power of two")
    page_shift = page_size.bit_length() - 1
    sizes, offsets, lengths, numbers = vi.sizes, vi.offsets, vi.lengths, vi.numbers

    # struct page
    sp = sizes.get("page")
    if sp is not None and not (STRUCT_PAGE[0] <= sp <= STRUCT_PAGE[1] and sp % 8 == 0):
        _bad("SIZE(page)", sp, f"is implausible (expected a multiple of 8 in {STRUCT_PAGE[0]}..{STRUCT_PAGE[1]})")
    for key in offsets:       # only the keys used here: their values are parsed on access
        if not key.startswith("page."):
            continue
        off = offsets[key]
        width = PAGE_FIELDS.get(key[5:], 1)
        if off < 0 or (sp is not None and off + width > sp):
            _bad(f"OFFSET({key})", off, f"lies outside struct page (SIZE(page)={sp})")
    for key in ("folio._folio_order", "folio._folio_dtor"):     # page[1] fields, as folio offsets
        off = offsets.get(key)
        if off is not None and (sp is None or not sp <= off < 2 * sp):
            _bad(f"OFFSET({key})", off, f"does not lie in the folio's second struct page (SIZE(page)={sp})")

    # memory model
    if "mem_section" in vi.symbols:
        ssb = numbers.get("SECTION_SIZE_BITS", DEFAULT_SECTION_SIZE_BITS)
        mpb = numbers.get("MAX_PHYSMEM_BITS", default_max_physmem_bits(vi))
        if not page_shift < ssb < page_shift + MAX_SECTION_SHIFT:
            _bad("NUMBER(SECTION_SIZE_BITS)", ssb,
                 f"is implausible (expected {page_shift + 1}..{page_shift + MAX_SECTION_SHIFT - 1})")
        if not ssb < mpb <= 64:
            _bad("NUMBER(MAX_PHYSMEM_BITS)", mpb, f"is implausible (expected {ssb + 1}..64)")
        ms = sizes.get("mem_section")
        if ms is not None and not (8 <= ms <= page_size and ms % 8 == 0):
            _bad("SIZE(mem_section)", ms, f"is implausible (expected a multiple of 8 in 8..{page_size})")
        off = offsets.get("mem_section.section_mem_map")
        if off is not None and not 0 <= off <= (ms if ms is not None else 16) - 8:
            _bad("OFFSET(mem_section.section_mem_map)", off,
                 f"lies outside struct mem_section (SIZE(mem_section)={ms if ms is not None else 16})")
        length = lengths.get("mem_section")
        # at most one root per section; a 5-level-capable kernel may size it for 52 bits
        top = 1 << (max(mpb, 52) - ssb)
        if length is not None and not 1 <= length <= top:
            _bad("LENGTH(mem_section)", length, f"is implausible (expected 1..{top})")

    # buddy orders
    nro = lengths.get("zone.free_area")
    if nro is not None and not 1 <= nro <= MAX_ORDERS:
        _bad("LENGTH(zone.free_area)", nro, f"is implausible (expected 1..{MAX_ORDERS})")

    # what the free-page self-check reads
    for key in offsets:
        if key.startswith(SELF_CHECK_PREFIXES) and not 0 <= offsets[key] < MAX_STRUCT:
            _bad(f"OFFSET({key})", offsets[key], "is implausible")
    for key in SELF_CHECK_SIZES:
        v = sizes.get(key)
        if v is not None and not 0 < v < MAX_STRUCT:
            _bad(f"SIZE({key})", v, "is implausible")
    idx = numbers.get("NR_FREE_PAGES")
    if idx is not None and not 0 <= idx < MAX_NR_FREE_PAGES_INDEX:
        _bad("NUMBER(NR_FREE_PAGES)", idx, "is implausible")
    n = lengths.get("node_data")
    if n is not None and n < 1:
        _bad("LENGTH(node_data)", n, "is implausible")
