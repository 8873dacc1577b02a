"""Regression tests for what fuzzing found in the parsers, each built by hand."""

import os
import struct

import pytest

from fastdump.formats import elf
from fastdump.errors import FastdumpError, FormatError, SourceError, VmcoreinfoError
from fastdump.formats import codecs, kdump
from fastdump.sources.vmcore import ElfSource
from fastdump.kernel.vmcoreinfo import VmcoreInfo

from . import targets

PAGE = 4096


@pytest.fixture(scope="module")
def seeds():
    return targets.seeds()


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return str(p)


# -- VMCOREINFO -------------------------------------------------------------

@pytest.mark.parametrize("line", ["PAGESIZE=0x" + "1" * 4000, "NUMBER(x)=" + "9" * 5000,
                                  "SYMBOL(x)=1" + "0" * 16, "OFFSET(a.b)=18446744073709551616",
                                  "NUMBER(y)=-9223372036854775809"])
def test_vmcoreinfo_values_beyond_64_bits_are_one_line_errors(line):
    v = VmcoreInfo(f"OSRELEASE=x\n{line}\n")     # values are checked when read
    key = line.split("=", 1)[0]
    form, _, name = key.partition("(")
    with pytest.raises(VmcoreinfoError) as e:
        v.page_size if key == "PAGESIZE" else getattr(v, form.lower())(name[:-1])
    assert "\n" not in str(e.value) and len(str(e.value)) < 200


def test_vmcoreinfo_64_bit_extremes_still_parse():
    v = VmcoreInfo("SYMBOL(a)=ffffffffffffffff\nNUMBER(b)=-9223372036854775808\nNUMBER(c)=0xffffc90000000000\n")
    assert v.symbol("a") == (1 << 64) - 1 and v.number("b") == -(1 << 63)


@pytest.mark.parametrize("size", [1 << 40, 2048, 1 << 19])
def test_vmcoreinfo_page_size_range(size):
    with pytest.raises(VmcoreinfoError, match="PAGESIZE"):
        VmcoreInfo(f"PAGESIZE={size}\n").page_size


@pytest.mark.parametrize("value", ["99999999999999999999999", "soon", "-5"])
def test_vmcoreinfo_bogus_crashtime_is_dropped(value):
    assert VmcoreInfo(f"OSRELEASE=x\nCRASHTIME={value}\n").crashtime is None


@pytest.mark.parametrize("value", [b"-000000001", b"zzzzzzzzzz"])
def test_dump_with_bogus_crashtime_succeeds(seeds, tmp_path, value):
    """Was struct.error in the kdump header (or a failed dump): the time stamp is now left out."""
    import fastdump
    data = bytearray(seeds.vmcore())
    at = data.index(b"CRASHTIME=") + 10
    assert len(data[at:data.index(b"\n", at)]) == len(value)
    data[at:at + len(value)] = value
    src = write(tmp_path, "vmcore", data)
    fastdump.dump(src, str(tmp_path / "out"), level=1, compress="zstd")
    with fastdump.open(str(tmp_path / "out")) as d:
        assert d.tv_sec == 0


# -- ELF --------------------------------------------------------------------

def _phdrs(data):
    h = elf.parse_header(lambda o, n: bytes(data[o:o + n]), len(data))
    return h


def _set_phdr(data, index, **fields):
    h = _phdrs(data)
    p = h.phdrs[index]
    for k, v in fields.items():
        setattr(p, k, v)
    off = h.phoff + index * 56
    data[off:off + 56] = struct.pack("<IIQQQQQQ", p.type, p.flags, p.offset, p.vaddr, p.paddr, p.filesz,
                                     p.memsz, p.align)


def test_all_loads_empty_is_a_source_error(seeds, tmp_path):
    data = bytearray(seeds.vmcore())
    for i, p in enumerate(_phdrs(data).phdrs):
        if p.type == elf.PT_LOAD:
            _set_phdr(data, i, filesz=0, memsz=0)
    with pytest.raises(SourceError, match="empty"):
        ElfSource(write(tmp_path, "v", data))


def test_load_beyond_physical_address_space(seeds, tmp_path):
    data = bytearray(seeds.vmcore())
    _set_phdr(data, 1, memsz=15099025831952924672)
    with pytest.raises(SourceError, match="physical address space"):
        ElfSource(write(tmp_path, "v", data))


def test_huge_note_segment_rejected_before_reading():
    data = bytearray(targets.seeds().vmcore())
    h = _phdrs(data)
    big = 128 << 20
    reads = []

    def read_at(o, n):
        reads.append(n)
        return bytes(data[o:o + n])
    _set_phdr(data, 0, filesz=big, memsz=big)
    src = ElfSource.__new__(ElfSource)
    src.path, src.fd = "mem", -1
    src._read_at = read_at
    import fastdump.sources.vmcore as source_mod
    orig = source_mod.os.fstat
    try:
        class St:
            st_mode = 0o100600
            st_size = big + h.phdrs[0].offset
        source_mod.os.fstat = lambda fd: St
        with pytest.raises(SourceError, match="implausibly large"):
            src._load()
    finally:
        source_mod.os.fstat = orig
    assert max(reads) < big


