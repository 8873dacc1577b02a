"""ELF core files: parse the headers and notes of a vmcore, and build new ones.

Only what a vmcore uses: the file header, program headers (PT_NOTE, PT_LOAD),
PN_XNUM via section header 0, and 4-byte aligned notes.  Little-endian only
(every architecture fastdump supports today).
"""

import struct
import zlib

from ..errors import SourceError

ELFCLASS32, ELFCLASS64 = 1, 2
ET_CORE = 4
EM_386, EM_X86_64 = 3, 62
PT_LOAD, PT_NOTE = 1, 4
PN_XNUM = 0xFFFF
MAX_PHNUM = 1 << 20   # through PN_XNUM; far more segments than any machine's memory map has
NT_PRSTATUS = 1
ELF_INCOMPLETE_FLAG = 1  # e_flags bit makedumpfile sets on a truncated -E dump
#: e_ident's padding (bytes 9-15: zero, and ignored by readers) in a fastdump ELF dump that
#: ends in a checksum trailer (checksums.py), so that a dump whose trailer is gone says it had
#: one: these 3 bytes, then crc32 of the program header table.  makedumpfile copies e_ident
#: into the dumps it makes of ours; their program headers differ, and so the mark fails.
CHECKSUMS_MARK = b"fds"
#: fastdump's program header for memory the source could not read (EIO), left out of
#: every PT_LOAD: p_paddr/p_vaddr its first byte, p_align its length in bytes, p_filesz
#: and p_memsz 0 (crash takes every phdr after the note for a PT_LOAD: so it maps nothing).
PT_FASTDUMP_UNREADABLE = 0x6FD00001

_EHDR = {ELFCLASS64: struct.Struct("<16sHHIQQQIHHHHHH"), ELFCLASS32: struct.Struct("<16sHHIIIIIHHHHHH")}
_SHDR = {ELFCLASS64: struct.Struct("<IIQQQQIIQQ"), ELFCLASS32: struct.Struct("<IIIIIIIIII")}
_PHDR64 = struct.Struct("<IIQQQQQQ")   # type flags offset vaddr paddr filesz memsz align
_PHDR32 = struct.Struct("<IIIIIIII")   # type offset vaddr paddr filesz memsz flags align
_NHDR = struct.Struct("<III")


class _Fields:
    """Plain mutable records named by ``__slots__`` (dataclasses would cost every start
    its import, about 15 ms): equal when of one type with equal fields."""

    __slots__ = ()

    def _values(self):
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other):
        return type(other) is type(self) and self._values() == other._values()

    __hash__ = None      # mutable

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{n}={v!r}' for n, v in zip(self.__slots__, self._values()))})"


class Phdr(_Fields):
    __slots__ = ("type", "flags", "offset", "vaddr", "paddr", "filesz", "memsz", "align")

    def __init__(self, type, flags, offset, vaddr, paddr, filesz, memsz, align):  # noqa: A002
        self.type, self.flags, self.offset, self.vaddr = type, flags, offset, vaddr
        self.paddr, self.filesz, self.memsz, self.align = paddr, filesz, memsz, align


class Note(_Fields):
    """``offset``: of the note header inside the note segment; ``desc_offset``: of desc
    inside it; ``end``: just past this note (padding included)."""

    __slots__ = ("name", "type", "desc", "offset", "desc_offset", "end")

    def __init__(self, name, type, desc, offset=0, desc_offset=0, end=0):  # noqa: A002
        self.name, self.type, self.desc = name, type, desc
        self.offset, self.desc_offset, self.end = offset, desc_offset, end


class ElfHeader(_Fields):
    __slots__ = ("elfclass", "machine", "flags", "phoff", "phdrs", "checksums_marked")

    def __init__(self, elfclass, machine, flags, phoff, phdrs, checksums_marked=False):
        self.elfclass, self.machine, self.flags, self.phoff, self.phdrs = elfclass, machine, flags, phoff, phdrs
        self.checksums_marked = checksums_marked

    @property
    def is64(self):
        return self.elfclass == ELFCLASS64


def _align4(n):
    return (n + 3) & ~3


