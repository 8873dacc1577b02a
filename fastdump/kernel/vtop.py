"""x86_64 virtual -> physical translation from VMCOREINFO and the dump itself.

Three ways, tried in this order for every address:

* the kernel's own page tables, rooted at ``SYMBOL(init_top_pgt)`` (older
  kernels: ``init_level4_pgt``), 4 or 5 levels (``NUMBER(pgtable_l5_enabled)``),
  1 GiB / 2 MiB large pages, the AMD SME C-bit (``NUMBER(sme_mask)``) removed;
* the kernel image: ``va - 0xffffffff80000000 + phys_base``;
* the direct map: ``va - page_offset``, page_offset taken from a RAM PT_LOAD
  (``p_vaddr - p_paddr``), as makedumpfile does.

Walks are cached per leaf region (1 GiB, 2 MiB, or a whole 4 KiB PTE table),
so translating a long vmemmap range costs one table read per 2 MiB.
"""

import struct

from ..errors import FastdumpError
from .limits import default_max_physmem_bits

KERNEL_MAP_START = 0xFFFFFFFF80000000
DEFAULT_KERNEL_IMAGE_SIZE = 1 << 30
U64 = (1 << 64) - 1
ENTRY_ADDR_MASK = 0x000FFFFFFFFFF000
PRESENT, LARGE = 0x1, 0x80
_Q = struct.Struct("<Q")


class TranslationError(FastdumpError):
    """A virtual address that cannot be translated with what the dump holds."""


def _canonical(va):
    va &= U64
    return va


