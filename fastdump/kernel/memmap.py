"""Where the kernel keeps ``struct page`` for each pfn (SPARSEMEM or FLATMEM).

SPARSEMEM: ``mem_section`` is a table of ``struct mem_section`` (EXTREME: a
table of pointers to 4 KiB root pages of them).  Each section's
``section_mem_map`` holds an *encoded* pointer: the address of the section's
first struct page minus (section start pfn * SIZE(page)), with flag bits in
its low bits.  So struct page of pfn = decoded + pfn * SIZE(page), and with
VMEMMAP the decoded value is the vmemmap base for every section.

Output: for a pfn range, the physical runs holding its struct pages
(``phys_runs``), which is what the scanner reads in batches.
"""

import struct

from ..errors import FastdumpError
from . import limits
from .vtop import TranslationError

_Q = struct.Struct("<Q")
SECTION_MARKED_PRESENT = 1 << 0
SECTION_HAS_MEM_MAP = 1 << 1
SECTION_FLAG_MASK = 0x3F  # PRESENT, HAS_MEM_MAP, ONLINE, EARLY, TAINT_ZONE_DEVICE, VMEMMAP_PREINIT
U64 = (1 << 64) - 1
KERNEL_SPACE = 0xFF00000000000000


class MemmapError(FastdumpError):
    pass


def _is_kernel_va(v):
    return v >= KERNEL_SPACE and v != U64