def parse_header(read_at, file_size=None):
    """Parse the ELF header and program headers.  ``read_at(offset, size)`` returns bytes."""
    ident = read_at(0, 64)
    if len(ident) < 52 or ident[:4] != b"\x7fELF":
        raise SourceError("not an ELF file (bad magic)")
    elfclass, data = ident[4], ident[5]
    if elfclass not in _EHDR:
        raise SourceError(f"unsupported ELF class {elfclass}")
    if data != 1:
        raise SourceError("big-endian ELF vmcores are not supported")
    ehdr_s = _EHDR[elfclass]
    if len(ident) < ehdr_s.size:
        raise SourceError("truncated ELF header")
    (_, e_type, machine, _version, _entry, phoff, shoff, flags, _ehsize,
     phentsize, phnum, _shentsize, shnum, _shstrndx) = ehdr_s.unpack_from(ident)
    if e_type != ET_CORE:
        raise SourceError(f"ELF type {e_type} is not a core file (ET_CORE)")
    phdr_s = _PHDR64 if elfclass == ELFCLASS64 else _PHDR32
    if phentsize != phdr_s.size:
        raise SourceError(f"ELF program header size {phentsize} is wrong for this class")
    if phnum == PN_XNUM:
        shdr = read_at(shoff, _SHDR[elfclass].size)
        if shoff == 0 or len(shdr) < _SHDR[elfclass].size:
            raise SourceError("ELF uses PN_XNUM but has no section header 0")
        phnum = _SHDR[elfclass].unpack_from(shdr)[7]  # sh_info
    if phnum == 0:
        raise SourceError("ELF core file has no program headers")
    if phnum > MAX_PHNUM:
        raise SourceError(f"ELF core file claims {phnum} program headers (more than {MAX_PHNUM})")
    table_size = phnum * phdr_s.size
    if file_size is not None and phoff + table_size > file_size:
        raise SourceError("truncated ELF file: program headers run past its end")
    raw = read_at(phoff, table_size)
    if len(raw) < table_size:
        raise SourceError("truncated ELF file: program headers run past its end")
    phdrs = []
    for i in range(phnum):
        fields = phdr_s.unpack_from(raw, i * phdr_s.size)
        if elfclass == ELFCLASS64:
            phdrs.append(Phdr(*fields))
        else:
            p_type, off, vaddr, paddr, filesz, memsz, pflags, align = fields
            phdrs.append(Phdr(p_type, pflags, off, vaddr, paddr, filesz, memsz, align))
    marked = ident[9:12] == CHECKSUMS_MARK and ident[12:16] == _crc_le(raw)
    return ElfHeader(elfclass, machine, flags, phoff, phdrs, marked)


def _crc_le(data):
    return struct.pack("<I", zlib.crc32(data))


def parse_notes(data):
    """Split a note segment into Notes; stops at a zero-sized terminator or the end."""
    notes, pos, size = [], 0, len(data)
    while pos + _NHDR.size <= size:
        namesz, descsz, ntype = _NHDR.unpack_from(data, pos)
        if namesz == 0 and descsz == 0:
            break
        name_at = pos + _NHDR.size
        desc_at = name_at + _align4(namesz)
        end = desc_at + _align4(descsz)
        if desc_at + descsz > size:
            raise SourceError(f"ELF note at offset {pos} runs past the note segment")
        name = bytes(data[name_at:name_at + namesz]).rstrip(b"\0")
        notes.append(Note(name, ntype, bytes(data[desc_at:desc_at + descsz]), pos, desc_at, min(end, size)))
        pos = end
    return notes


def build_note(name, ntype, desc):
    name_b = name + b"\0"
    return (_NHDR.pack(len(name_b), len(desc), ntype) + name_b.ljust(_align4(len(name_b)), b"\0")
            + desc.ljust(_align4(len(desc)), b"\0"))


def build_header(elfclass, machine, phdrs, *, flags=0, phoff=None, checksums_marked=False):
    """Ehdr + phdr table (+ section 0 for PN_XNUM), placed at offset 0.

    ``phoff`` other than right after the Ehdr pads with zeros (QEMU puts it at 192);
    ``checksums_marked``: the dump ends in a checksum trailer (CHECKSUMS_MARK)."""
    ehdr_s = _EHDR[elfclass]
    phdr_s = _PHDR64 if elfclass == ELFCLASS64 else _PHDR32
    ident = b"\x7fELF" + bytes([elfclass, 1, 1, 0]) + bytes(8)
    phoff = ehdr_s.size if phoff is None else phoff
    xnum = len(phdrs) >= PN_XNUM
    shdr_s = _SHDR[elfclass]
    shoff = phoff + phdr_s.size * len(phdrs) if xnum else 0
    out = bytearray(ehdr_s.pack(ident, ET_CORE, machine, 1, 0, phoff, shoff, flags, ehdr_s.size,
                                phdr_s.size, PN_XNUM if xnum else len(phdrs),
                                shdr_s.size if xnum else 0, 1 if xnum else 0, 0))
    out += bytes(phoff - len(out))
    for p in phdrs:
        if elfclass == ELFCLASS64:
            out += _PHDR64.pack(p.type, p.flags, p.offset, p.vaddr, p.paddr, p.filesz, p.memsz, p.align)
        else:
            out += _PHDR32.pack(p.type, p.offset, p.vaddr, p.paddr, p.filesz, p.memsz, p.flags, p.align)
    if checksums_marked:
        out[9:16] = CHECKSUMS_MARK + _crc_le(out[phoff:])
    if xnum:
        out += shdr_s.pack(0, 0, 0, 0, 0, 0, 0, len(phdrs), 0, 0)
    return bytes(out)


def header_size(elfclass, nphdrs):
    phdr = _PHDR64.size if elfclass == ELFCLASS64 else _PHDR32.size
    extra = _SHDR[elfclass].size if nphdrs >= PN_XNUM else 0
    return _EHDR[elfclass].size + phdr * nphdrs + extra
