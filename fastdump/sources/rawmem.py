"""Raw physical memory (``/dev/oldmem``, or ``dd if=/dev/oldmem of=oldmem.001``) as a source.

Such a file is addressed by physical address and says nothing about itself.
So the memory map comes from the user: ranges (``0x1000-0x9fbff,0x100000-...``),
or the crashed system's ``/proc/iomem`` (its "System RAM" lines, minus the
"Crash kernel" reservation nested in them).  VMCOREINFO comes from ``-i FILE``
(the text makedumpfile's ``-g`` writes) or is found in memory by its note
header.  fastdump then synthesizes what a vmcore would have said: one PT_LOAD
per RAM range and a VMCOREINFO note, and the pipeline runs as usual.
"""

import mmap
import os
import re
import stat

from ..formats import elf
from .files import open_input
from ..errors import SourceError, UsageError
from .vmcore import MAX_PHYS_ADDR, ElfSource, fold_extents
from ..kernel.vmcoreinfo import VmcoreInfo

DIRECT_MAP = 0xFFFF888000000000
_RANGE = re.compile(r"^\s*(?:0x)?([0-9a-fA-F]+)\s*-\s*(?:0x)?([0-9a-fA-F]+)\s*$")
_IOMEM = re.compile(r"^(\s*)([0-9a-fA-F]+)-([0-9a-fA-F]+)\s*:\s*(.+?)\s*$")
NOTE_MAGIC = b"\x0b\x00\x00\x00"  # n_namesz of "VMCOREINFO\0"
OLDMEM = "/dev/oldmem"


def _check_phys(what, end):
    if end > MAX_PHYS_ADDR:
        raise UsageError(f"memory range {what[:60]!r} ends beyond any machine's physical address space "
                         f"({MAX_PHYS_ADDR:#x})")


def parse_ranges(text):
    """``START-END[,START-END...]`` (hex, END inclusive as in /proc/iomem) -> [(start, end_exclusive)]."""
    out = []
    for part in text.replace("\n", ",").split(","):
        if not part.strip():
            continue
        m = _RANGE.match(part)
        if not m:
            raise UsageError(f"bad memory range {part.strip()!r}: use START-END in hex")
        a, b = int(m.group(1), 16), int(m.group(2), 16)
        if b < a:
            raise UsageError(f"memory range {part.strip()!r} ends before it starts")
        _check_phys(part.strip(), b + 1)
        out.append((a, b + 1))
    if not out:
        raise UsageError("empty memory map")
    return sorted(out)


def parse_iomem(text):
    """System RAM ranges of an /proc/iomem listing, without the crash kernel reservation."""
    ram, holes = [], []
    for line in text.splitlines():
        m = _IOMEM.match(line)
        if not m:
            continue
        indent, a, b, name = m.groups()
        rng = (int(a, 16), int(b, 16) + 1)
        if name == "System RAM" and not indent:
            _check_phys(line.strip(), rng[1])
            ram.append(rng)
        elif name.lower().startswith("crash kernel"):
            holes.append(rng)
    if not ram:
        raise UsageError("no 'System RAM' line in the iomem file")
    out = []
    for a, b in sorted(ram):
        pieces = [(a, b)]
        for h0, h1 in holes:
            pieces = [q for p0, p1 in pieces for q in ((p0, min(p1, h0)), (max(p0, h1), p1)) if q[0] < q[1]]
        out += pieces
    return out


def find_vmcoreinfo(fd, size):
    """The VMCOREINFO note text, found in memory by its header (None if absent)."""
    if size == 0:
        return None
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
        pos = 0
        while True:
            pos = m.find(b"VMCOREINFO\x00", pos)
            if pos < 0:
                return None
            hdr = pos - 12
            if hdr >= 0 and m[hdr:hdr + 4] == NOTE_MAGIC and m[hdr + 8:hdr + 12] == b"\x00\x00\x00\x00":
                descsz = int.from_bytes(m[hdr + 4:hdr + 8], "little")
                text = m[pos + 12:pos + 12 + min(descsz, 1 << 16)]
                if 0 < descsz <= 1 << 16 and text.startswith(b"OSRELEASE="):
                    return bytes(text)
            pos += 1


