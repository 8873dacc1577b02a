"""kdump-compressed output, checked by readers fastdump did not write."""

import os
import stat
import struct

import pytest

import fastdump
from fastdump.formats import checksums, codecs, kdump
from support import digests, kdumpfile_digests, makedumpfile, makedumpfile_has_zstd

STANDARD = ["zstd", "zlib", "lzo", "snappy", "none"]
ZERO = bytes(4096)


@pytest.fixture(scope="module")
def dumps(vmcore, tmp_path_factory):
    """One dump per (compressor, level 0/1), made once for the module."""
    d = tmp_path_factory.mktemp("kdump")
    made = {}
    for codec in STANDARD + ["lz4"]:
        for level in (0, 1):
            path = str(d / f"{codec}-{level}")
            made[codec, level] = (path, fastdump.dump(vmcore, path, level=level, compress=codec, threads=2))
    return made


@pytest.mark.parametrize("codec", STANDARD)
@pytest.mark.parametrize("level", [0, 1])
def test_libkdumpfile_reads_every_page(dumps, source_pages, codec, level):
    path, stats = dumps[codec, level]
    fmt, got = kdumpfile_digests(path, max(source_pages) + 1)
    assert fmt == "diskdump"
    # kdump keeps zero pages (shared zero block), so every source page reads back identical
    assert got == digests(source_pages)


@pytest.mark.parametrize("codec", STANDARD + ["lz4"])
@pytest.mark.parametrize("level", [0, 1])
def test_own_reader_and_statistics(dumps, source_pages, codec, level):
    path, stats = dumps[codec, level]
    zeros = {p for p, data in source_pages.items() if data == ZERO}
    with fastdump.open(path) as d:
        assert set(d.pfns()) == set(source_pages)
        for pfn in list(source_pages)[::97]:
            assert d.read_pfn(pfn) == source_pages[pfn]
        assert d.dump_level == level and not d.incomplete
        assert d.describe()["compression"] == codec
        if level & 1:
            zero_desc = {pfn for pfn in zeros if d.descriptor(pfn)[0] == d.desc_off + 24 * len(source_pages)}
            assert zero_desc == zeros      # every zero page, and only those, shares the zero block
    assert stats.pages_scanned == len(source_pages)
    assert stats.pages_zero == (len(zeros) if level & 1 else 0)
    assert stats.pages_kept + stats.pages_zero == len(source_pages)
    assert stats.excluded == ({"zero": len(zeros)} if level & 1 else {})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_header_fields(dumps, vmcore):
    path, _ = dumps["zstd", 1]
    with open(path, "rb") as f:
        raw = f.read(8192)
    (sig, version, sysname, node, release, _v, machine, _d, tv_sec, tv_usec, status, block, sub_blocks,
     bitmap_blocks, max32, *_rest, nr_cpus) = kdump.HEADER.unpack_from(raw)
    assert sig == b"KDUMP   " and version == 6
    assert sysname.rstrip(b"\0") == b"Linux" and machine.rstrip(b"\0") == b"x86_64"
    assert release.rstrip(b"\0") == b"6.1.0-fastdump-synthetic"   # read from init_uts_ns in memory
    assert tv_sec == 1764000000 and tv_usec == 0
    assert status == codecs.ZSTD.flag and block == 4096 and nr_cpus == 2
    sub = kdump.SUB_HEADER.unpack_from(raw, 4096)
    assert sub[1] == 1 and sub[7] == 4200                          # dump_level, offset_note
    notes = raw[4200:4200 + sub[8]]
    assert b"VMCOREINFO" in notes and raw[sub[5]:sub[5] + 10] == b"OSRELEASE="


def test_every_stored_page_is_smaller_than_a_page_or_raw(dumps):
    path, _ = dumps["zstd", 1]
    with fastdump.open(path) as d:
        n = d.n_descriptors()
        raw = os.pread(d.fd, 24 * n, d.desc_off)
    for off, size, flags, pflags in struct.iter_unpack("<qIIQ", raw):
        assert pflags >> 32 == checksums.DESC_TAG_WHOLE and off > 0      # page_flags: the checksum
        assert (flags == codecs.ZSTD.flag and size < 4096) or (flags == 0 and size == 4096)


@pytest.mark.parametrize("codec", ["lzo", "zstd"])
def test_makedumpfile_refilters_our_dump(dumps, source_pages, tmp_path, codec):
    """makedumpfile takes our kdump file as input and writes a dump that is again identical."""
    if codec == "zstd" and not makedumpfile_has_zstd():
        codec = "zlib"   # this makedumpfile build (Debian 12's 1.7.2) cannot read zstd pages
    path, _ = dumps[codec, 0]
    out = str(tmp_path / "refiltered")
    makedumpfile("-d", "1", "-c", path, out)
    fmt, got = kdumpfile_digests(out, max(source_pages) + 1)
    assert got == digests(source_pages)


def _stored_bytes(path):
    with fastdump.open(path) as d:
        return {pfn: d.descriptor(pfn)[1] for pfn in d.pfns()}


@pytest.mark.parametrize("flag,codec", [("-c", "zlib"), ("-l", "lzo")])
def test_no_larger_than_makedumpfile(vmcore, tmp_path, dumps, flag, codec):
    """Same compressor, same level: page for page we store no more than makedumpfile.

    The partially covered last page of a segment (0x9f000-0x9fc00 here) is the one page
    makedumpfile 1.7.2 (Debian 12) leaves out; 1.7.6 (Debian 13) keeps it, as fastdump does.
    fastdump's checksums take no byte more: the page checksums fill the descriptors'
    page_flags (makedumpfile writes 0 there), the trailer the end of the header block."""
    theirs = str(tmp_path / "mdf")
    makedumpfile("-d", "1", flag, vmcore, theirs)
    ours_path, _ = dumps[codec, 1]
    ours, mdf = _stored_bytes(ours_path), _stored_bytes(theirs)
    assert set(ours) - set(mdf) <= {0x9F}
    assert set(mdf) <= set(ours)
    assert sum(ours[p] for p in mdf) <= sum(mdf.values())
    with fastdump.open(ours_path) as d:
        assert d.checksums().trailer_off < d.block_size
    extra = sum(ours[p] + 24 for p in set(ours) - set(mdf))     # the partial page's data and descriptor
    assert os.path.getsize(ours_path) <= os.path.getsize(theirs) + extra


def test_lz4_dump_is_marked_fastdump_only(dumps):
    path, _ = dumps["lz4", 1]
    with fastdump.open(path) as d:
        assert d.status & codecs.LZ4.flag


@pytest.mark.parametrize("flag", ["-l", "-c"])
def test_reads_makedumpfile_dumps(vmcore, source_pages, tmp_path, flag):
    """makedumpfile's LZO (Fedora/RHEL's default -l) and zlib pages decode in our reader."""
    out = str(tmp_path / "mdf")
    makedumpfile(flag, "-d", "1", vmcore, out)
    with fastdump.open(out) as d:
        pfns = list(d.pfns())
        assert len(pfns) >= len(source_pages) - 1
        for pfn in pfns:
            assert d.read_pfn(pfn) == source_pages[pfn]
        assert d.describe()["compression"] == {"-l": "lzo", "-c": "zlib"}[flag]
