"""The crashed kernel's memory, read through one object.

As drgn's program memory reader does for its users, ``KernelMemory`` is the one
way the kernel-memory readers (the log, utsname, the page judge and its memory
map) look at the crashed kernel:
virtual addresses go through the kernel's own page tables (``vtop.py``, with the
kernel-image and direct-map offsets as fallbacks), physical reads go to the
source (an ELF vmcore, a raw memory image or a dump), and VMCOREINFO keys are
looked up with their bounds checked.  Every failure is one line in the caller's
error class, never a traceback.
"""

import struct

from ..errors import FastdumpError
from .vtop import X86_64Vtop

U64 = (1 << 64) - 1
PAGE = 4096
#: the largest struct (or struct offset) read whole from the kernel
MAX_STRUCT = 4096


def first_line(e):
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class KernelMemory:
    """Virtual and physical reads of the crashed kernel in ``source``.  With
    ``strict=False`` a byte that is missing or does not translate reads as zero
    and is counted in ``missing``, so one lost page loses only what is on it."""

    def __init__(self, source, vmcoreinfo=None, *, error=FastdumpError, erased=None):
        """``erased``: an erase.EraseList (--config) whose bytes every read sees erased."""
        self.source = source
        self.erased = erased
        self.vmcoreinfo = vmcoreinfo if vmcoreinfo is not None else source.vmcoreinfo
        self.vtop = X86_64Vtop(source, self.vmcoreinfo)
        self.error = error
        self.missing = 0            # bytes that read as zeros

    def translate(self, va):
        """The physical address of kernel virtual address ``va`` (TranslationError if none)."""
        return self.vtop.translate(va & U64)

    def runs(self, va, size, *, skip_unmapped=False):
        """``(va, pa, n)`` pieces of a virtual range, each contiguous in physical memory:
        where a caller that reads in bulk (the compiled struct-page scanner) reads."""
        return self.vtop.runs(va & U64, size, skip_unmapped=skip_unmapped)

    def kernel_image_range(self):
        """Physical ``(start, end)`` of the kernel image, or None."""
        return self.vtop.kernel_image_range()

    def read_phys(self, pa, size):
        if pa < 0 or size < 0 or pa + size > U64:
            raise self.error(f"physical range {pa:#x}+{size:#x} is outside memory")
        data = self.source.read_phys(pa, size)
        return self.erased.overlay(pa, data) if self.erased else data

    def read(self, va, size, *, strict=True):
        """``size`` bytes at kernel virtual address ``va``: one read per physically contiguous
        piece (the kernel image, a BTF blob of megabytes: a few reads, not one per page);
        when any of it is missing, page by page, as below."""
        if size > PAGE:
            try:
                pieces = [self.read_phys(pa, n) for _, pa, n in self.vtop.runs(va & U64, size)]
                # one piece (the kernel image is contiguous) is returned as read: in a fresh
                # process every megabyte copied is a megabyte of new pages to fault in
                return pieces[0] if len(pieces) == 1 else b"".join(pieces)
            except FastdumpError:       # a TranslationError too
                pass        # say which page, or zero-fill it: the careful way
        out = bytearray()
        end = va + size
        while va < end:
            n = min(end, (va | (PAGE - 1)) + 1) - va
            try:
                out += self.read_phys(self.translate(va), n)
            except FastdumpError as e:
                if strict:
                    raise self.error(f"kernel address {va:#x} is not readable in this dump "
                                     f"({first_line(e)})") from None
                out += bytes(n)
                self.missing += n
            va += n
        return bytes(out)

    def u64(self, va):
        return struct.unpack("<Q", self.read(va, 8))[0]

    def u32(self, va):
        return struct.unpack("<I", self.read(va, 4))[0]

    def keys(self, what):
        """VMCOREINFO look-ups for reading ``what`` (named in their errors)."""
        return Keys(self.vmcoreinfo, what, self.error)


class Keys:
    """VMCOREINFO look-ups that fail with one line naming the missing key; struct
    offsets and sizes are bounded before anything is allocated from them."""

    def __init__(self, vi, what, error=FastdumpError):
        self.vi, self.what, self.error = vi, what, error

    def _get(self, table, form, name):
        value = table.get(name)
        if value is None:
            raise self.error(f"{self.what}: VMCOREINFO has no {form}({name})")
        return value

    def sym(self, name):
        return self._get(self.vi.symbols, "SYMBOL", name)

    def off(self, name):
        value = self._get(self.vi.offsets, "OFFSET", name)
        if not 0 <= value < MAX_STRUCT:
            raise self.error(f"{self.what}: OFFSET({name})={value} is out of range")
        return value

    def size(self, name):
        value = self._get(self.vi.sizes, "SIZE", name)
        if not 0 < value <= MAX_STRUCT:
            raise self.error(f"{self.what}: SIZE({name})={value} is out of range")
        return value