class MemMap:
    """``struct page`` locations, read through ``mem`` (a KernelMemory).  ``warn(msg)``
    receives one-line notes."""

    def __init__(self, source, mem, warn=None):
        self.source, self.mem = source, mem
        self.vmci = vi = mem.vmcoreinfo
        self.warn = warn or (lambda m: None)
        self.page_size = source.page_size
        limits.check(vi, self.page_size)   # every size, length and bit count used below is sane
        self.struct_size = vi.size("page")
        self._sections = {}
        self._roots = {}
        self.vmemmap_base = None  # set when every section decodes to the same base
        if "mem_section" in vi.symbols:
            self.model = "sparsemem"
            self._init_sparse()
        elif "mem_map" in vi.symbols:
            self.model = "flatmem"
            self._init_flat()
        else:
            raise MemmapError("VMCOREINFO has neither SYMBOL(mem_section) nor SYMBOL(mem_map): "
                              "cannot find struct pages")

    # -- FLATMEM ---------------------------------------------------------------
    def _init_flat(self):
        vi = self.vmci
        sym = vi.symbol("mem_map")
        try:
            self.mem_map = self.mem.u64(sym)
        except FastdumpError as e:
            raise MemmapError(f"cannot read the mem_map pointer at {sym:#x}: {e}") from None
        if not _is_kernel_va(self.mem_map):
            raise MemmapError(f"mem_map pointer {self.mem_map:#x} is not a kernel address")
        self.section_shift = 62  # one "section"
        self.pages_per_section = 1 << 62
        self.extreme = False
        self.vmemmap_base = self.mem_map

    # -- SPARSEMEM -------------------------------------------------------------
    def _init_sparse(self):
        vi = self.vmci
        l5 = bool(vi.numbers.get("pgtable_l5_enabled", 0))
        self.section_size_bits = vi.numbers.get("SECTION_SIZE_BITS", limits.DEFAULT_SECTION_SIZE_BITS)
        self.max_physmem_bits = vi.numbers.get("MAX_PHYSMEM_BITS", limits.default_max_physmem_bits(vi))
        page_shift = self.page_size.bit_length() - 1
        self.section_shift = self.section_size_bits - page_shift
        self.pages_per_section = 1 << self.section_shift
        self.ms_size = vi.sizes.get("mem_section", 16)
        self.off_map = vi.offsets.get("mem_section.section_mem_map", 0)
        self.nr_sections = 1 << (self.max_physmem_bits - self.section_size_bits)
        per_root = self.page_size // self.ms_size
        nr_roots = -(-self.nr_sections // per_root)
        length = vi.lengths.get("mem_section")
        self.extreme = length is None or length == nr_roots or (l5 and length in (
            -(-(1 << (46 - self.section_size_bits)) // per_root),))
        if length is not None and not self.extreme and length != self.nr_sections:
            self.warn(f"LENGTH(mem_section)={length} matches neither SPARSEMEM_EXTREME ({nr_roots} roots) "
                      f"nor a flat section table ({self.nr_sections}); assuming EXTREME")
            self.extreme = True
        self.sections_per_root = per_root if self.extreme else self.nr_sections
        self.nr_roots = max(nr_roots, length or 0) if self.extreme else 1
        sym = vi.symbol("mem_section")
        # 4.15-era kernels exported the address of the pointer instead of the
        # array: try as given, validate, then dereference once.
        self.mem_section = sym
        problems = self._validate()
        if problems:
            try:
                deref = self.mem.u64(sym)
            except FastdumpError:
                deref = None
            if deref and _is_kernel_va(deref):
                self.mem_section = deref
                self._sections.clear()
                self._roots.clear()
                again = self._validate()
                if not again:
                    self.warn("SYMBOL(mem_section) is the address of the pointer; dereferenced it")
                    problems = None
                else:
                    self.mem_section = sym
                    self._sections.clear()
                    self._roots.clear()
            if problems:
                raise MemmapError(f"mem_section at {sym:#x} does not decode: {problems}")
        bases = {self._sections.get(n) for n in self._sections} - {None}
        if len(bases) == 1:
            self.vmemmap_base = bases.pop()

    def _section_struct_va(self, nr):
        if self.extreme:
            root_nr, idx = divmod(nr, self.sections_per_root)
            if root_nr >= self.nr_roots:
                return None
            root = self._roots.get(root_nr)
            if root is None:
                root = self.mem.u64(self.mem_section + root_nr * 8)
                self._roots[root_nr] = root
            if root == 0:
                return None
            if not _is_kernel_va(root):
                raise MemmapError(f"mem_section root {root_nr} = {root:#x} is not a kernel address")
            return root + idx * self.ms_size
        if nr >= self.nr_sections:
            return None
        return self.mem_section + nr * self.ms_size

    def section_mem_map(self, nr):
        """Decoded mem_map of section ``nr`` (struct page of pfn = it + pfn*SIZE(page)),
        or None if the section has no memory map."""
        if nr in self._sections:
            return self._sections[nr]
        va = self._section_struct_va(nr)
        value = None
        if va is not None:
            word = self.mem.u64(va + self.off_map)
            if word & SECTION_MARKED_PRESENT and word & SECTION_HAS_MEM_MAP:
                decoded = word & ~SECTION_FLAG_MASK & U64
                if not _is_kernel_va((decoded + (nr << self.section_shift) * self.struct_size) & U64):
                    raise MemmapError(f"section {nr}: section_mem_map {word:#x} does not decode "
                                      f"to a kernel address")
                value = decoded
        if len(self._sections) > 1 << 20:
            self._sections.clear()
        self._sections[nr] = value
        return value

    def _validate(self):
        """None if every section that holds dumped pages decodes; else a description."""
        seen = 0
        try:
            for first, end in self.source.present_runs():
                for nr in range(first >> self.section_shift, ((end - 1) >> self.section_shift) + 1):
                    if nr in self._sections:
                        continue
                    if self.section_mem_map(nr) is not None:
                        seen += 1
        except (FastdumpError, TranslationError) as e:
            return str(e)
        if not seen:
            return "no present section covers the dumped memory"
        return None

    # -- queries ---------------------------------------------------------------
    def section_of(self, pfn):
        return pfn >> self.section_shift if self.model == "sparsemem" else 0

    def struct_va(self, pfn):
        """Virtual address of the struct page of ``pfn`` (None: no memory map)."""
        if self.model == "flatmem":
            return (self.mem_map + pfn * self.struct_size) & U64
        try:
            base = self.section_mem_map(pfn >> self.section_shift)
        except (FastdumpError, TranslationError):
            return None
        if base is None:
            return None
        return (base + pfn * self.struct_size) & U64

    def pfn_of_struct_va(self, va, near_pfn):
        """pfn whose struct page is at ``va``, assuming it shares a virtually
        contiguous map with ``near_pfn``; None if that does not check out."""
        near = self.struct_va(near_pfn)
        if near is None:
            return None
        delta = va - near
        if delta % self.struct_size:
            return None
        pfn = near_pfn + delta // self.struct_size
        if pfn < 0 or self.struct_va(pfn) != va:
            return None
        return pfn

    def chunks(self, first_pfn, end_pfn):
        """Split ``[first, end)`` at section boundaries: ``(a, b, struct_va or None)``."""
        pfn = first_pfn
        while pfn < end_pfn:
            if self.model == "flatmem":
                b = end_pfn
            else:
                b = min(end_pfn, ((pfn >> self.section_shift) + 1) << self.section_shift)
            yield pfn, b, self.struct_va(pfn)
            pfn = b

    def phys_runs(self, first_pfn, end_pfn):
        """``[(pfn_a, pfn_b, phys)]``: struct pages of pfn_a..pfn_b-1 are contiguous at phys.
        pfns without a memory map or with untranslatable struct pages are left out."""
        out = []
        for a, b, va in self.chunks(first_pfn, end_pfn):
            if va is None:
                continue
            pfn = a
            size = self.struct_size
            while pfn < b:
                try:
                    pieces = self.mem.runs(va + (pfn - a) * size, (b - pfn) * size)
                except TranslationError:
                    # find the translatable part page by page (rare: holes in vmemmap)
                    step = max(1, self.page_size // size)
                    nxt = min(b, pfn + step - (pfn % step))
                    try:
                        pa = self.mem.translate(va + (pfn - a) * size)
                        out.append((pfn, nxt, pa))
                    except TranslationError:
                        pass
                    pfn = nxt
                    continue
                for v, pa, n in pieces:
                    p0 = a + (v - va) // size
                    p1 = p0 + n // size
                    if n % size:  # a struct page straddles two physical pieces: read it apart
                        p1 += 1
                    out.append((p0, min(p1, b), pa))
                break
        return out

    def describe(self):
        d = {"model": self.model, "struct_size": self.struct_size, "vmemmap_base": self.vmemmap_base}
        if self.model == "sparsemem":
            d.update(extreme=self.extreme, section_size_bits=self.section_size_bits,
                     max_physmem_bits=self.max_physmem_bits, mem_section=self.mem_section)
        return d
