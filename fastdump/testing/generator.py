"""Synthetic ELF vmcores of any size, for tests, the README demo and bench/.

The file looks like what ``/proc/vmcore`` presents: a merged PT_NOTE (one
NT_PRSTATUS per CPU and a VMCOREINFO note), a kernel-text PT_LOAD that repeats
part of RAM, then one PT_LOAD per RAM range with holes between them, all
page-aligned.  Page contents follow a class per pfn, chosen from runs so that
gigabytes are described by a few tuples; zero and free pages can be left as
file holes (``sparse=True``) so a 1 TiB dump costs little disk.

A *kernel layout* (see ``kernel_layout.py``) can be plugged in: it chooses the
class of every pfn, writes the kernel's own metadata (struct page arrays,
mem_section, page tables) into physical memory and adds its VMCOREINFO keys,
so classification is tested against a known truth.
"""

import json
import os
import random
import struct
from dataclasses import dataclass, field

from ..formats import elf
from .. import safefile

PAGE = 4096
MiB = 1 << 20
GiB = 1 << 30

#: Page contents by class.  Classes that a dump level may drop carry a marker
#: so a test can find them in any output.
CONTENT_CLASSES = ("zero", "random", "text", "pointers", "free", "cache", "cache_private",
                   "user", "slab", "kernel", "hwpoison", "offline", "metadata")
#: "metadata": pages that hold what a kernel layout writes (struct pages, page
#: tables, mem_section); the generator writes nothing there, the layout's
#: metadata_writes() provide every non-zero byte (so they carry no marker).


@dataclass
class VmcoreSpec:
    ram_size: int = 256 * MiB
    #: RAM ranges (phys_start, phys_end); default: a PC-like map with holes.
    ram_ranges: list = None
    elfclass: int = elf.ELFCLASS64
    nr_cpus: int = 2
    seed: int = 1
    sparse: bool = False
    #: Weights of the default page mix when no kernel layout is given.
    mix: dict = field(default_factory=lambda: {"zero": 30, "random": 15, "text": 30, "pointers": 25})
    phoff: int = 64
    osrelease: str = "6.1.0-fastdump-synthetic"
    crashtime: int = 1764000000
    #: Run length (pages) of the default mix; realistic dumps cluster classes.
    run_pages: int = 64
    kernel_text: tuple = (16 * MiB, 48 * MiB)  # phys range the kernel image occupies


def default_ram_ranges(ram_size):
    """Like a PC: 4 KiB..640 KiB minus a partial last page, a 32-bit hole, the rest high."""
    ranges = [(0x1000, 0x9FC00)]
    low_end = min(ram_size, 3 * GiB)
    ranges.append((1 * MiB, low_end))
    if ram_size > low_end:
        ranges.append((4 * GiB, 4 * GiB + ram_size - low_end))
    return ranges


class _DefaultClasses:
    """Runs of the default page mix: deterministic from the seed."""

    def __init__(self, spec, ram_ranges):
        self.spec, self.ram_ranges = spec, ram_ranges

    def class_runs(self):
        rng = random.Random(self.spec.seed)
        names = list(self.spec.mix)
        weights = [self.spec.mix[n] for n in names]
        for start, end in self.ram_ranges:
            pfn, last = start // PAGE, -(-end // PAGE)
            while pfn < last:
                n = min(last - pfn, rng.randint(1, 2 * self.spec.run_pages))
                yield pfn, pfn + n, rng.choices(names, weights)[0]
                pfn += n

    def metadata_writes(self):
        return ()

    def vmcoreinfo_lines(self):
        return []