def test_pn_xnum_count_is_bounded():
    hdr = bytearray(targets.seeds().xnum_header())
    shoff = struct.unpack_from("<Q", hdr, 40)[0]
    struct.pack_into("<I", hdr, shoff + 44, 0xFFFFFFFF)   # sh_info
    with pytest.raises(SourceError, match="program headers"):
        elf.parse_header(lambda o, n: bytes(hdr[o:o + n]), None)


# -- kdump reader -----------------------------------------------------------

def _sub_header(data):
    return list(kdump.SUB_HEADER.unpack_from(data, PAGE))


def _put_sub(data, fields):
    kdump.SUB_HEADER.pack_into(data, PAGE, *fields)


@pytest.mark.parametrize("field,value", [(5, 0), (6, 1 << 63), (7, 1 << 62), (8, 1 << 63), (8, 1 << 31)])
def test_kdump_sub_header_sizes_checked(seeds, tmp_path, field, value):
    data = bytearray(seeds.kdumps()[0])
    sub = _sub_header(data)
    sub[field] = value
    if field == 6:
        sub[5] = 1 << 40
    _put_sub(data, sub)
    path = write(tmp_path, "d", data)
    try:
        with kdump.KdumpReader(path) as d:
            for pfn in d.pfns():
                d.read_pfn(pfn)
    except FormatError as e:
        assert "\n" not in str(e)


def test_kdump_split_range_outside_max_mapnr(seeds, tmp_path):
    data = bytearray(seeds.kdumps()[0])
    sub = _sub_header(data)
    sub[2], sub[11], sub[12] = 1, 1 << 40, 1 << 41
    _put_sub(data, sub)
    with pytest.raises(FormatError, match="split part"):
        kdump.KdumpReader(write(tmp_path, "d", data))


@pytest.mark.parametrize("offset", [-4096, 1, 1 << 62])
def test_kdump_descriptor_offset_outside_data(seeds, tmp_path, offset):
    data = bytearray(seeds.kdumps()[0])
    path = write(tmp_path, "d0", data)
    with kdump.KdumpReader(path) as d:
        desc_off, pfn = d.desc_off, next(iter(d.pfns()))
    struct.pack_into("<q", data, desc_off, offset)
    with kdump.KdumpReader(write(tmp_path, "d", data)) as d:
        with pytest.raises(FormatError, match="outside the page data"):
            d.read_pfn(pfn)


def test_kdump_zlib_page_is_inflated_with_a_bound():
    dec = lambda data: kdump.decode_page(codecs.ZLIB.flag, data, PAGE)  # noqa: E731
    import zlib
    assert dec(zlib.compress(bytes(PAGE))) == bytes(PAGE)
    with pytest.raises(FastdumpError):
        dec(zlib.compress(bytes(4 << 20), 9))


def test_kdump_on_a_directory_or_fifo(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR)   # so opening it for reading does not block
    try:
        with pytest.raises(FormatError):
            kdump.KdumpReader(str(fifo))
    finally:
        os.close(fd)


@pytest.mark.parametrize("field", ["note_offset", "shoff"])
def test_offsets_beyond_2_63_are_source_errors(seeds, tmp_path, field):
    """Was OverflowError from os.pread (an empty PT_NOTE at offset 2**64-1, a PN_XNUM shoff)."""
    if field == "note_offset":
        data = bytearray(seeds.vmcore())
        _set_phdr(data, 0, offset=(1 << 64) - 1, filesz=0)
        path = write(tmp_path, "v", data)
        try:
            ElfSource(path).close()
        except SourceError as e:
            assert "\n" not in str(e)
    else:
        data = bytearray(seeds.xnum_header() + seeds.vmcore()[len(seeds.xnum_header()):])
        struct.pack_into("<Q", data, 40, (1 << 64) - 64)
        with pytest.raises(SourceError):
            ElfSource(write(tmp_path, "v", data))


def test_incomplete_elf_dump_reads_up_to_the_end_of_the_file(seeds, tmp_path):
    """A truncated ELF dump flagged incomplete (e_flags bit 0) opens; pages past the end are absent."""
    import fastdump
    src = write(tmp_path, "src", seeds.vmcore())
    out = str(tmp_path / "elf")
    fastdump.dump(src, out, level=0, format="elf")
    data = bytearray(open(out, "rb").read())
    struct.pack_into("<I", data, 48, struct.unpack_from("<I", data, 48)[0] | elf.ELF_INCOMPLETE_FLAG)
    cut = len(data) - 5 * PAGE - 100
    bad = write(tmp_path, "cut", data[:cut])
    with pytest.raises(SourceError, match="truncated"):      # without the flag: refused
        ElfSource(write(tmp_path, "cut-noflag", open(out, "rb").read()[:cut]))
    with ElfSource(src) as s, fastdump.open(bad) as d:
        assert d.incomplete and d.truncated
        pfns = list(d.pfns())
        assert 0 < len(pfns) < len(list(s.pfns()))
        for pfn in pfns:
            assert d.read_pfn(pfn) == s.read_pfn(pfn)
        assert all(off + (e - st) <= cut for st, e, off in d.extents)