class RawMemorySource(ElfSource):
    """Physical memory in a flat file (offset = physical address), with a given map."""

    def __init__(self, path, ram_ranges, *, vmcoreinfo_text=None):
        self._open(path, self._load_raw, ram_ranges, vmcoreinfo_text)

    def _load_raw(self, ram_ranges, vmcoreinfo_text):
        size = self.file_size = self._size()
        ranges = [(a, min(b, size) if size is not None else b) for a, b in ram_ranges]
        ranges = [(a, b) for a, b in ranges if a < b]
        if not ranges:
            raise SourceError(f"{self.path}: no memory of the map lies inside the file")
        if size is not None and size < max(b for _, b in ram_ranges):
            self.truncated_map = True
        if vmcoreinfo_text is None and size:
            vmcoreinfo_text = find_vmcoreinfo(self.fd, size)
        self.elfclass, self.machine, self.incomplete = elf.ELFCLASS64, elf.EM_X86_64, False
        notes = elf.build_note(b"VMCOREINFO", 0, vmcoreinfo_text) if vmcoreinfo_text else b""
        self.note_bytes = notes
        self.notes = elf.parse_notes(notes)
        self.nr_cpus = 0
        self.vmcoreinfo_note = self.notes[0] if self.notes else None
        self.vmcoreinfo = VmcoreInfo.from_note(vmcoreinfo_text) if vmcoreinfo_text else None
        self.page_size = (self.vmcoreinfo.page_size if self.vmcoreinfo and self.vmcoreinfo.page_size else 4096)
        self.loads = [elf.Phdr(elf.PT_LOAD, 7, a, DIRECT_MAP + a, a, b - a, b - a, 0) for a, b in ranges]
        self.header = elf.ElfHeader(self.elfclass, self.machine, 0, 64, self.loads)
        self.extents = fold_extents([(a, b, a) for a, b in ranges])
        self.ram_ranges = [(a, b) for a, b, _ in self.extents]
        self.max_pfn = -(-max(b for _, b in self.ram_ranges) // self.page_size)

    def _size(self):
        """Bytes of memory the image holds: every read is bounded by it.  Only /dev/oldmem
        may have no size (the old kernel's memory, bounded by the map); another character
        device (/dev/zero, a tty) is not a memory image and would be read forever."""
        mode = os.fstat(self.fd).st_mode
        if stat.S_ISREG(mode):
            return os.fstat(self.fd).st_size
        if stat.S_ISBLK(mode):
            return os.lseek(self.fd, 0, os.SEEK_END)
        if os.path.realpath(self.path) != OLDMEM:
            raise SourceError(f"{self.path} is a character device, not a memory image "
                              f"(raw memory is a file, a block device or {OLDMEM})")
        return None

    def describe(self):
        d = super().describe()
        d["format"] = "raw memory"
        return d


def _read_text_file(path, what, limit):
    """A small text file the user names (-i, --iomem): at most ``limit`` bytes; a FIFO is refused."""
    fd = open_input(path, UsageError)
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror}") from None
    if len(data) > limit:
        raise UsageError(f"{what} {path} is larger than {limit >> 20} MiB: not a {what}")
    return data


def load_vmcoreinfo_file(path):
    text = _read_text_file(path, "VMCOREINFO file", 1 << 20)
    VmcoreInfo(text)  # validate now: one clear error
    return text


def open_raw(path, *, mem_map=None, iomem=None, vmcoreinfo_file=None):
    if mem_map:
        ranges = parse_ranges(mem_map)
    elif iomem:
        ranges = parse_iomem(_read_text_file(iomem, "iomem file", 16 << 20).decode("ascii", "replace"))
    else:
        raise UsageError(f"{path} is raw memory: give its map with --mem-map or --iomem")
    text = load_vmcoreinfo_file(vmcoreinfo_file) if vmcoreinfo_file else None
    return RawMemorySource(path, ranges, vmcoreinfo_text=text)