class X86_64Vtop:
    def __init__(self, source, vmci=None):
        self.source = source
        self.vmci = vmci if vmci is not None else source.vmcoreinfo
        vi = self.vmci
        self.phys_base = (vi.phys_base if vi is not None and vi.phys_base is not None else None)
        self.sme_mask = (vi.numbers.get("sme_mask", 0) & U64) if vi is not None else 0
        self.levels = 5 if (vi is not None and vi.numbers.get("pgtable_l5_enabled", 0)) else 4
        self.max_physmem_bits = (vi.numbers.get("MAX_PHYSMEM_BITS", default_max_physmem_bits(vi))
                                 if vi is not None else 52)
        self.image_size = (vi.numbers.get("KERNEL_IMAGE_SIZE", DEFAULT_KERNEL_IMAGE_SIZE)
                           if vi is not None else DEFAULT_KERNEL_IMAGE_SIZE)
        self.addr_mask = ENTRY_ADDR_MASK & ~self.sme_mask
        # Kernel image load segment(s) and the direct-map offset from the PT_LOADs.
        self.page_offset = None
        self.text_loads = []
        for p in getattr(source, "loads", []):
            if p.vaddr >= KERNEL_MAP_START:
                self.text_loads.append(p)
            elif p.vaddr and p.vaddr != U64 and p.vaddr >= 0xFF00000000000000:
                self.page_offset = (p.vaddr - p.paddr) & U64  # last one wins, as makedumpfile
        if self.phys_base is None and self.text_loads:
            p = self.text_loads[0]
            self.phys_base = (p.paddr - (p.vaddr - KERNEL_MAP_START)) & U64
        self.pgd = None
        if vi is not None:
            root = vi.symbols.get("init_top_pgt", vi.symbols.get("init_level4_pgt"))
            if root is not None and self.phys_base is not None:
                self.pgd = self.kernel_image_pa(root)
        self._cache_1g, self._cache_2m, self._pte_tables = {}, {}, {}
        self._tables = {}

    # -- fixed offsets -----------------------------------------------------
    def kernel_image_pa(self, va):
        return (va - KERNEL_MAP_START + self.phys_base) & U64

    def in_kernel_image(self, va):
        return KERNEL_MAP_START <= va < KERNEL_MAP_START + self.image_size

    def _fixed(self, va):
        if self.in_kernel_image(va) and self.phys_base is not None:
            return self.kernel_image_pa(va)
        # the direct map covers physical memory only: MAX_PHYSMEM_BITS (46, or 52 with
        # five-level tables), and no further than the memory this dump describes
        top = 1 << self.max_physmem_bits
        max_pfn = getattr(self.source, "max_pfn", None)
        if max_pfn:
            top = min(top, max_pfn * getattr(self.source, "page_size", 4096))
        if self.page_offset is not None and self.page_offset <= va < self.page_offset + top:
            return va - self.page_offset
        return None

    # -- page-table walk -------------------------------------------------------
    def _table(self, pa):
        t = self._tables.get(pa)
        if t is None:
            if len(self._tables) > 4096:
                self._tables.clear()
            t = self.source.read_phys(pa, 4096)
            self._tables[pa] = t
        return t

    def _entry(self, table_pa, index):
        return _Q.unpack_from(self._table(table_pa), index * 8)[0]

    def walk(self, va):
        """Physical address of ``va`` via the page tables, or raise TranslationError."""
        va = _canonical(va)
        hit = self._cache_2m.get(va >> 21)
        if hit is not None:
            kind, base = hit
            if kind == 2:
                return base + (va & 0x1FFFFF)
            e = _Q.unpack_from(base, ((va >> 12) & 511) * 8)[0]
            if not e & PRESENT:
                raise TranslationError(f"virtual address {va:#x} is not mapped (PTE)")
            return (e & self.addr_mask) + (va & 0xFFF)
        hit = self._cache_1g.get(va >> 30)
        if hit is not None:
            return hit + (va & 0x3FFFFFFF)
        if self.pgd is None:
            raise TranslationError("no page-table root (SYMBOL(init_top_pgt)/phys_base) in VMCOREINFO")
        try:
            table = self.pgd
            shifts = (48, 39) if self.levels == 5 else (39,)
            for shift in shifts:
                e = self._entry(table, (va >> shift) & 511)
                if not e & PRESENT:
                    raise TranslationError(f"virtual address {va:#x} is not mapped (PGD/P4D)")
                table = e & self.addr_mask
            e = self._entry(table, (va >> 30) & 511)              # PUD
            if not e & PRESENT:
                raise TranslationError(f"virtual address {va:#x} is not mapped (PUD)")
            if e & LARGE:
                base = e & self.addr_mask & ~0x3FFFFFFF
                self._remember(self._cache_1g, va >> 30, base)
                return base + (va & 0x3FFFFFFF)
            e = self._entry(e & self.addr_mask, (va >> 21) & 511)  # PMD
            if not e & PRESENT:
                raise TranslationError(f"virtual address {va:#x} is not mapped (PMD)")
            if e & LARGE:
                base = e & self.addr_mask & ~0x1FFFFF
                self._remember(self._cache_2m, va >> 21, (2, base))
                return base + (va & 0x1FFFFF)
            pte_table = self.source.read_phys(e & self.addr_mask, 4096)
            self._remember(self._cache_2m, va >> 21, (1, pte_table))
            e = _Q.unpack_from(pte_table, ((va >> 12) & 511) * 8)[0]
            if not e & PRESENT:
                raise TranslationError(f"virtual address {va:#x} is not mapped (PTE)")
            return (e & self.addr_mask) + (va & 0xFFF)
        except TranslationError:
            raise
        except FastdumpError as e:  # NotPresentError and friends: a table is not in the dump
            raise TranslationError(f"page table for {va:#x} unreadable: {e}") from None

    def kernel_image_range(self):
        """Physical (start, end) of the kernel image, as its own page tables map it at
        __START_KERNEL_map: from _stext in 2 MiB steps while mapped (the kernel keeps
        [_text, _end) mapped and clears the rest).  None when it cannot be told."""
        vi = self.vmci
        if self.pgd is None or self.phys_base is None or vi is None:
            return None
        start = vi.symbols.get("_stext")
        if start is None or not self.in_kernel_image(start):
            return None
        va = start & ~0x1FFFFF
        end = va
        try:
            while end < KERNEL_MAP_START + self.image_size and \
                    self.walk(end) == self.kernel_image_pa(end):
                end += 1 << 21
        except TranslationError:
            pass
        if end == va:
            return None
        return self.kernel_image_pa(va), self.kernel_image_pa(end)

    @staticmethod
    def _remember(cache, key, value):
        if len(cache) > 65536:
            cache.clear()
        cache[key] = value

    def translate(self, va):
        """Physical address of kernel virtual address ``va``."""
        try:
            return self.walk(va)
        except TranslationError:
            pa = self._fixed(va)
            if pa is None:
                raise
            return pa

    def runs(self, va, size, *, skip_unmapped=False):
        """``[(va, pa, length)]``: physically contiguous pieces of ``[va, va+size)``.
        With ``skip_unmapped``, 4 KiB pages that do not translate are left out (pieces
        are then merged only where both addresses continue) instead of raising."""
        out = []
        end = va + size
        while va < end:
            try:
                pa = self.translate(va)
            except TranslationError:
                if not skip_unmapped:
                    raise
                va = (va | 0xFFF) + 1
                continue
            n = min(end, self._leaf_end(va)) - va
            if out and out[-1][1] + out[-1][2] == pa and out[-1][0] + out[-1][2] == va:
                v0, p0, l0 = out[-1]
                out[-1] = (v0, p0, l0 + n)
            else:
                out.append((va, pa, n))
            va += n
        return out

    def _leaf_end(self, va):
        """End of the region that translates linearly with ``va`` (as last walked)."""
        hit = self._cache_2m.get(va >> 21)
        if hit is not None and hit[0] == 2:
            return ((va >> 21) + 1) << 21
        if (va >> 30) in self._cache_1g:
            return ((va >> 30) + 1) << 30
        return (va | 0xFFF) + 1

    def read(self, va, size):
        buf = bytearray()
        for _, pa, n in self.runs(va, size):
            buf += self.source.read_phys(pa, n)
        return bytes(buf)

    def read_u64(self, va):
        return _Q.unpack(self.read(va, 8))[0]

    def describe(self):
        return {"levels": self.levels, "pgd": self.pgd, "phys_base": self.phys_base,
                "page_offset": self.page_offset, "sme_mask": self.sme_mask}