def run_content(cls, first, n, seed):
    """Bytes of ``n`` pages of class ``cls`` from pfn ``first`` (None: all zero).

    Every non-zero page starts with a marker ``FDMARK:<class>:<pfn>:`` so tests
    can tell from any output which pages were kept."""
    if cls in ("zero", "metadata"):
        return None
    if cls == "text":
        line = b"kernel panic - not syncing: fastdump synthetic text, page cache and logs. "
        page = (line * (PAGE // len(line) + 1))[:PAGE]
        buf = bytearray(page * n)
    elif cls == "pointers":
        base = 0xFFFF888000000000 + (first << 12)
        page = b"".join(struct.pack("<QQ", base + i * 64, i) for i in range(PAGE // 16))
        buf = bytearray(page * n)
    else:  # incompressible, derived from (seed, first pfn)
        buf = bytearray(random.Random(seed * 1_000_003 + first).randbytes(n * PAGE))
    for i in range(n):
        tag = b"FDMARK:%s:%d:" % (cls.encode(), first + i)
        buf[i * PAGE:i * PAGE + len(tag)] = tag
    return buf


class SyntheticVmcore:
    """Writes one vmcore and keeps the truth about it (class of every pfn)."""

    def __init__(self, spec=None, layout=None):
        self.spec = spec or VmcoreSpec()
        self.ram_ranges = self.spec.ram_ranges or default_ram_ranges(self.spec.ram_size)
        self.layout = layout if layout is not None else _DefaultClasses(self.spec, self.ram_ranges)
        if hasattr(self.layout, "bind"):  # a kernel layout learns the RAM map, sparseness, kernel text
            self.layout.bind(self.spec, self.ram_ranges, self)

    # -- the kernel image: utsname where VMCOREINFO says ---------------------
    KERNEL_VIRT = 0xFFFFFFFF81000000   # _stext, mapped at phys kernel_text[0]
    UTS_OFFSET = 0x1A12340             # init_uts_ns - _stext

    PGD_OFFSET = 0x1800000             # init_top_pgt - _stext; then 3 more table pages
    DIRECT_MAP = 0xFFFF888000000000

    @property
    def phys_base(self):
        return self.spec.kernel_text[0] - (self.KERNEL_VIRT - 0xFFFFFFFF80000000)

    def kernel_image_lines(self):
        """Keys every x86_64 kernel exports about its image (tools need them to start)."""
        pgd = self.KERNEL_VIRT + self.PGD_OFFSET
        return [f"SYMBOL(init_uts_ns)={self.KERNEL_VIRT + self.UTS_OFFSET:x}",
                "OFFSET(uts_namespace.name)=4", f"SYMBOL(_stext)={self.KERNEL_VIRT:x}",
                f"SYMBOL(init_top_pgt)={pgd:x}", f"SYMBOL(swapper_pg_dir)={pgd:x}",
                f"NUMBER(phys_base)={self.phys_base}", "NUMBER(pgtable_l5_enabled)=0", "KERNELOFFSET=0",
                f"NUMBER(KERNEL_IMAGE_SIZE)={1 << 30}"]

    MEM_MAP_VAR = 0x1A20000            # &mem_map - _stext (FLATMEM stand-in)

    def flatmem_lines(self):
        """A FLATMEM description for layouts that bring no struct pages of their own:
        enough for tools to start at dump levels 0 and 1, which read no struct page."""
        return [f"SYMBOL(mem_map)={self.KERNEL_VIRT + self.MEM_MAP_VAR:x}", "SIZE(page)=64",
                "OFFSET(page.flags)=0", "OFFSET(page._refcount)=52", "OFFSET(page.mapping)=24"]

    def flatmem_writes(self):
        # the struct page array "lives" right after the kernel image (never read at -d 0/1)
        return [(self.spec.kernel_text[0] + self.MEM_MAP_VAR,
                 struct.pack("<Q", self.DIRECT_MAP + self.spec.kernel_text[1]))]

    def kernel_image_writes(self):
        """utsname, and 4-level page tables: the kernel image with 2 MiB pages, the
        direct map with 1 GiB pages (what a walker meets on a real x86_64 kernel)."""
        uts = [b"Linux", b"fastdump-synthetic", self.spec.osrelease.encode(), b"#1 SMP PREEMPT_DYNAMIC",
               b"x86_64", b"(none)"]
        name = b"".join(f.ljust(65, b"\0") for f in uts)
        kt_lo, kt_hi = self.spec.kernel_text
        pgd_pa = kt_lo + self.PGD_OFFSET
        pud_k, pmd_k, pud_d = pgd_pa + PAGE, pgd_pa + 2 * PAGE, pgd_pa + 3 * PAGE
        table = 0x63  # present, rw, accessed, dirty
        pgd, pudk, pmdk, pudd = (bytearray(PAGE) for _ in range(4))
        struct.pack_into("<Q", pgd, 8 * 511, pud_k | table)
        struct.pack_into("<Q", pudk, 8 * 510, pmd_k | table)
        for pa in range(kt_lo & ~0x1FFFFF, kt_hi, 2 * MiB):
            va = 0xFFFFFFFF80000000 + pa - self.phys_base
            struct.pack_into("<Q", pmdk, 8 * ((va >> 21) & 511), pa | table | 0x80)
        struct.pack_into("<Q", pgd, 8 * ((self.DIRECT_MAP >> 39) & 511), pud_d | table)
        top = max(e for _, e in self.ram_ranges)
        for gib in range(min(512, -(-top // GiB))):
            struct.pack_into("<Q", pudd, 8 * gib, (gib * GiB) | table | 0x80)
        return [(kt_lo + self.UTS_OFFSET + 4, name), (pgd_pa, bytes(pgd)), (pud_k, bytes(pudk)),
                (pmd_k, bytes(pmdk)), (pud_d, bytes(pudd))]

    # -- VMCOREINFO and notes ----------------------------------------------
    def vmcoreinfo_text(self):
        lines = [f"OSRELEASE={self.spec.osrelease}", f"PAGESIZE={PAGE}"]
        layout_lines = self.layout.vmcoreinfo_lines()
        keys = {line.split("=", 1)[0] for line in layout_lines}
        base = self.kernel_image_lines()
        if not any(k.startswith(("SYMBOL(mem_section)", "SYMBOL(mem_map)")) for k in keys):
            base += self.flatmem_lines()
        suppress = set(getattr(self.layout, "suppress_keys", ()))  # keys a layout's kernel lacks
        lines += [line for line in base if line.split("=", 1)[0] not in keys | suppress]
        lines += layout_lines
        lines.append(f"CRASHTIME={self.spec.crashtime}")
        return "\n".join(lines) + "\n"

    def note_segment(self):
        notes = b""
        for cpu in range(self.spec.nr_cpus):
            prstatus = bytearray(336)
            struct.pack_into("<I", prstatus, 32, 1000 + cpu)           # pr_pid
            struct.pack_into("<Q", prstatus, 112 + 16 * 8, 0xFFFFFFFF81000000 + cpu)  # rip
            notes += elf.build_note(b"CORE", elf.NT_PRSTATUS, bytes(prstatus))
        notes += elf.build_note(b"VMCOREINFO", 0, self.vmcoreinfo_text().encode())
        return notes

    # -- layout of the file -----------------------------------------------
    def _phdrs(self, notes_len):
        is64 = self.spec.elfclass == elf.ELFCLASS64
        kt_start, kt_end = self.spec.kernel_text
        loads = []
        if any(s <= kt_start and kt_end <= e for s, e in self.ram_ranges):
            loads.append(("text", kt_start, kt_end, (0xFFFFFFFF81000000 if is64 else 0xC1000000)))
        for s, e in self.ram_ranges:
            vaddr = (0xFFFF888000000000 + s) if is64 else (0xC0000000 + s if e <= 0x38000000 else 0xFFFFFFFF)
            loads.append(("ram", s, e, vaddr))
        nph = 1 + len(loads)
        hdr_end = self.spec.phoff + elf.header_size(self.spec.elfclass, nph) - elf.header_size(self.spec.elfclass, 0)
        note_off = _round_up(hdr_end, PAGE)
        off = _round_up(note_off + notes_len, PAGE)
        phdrs = [elf.Phdr(elf.PT_NOTE, 0, note_off, 0, 0, notes_len, notes_len, 4)]
        for _, s, e, vaddr in loads:
            chunk = _round_up(e, PAGE) - (s // PAGE) * PAGE
            phdrs.append(elf.Phdr(elf.PT_LOAD, 7, off + s % PAGE, vaddr, s, e - s, e - s, 0))
            off += chunk
        return phdrs, off, hdr_end

    def write(self, path, *, force=True):
        """Write the vmcore to ``path``; returns the truth dict (also stored as path + '.truth.json').
        An existing file is replaced only with ``force``."""
        notes = self.note_segment()
        phdrs, total, _ = self._phdrs(len(notes))
        machine = elf.EM_X86_64 if self.spec.elfclass == elf.ELFCLASS64 else elf.EM_386
        phoff = None if self.spec.phoff == 64 else self.spec.phoff
        header = elf.build_header(self.spec.elfclass, machine, phdrs, phoff=phoff)
        fd = safefile.create(path, force=force)
        try:
            os.ftruncate(fd, total)
            os.pwrite(fd, header, 0)
            os.pwrite(fd, notes, phdrs[0].offset)
            file_of = self._phys_to_file(phdrs)
            counts = self._write_pages(fd, file_of)
            for addr, data in self._base_writes() + list(self.layout.metadata_writes()):
                _pwrite_phys(fd, file_of, addr, data)
        finally:
            os.close(fd)
        truth = {"classes": counts, "ram_ranges": self.ram_ranges, "vmcoreinfo": self.vmcoreinfo_text(),
                 "nr_cpus": self.spec.nr_cpus, "kernel_text": list(self.spec.kernel_text)}
        safefile.write_file(path + ".truth.json", json.dumps(truth).encode(), force=force)
        return truth

    def _base_writes(self):
        writes = list(self.kernel_image_writes())
        if "SYMBOL(mem_map)" in self.vmcoreinfo_text():
            writes += self.flatmem_writes()
        return writes

    def _phys_to_file(self, phdrs):
        # Every PT_LOAD that covers an address gets its bytes: the kernel-text
        # segment repeats RAM, as in a real vmcore.
        return [(p.paddr, p.paddr + p.filesz, p.offset) for p in phdrs[1:]]

    def _write_pages(self, fd, file_of):
        counts = {}
        for first, end, cls in self.layout.class_runs():
            counts[cls] = counts.get(cls, 0) + (end - first)
            if cls == "free" and self.spec.sparse:
                continue  # stale contents of free memory: a hole keeps huge dumps cheap
            for chunk in range(first, end, 256):
                n = min(256, end - chunk)
                data = run_content(cls, chunk, n, self.spec.seed)
                if data is not None:
                    _pwrite_phys(fd, file_of, chunk * PAGE, data)
        return counts


def _pwrite_phys(fd, ranges, addr, data):
    end = addr + len(data)
    for s, e, off in ranges:
        if e <= addr or s >= end:
            continue
        lo, hi = max(s, addr), min(e, end)
        os.pwrite(fd, data[lo - addr:hi - addr], off + lo - s)


def _round_up(n, a):
    return -(-n // a) * a


def make_vmcore(path, **kwargs):
    """Write a synthetic vmcore; keyword arguments are VmcoreSpec fields."""
    layout = kwargs.pop("layout", None)
    gen = SyntheticVmcore(VmcoreSpec(**kwargs), layout)
    return gen.write(path)
