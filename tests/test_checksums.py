"""Dumps that prove their own integrity: ``fastdump verify DUMP`` without the source
finds any changed byte of a kdump-compressed dump, and the real readers (libkdumpfile,
makedumpfile, crash) still read the dump as if the checksums were not there."""

import bisect
import os
import shutil
import struct
import subprocess
import zlib
from collections import Counter

import pytest

import fastdump
from fastdump.formats import checksums, kdump
from fastdump.testing.generator import MiB, SyntheticVmcore, VmcoreSpec
from fastdump.testing.printk_layout import PrintkLayout
from fastdump.commands.verify import verify
from support import digests, elf_pages, fastdump_cli, kdumpfile_digests, makedumpfile, need_tool

CODECS = ["zstd", "zlib", "lzo", "snappy", "lz4", "none"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("sums-src") / "vmcore")
    # with a kernel log that makedumpfile --dump-dmesg reads too
    SyntheticVmcore(VmcoreSpec(ram_size=64 * MiB), layout=PrintkLayout(None, kind="lockless")).write(path)
    return path


@pytest.fixture(scope="module")
def dumps(small, tmp_path_factory):
    """One dump per codec of a small vmcore (each flip is one whole verify)."""
    d = tmp_path_factory.mktemp("sums")
    out = {}
    for codec in CODECS:
        level = 0 if codec == "lz4" else 1       # with and without the shared zero block
        out[codec] = str(d / f"dump.{codec}")
        fastdump.dump(small, out[codec], level=level, compress=codec, threads=2)
    out["elf"] = str(d / "dump.elf")
    fastdump.dump(small, out["elf"], level=1, format="elf", threads=2)
    return out


def _elf_flip_positions(path):
    """ELF: the header, the program headers, the notes, page data of every PT_LOAD,
    the data checksums, the trailer and both footer copies; {offset: pfn or None}."""
    size = os.path.getsize(path)
    with fastdump.open(path) as d:
        sums = checksums.load(lambda o, n: os.pread(d.fd, n, o), size)
        loads = [(p.offset, p.filesz, p.paddr) for p in d.loads if p.filesz]
        note = d.note_bytes
    out = {pos: None for pos in (0, 5, 18, 40, 56, 64, 64 + 17, 64 + 56 + 8, 64 + 56 * 3 + 40,
                                 sums.data_off - len(note) + 3, sums.data_off - 1,
                                 sums.array_off, sums.array_off + 4 * sums.array_count - 1,
                                 sums.trailer_off + 50, size - 64, size - 33, size - 1)}
    for off, filesz, paddr in loads:
        for k in (0, filesz // 2, filesz - 1):
            out[off + k] = (paddr + k) // 4096
    for pos in range(0, size, max(1, size // 20)):
        out.setdefault(pos, None)
    return out


def _flip_positions(path):
    """Byte offsets spread over the whole file, plus some in every region: header,
    sub header and notes, both bitmaps, descriptors, a compressed and a raw page,
    the page checksums (in the descriptors), the trailer and both footer copies."""
    size = os.path.getsize(path)
    with fastdump.open(path) as d:
        sums = d.checksums()
        pfns = list(d.pfns())
        descs = [d.descriptor(p) for p in pfns[::97]]
        # a set bit of each bitmap, not only the zero padding
        set1 = next(i for i, b in enumerate(d.bitmap1()) if b)
        set2 = next(i for i, b in enumerate(d.bitmap2()) if b)
        regions = [0, 8, 424, 463, 1000, d.block_size, d.block_size + 48, d.block_size + 200,
                   d.bitmap1_off + set1, d.bitmap1_off + d.bitmap_len - 1,
                   d.bitmap2_off + set2, d.bitmap2_off + d.bitmap_len // 2,
                   d.desc_off, d.desc_off + 11, d.desc_off + 24 * 5 + 17,
                   d.desc_off + 24 * 7 + 16, d.desc_off + 24 * 9 + 23, sums.trailer_off, sums.trailer_off + 40,
                   size - 64, size - 40, size - 1]
    raw = [off + size_ // 2 for off, size_, flags, _ in descs if flags == 0 and off != d.zero_page_offset()]
    packed = [off + size_ - 1 for off, size_, flags, _ in descs if flags]
    spread = range(0, size, max(1, size // 20))
    return sorted(set(regions + raw[:3] + packed[:3] + list(spread)))


@pytest.mark.parametrize("codec", CODECS)
def test_every_flipped_byte_is_found_without_the_source(dumps, tmp_path, codec):
    path = str(tmp_path / "flipped")
    shutil.copy(dumps[codec], path)
    r = verify(path)
    assert r["ok"] and r["checksums"] is True and r["pages_checksummed"] == r["pages_checked"], r["verdict"]
    assert "checksums match" in r["verdict"]
    with fastdump.open(path) as d:
        descs = {p: d.descriptor(p) for p in d.pfns()}
    users = Counter(off for off, *_ in descs.values())
    pages = sorted((off, size, p) for p, (off, size, *_) in descs.items() if users[off] == 1)
    def pfn_at(pos):   # a page's bytes are named by its pfn
        i = bisect.bisect_right(pages, (pos, float("inf"))) - 1
        return pages[i][2] if i >= 0 and pages[i][0] <= pos < pages[i][0] + pages[i][1] else None
    missed = _flip_each(path, {pos: pfn_at(pos) for pos in _flip_positions(path)}, 0x04)
    assert not missed, f"{codec}: a changed byte at {missed} went unnoticed"


def _flip_each(path, positions, mask):
    """Flip one byte at a time at each position (``{pos: pfn or None}``), verify the dump
    alone, put the byte back; a flip inside a page must be named by its pfn.  Returns the
    positions whose flip went unnoticed."""
    missed = []
    fd = os.open(path, os.O_RDWR)
    try:
        for pos, pfn in sorted(positions.items()):
            old = os.pread(fd, 1, pos)
            os.pwrite(fd, bytes([old[0] ^ mask]), pos)
            try:
                r = verify(path, threads=1)
            finally:
                os.pwrite(fd, old, pos)
            if r["ok"]:
                missed.append(pos)
            elif pfn is not None:
                assert any(f"{pfn:#x}" in m for m in r["problems"]), (pos, r["problems"])
    finally:
        os.close(fd)
    return missed


def test_every_flipped_byte_of_an_elf_dump_is_found(dumps, tmp_path):
    path = str(tmp_path / "flipped.elf")
    shutil.copy(dumps["elf"], path)
    r = verify(path)
    assert r["ok"] and r["checksums"] is True and "checksums match" in r["verdict"], r["verdict"]
    missed = _flip_each(path, _elf_flip_positions(path), 0x40)
    assert not missed, f"a changed byte at {missed} went unnoticed"


def test_a_flipped_page_is_named_by_pfn(dumps, tmp_path):
    """An uncompressed page (nothing but the checksum can tell) is reported with its pfn."""
    path = str(tmp_path / "raw")
    shutil.copy(dumps["none"], path)
    with fastdump.open(path) as d:
        zero_off = d.data_gap(min(d.descriptor(p)[0] for p in d.pfns()))[1]
        pfn = next(p for p in list(d.pfns())[100:] if d.descriptor(p)[0] != zero_off)
        off = d.descriptor(pfn)[0]
    with open(path, "r+b") as f:
        f.seek(off + 7)
        b = f.read(1)
        f.seek(off + 7)
        f.write(bytes([b[0] ^ 1]))
    r = verify(path)
    assert not r["ok"] and f"do not match their checksums (pfn {pfn:#x})" in r["verdict"], r["verdict"]


def test_dump_without_checksums_says_so(vmcore, tmp_path):
    """makedumpfile's dump verifies as before, and the verdict says there was nothing to check."""
    out = str(tmp_path / "mkd")
    makedumpfile("-c", "-d", "1", vmcore, out)
    r = verify(out)
    assert r["ok"] and r["checksums"] is False, r["verdict"]
    assert "no checksums to check" in r["verdict"]


@pytest.mark.parametrize("change", ["cut at the data's end", "extended by 2 MiB"])
def test_an_elf_dump_whose_trailer_is_gone_fails_verify(dumps, tmp_path, change):
    """The header says (e_ident padding) that a checksum trailer ends a fastdump ELF dump:
    without it, at the end or a footer within the last MiB, verify must fail instead of
    saying the dump carries no checksums; makedumpfile's ELF dumps carry no such mark."""
    path = str(tmp_path / "d.elf")
    shutil.copy(dumps["elf"], path)
    with fastdump.open(path) as d:
        assert d.header.checksums_marked and d.header.flags == 0
        sums = checksums.load(lambda o, n: os.pread(d.fd, n, o), os.path.getsize(path))
    if change.startswith("cut"):
        os.truncate(path, sums.trailer_off)
    else:
        with open(path, "ab") as f:
            f.write(bytes(2 * checksums.FOOTER_SEARCH))
    r = verify(path)
    assert not r["ok"] and r["checksums"] == "missing" and "checksum trailer" in r["verdict"], r["verdict"]
    theirs = str(tmp_path / "theirs.elf")
    makedumpfile("-E", "-d", "1", dumps["elf"], theirs)
    with fastdump.open(theirs) as d:
        assert not d.header.checksums_marked
    assert verify(theirs)["checksums"] is False


def test_real_readers_ignore_the_checksums(dumps, small, vmcore, tmp_path):
    """libkdumpfile reads every page, makedumpfile re-filters the dump and prints its
    log as from the source, crash opens it."""
    path = dumps["zlib"]                 # the Debian makedumpfile is built without zstd
    source_pages = elf_pages(small)
    _, got = kdumpfile_digests(path, max(source_pages) + 1)
    assert got == digests(source_pages)
    refiltered = str(tmp_path / "refiltered")
    makedumpfile("-c", "-d", "1", path, refiltered)
    r = verify(refiltered, small)
    assert r["ok"] and r["checksums"] is False, r["verdict"]
    theirs, ours = str(tmp_path / "dmesg.src"), str(tmp_path / "dmesg.dump")
    makedumpfile("--dump-dmesg", small, theirs)
    makedumpfile("--dump-dmesg", path, ours)
    assert open(ours).read() == open(theirs).read() and os.path.getsize(ours) > 100
    # crash cannot open an ELF dump of the vmcore with a printk layout, with or without the
    # checksums ("cannot realloc resized ELF header buffer"): an ELF dump of the plain one
    elf_dump = str(tmp_path / "plain.elf")
    fastdump.dump(vmcore, elf_dump, level=1, format="elf")
    assert verify(elf_dump)["checksums"] is True
    for dump in (path, elf_dump):
        r = subprocess.run([need_tool("crash"), "--osrelease", dump], capture_output=True, text=True, timeout=120)
        with fastdump.open(dump) as d:
            assert r.returncode == 0 and r.stdout.strip() == d.vmcoreinfo.osrelease, (r.stdout, r.stderr)
    # the ELF dump: libkdumpfile reads every stored page; makedumpfile takes it as input
    want = digests(source_pages)
    _, got = kdumpfile_digests(dumps["elf"], max(source_pages) + 1)
    assert all(got[p] == h for p, h in want.items() if p in got)    # (short zero runs are stored too)
    assert {p for p, page in source_pages.items() if any(page)} <= set(got)
    from_elf = str(tmp_path / "from-elf")
    makedumpfile("-c", "-d", "1", dumps["elf"], from_elf)
    r = verify(from_elf, small)
    assert r["ok"], r["verdict"]


@pytest.mark.parametrize("rebuild", ["makedumpfile", "fastdump"])
def test_flattened_stream_rebuilt_keeps_checksums(vmcore, source_pages, tmp_path, rebuild):
    stream = str(tmp_path / "stream")
    with open(stream, "wb") as f:
        r = subprocess.run(["python3", "-m", "fastdump", "-F", "-z", "-d", "1", vmcore],
                           stdout=f, stderr=subprocess.PIPE, text=False, timeout=300)
    assert r.returncode == 0, r.stderr
    out = str(tmp_path / "rebuilt")
    with open(stream, "rb") as f:
        if rebuild == "makedumpfile":
            p = subprocess.run([need_tool("makedumpfile"), "-R", out], stdin=f, capture_output=True, timeout=300)
        else:
            p = subprocess.run(["python3", "-m", "fastdump", "-R", out], stdin=f, capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr
    r = verify(out)
    assert r["ok"] and r["checksums"] is True, r["verdict"]
    _, got = kdumpfile_digests(out, max(source_pages) + 1)
    assert got == digests(source_pages)


def test_split_parts_each_carry_checksums(vmcore, tmp_path):
    parts = [str(tmp_path / f"part{i}") for i in range(3)]
    fastdump.dump(vmcore, level=1, compress="zstd", split=parts, split_block_pfns=1024)
    for part in parts:
        r = verify(part)
        assert r["ok"] and r["checksums"] is True and r["pages_checksummed"] > 0, r["verdict"]
    with fastdump.open(parts[1]) as d:
        sums = d.checksums()
        assert sums.array_count == d.n_descriptors()      # the part's own pages
        pfn = list(d.pfns())[-1]
        off, size, _, _ = d.descriptor(pfn)
    with open(parts[1], "r+b") as f:
        f.seek(off + size - 1)
        b = f.read(1)
        f.seek(off + size - 1)
        f.write(bytes([b[0] ^ 0x80]))
    r = verify(parts[1])
    assert not r["ok"] and f"{pfn:#x}" in r["verdict"], r["verdict"]


def test_reassembled_file_carries_checksums(vmcore, source_pages, tmp_path):
    """--reassemble (of our parts, or makedumpfile's) writes checksums of its own."""
    parts = [str(tmp_path / f"part{i}") for i in range(2)]
    fastdump.dump(vmcore, level=1, compress="zlib", split=parts, split_block_pfns=1024)
    theirs = [str(tmp_path / f"mpart{i}") for i in range(2)]
    makedumpfile("-c", "-d", "1", "--split", vmcore, *theirs)
    for name, pieces in (("ours", parts), ("theirs", theirs)):
        out = str(tmp_path / f"joined-{name}")
        fastdump_cli("--reassemble", *pieces, out)
        r = verify(out, vmcore)
        assert r["ok"] and r["checksums"] is True and r["pages_checksummed"] == r["pages_checked"], r["verdict"]
        _, got = kdumpfile_digests(out, max(source_pages) + 1)
        want = digests(source_pages)     # makedumpfile leaves out the partial page 0x9f
        assert all(got[p] == want[p] for p in got) and set(want) - set(got) <= {0x9F}
        with fastdump.open(out) as d:
            pfn = list(d.pfns())[-3]
            off, size, _, _ = d.descriptor(pfn)
        with open(out, "r+b") as f:
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ 0x08]))
        r = verify(out)
        assert not r["ok"] and f"{pfn:#x}" in r["verdict"], r["verdict"]


def test_cli_verdict(dumps):
    r = fastdump_cli("verify", dumps["lz4"])
    assert r.stdout.startswith("OK: ") and "checksums match" in r.stdout


def test_trailer_ends_the_header_block_and_the_page_sums_are_in_the_descriptors(dumps):
    """Where the checksums are: nowhere a reader looks (no header field points at them).
    The page data starts where makedumpfile's would, right after the descriptor table
    and the shared zero block; each descriptor's page_flags holds its page's checksum."""
    for codec in CODECS:
        path = dumps[codec]
        with fastdump.open(path) as d:
            sums = d.checksums()
            assert sums.scheme == checksums.IN_DESCRIPTORS and sums.array_count == d.n_descriptors()
            descs = [d.descriptor(p) for p in d.pfns()]
            ends = [off + size for off, size, _, _ in descs]
            zero = d.zero_page_offset()
            starts = [off for off, *_ in descs if off != zero]
            table_end = kdump.DESC.size * d.n_descriptors() + d.desc_off
            assert min(starts) == table_end + (d.page_size if zero is not None else 0), codec
            assert {pf >> 32 for *_, pf in descs} == {checksums.DESC_TAG_WHOLE}, codec
            assert d.offset_eraseinfo == 0 and d.size_eraseinfo == 0
            # the trailer ends the header block, behind the header and its task pointers;
            # the file ends with the last page's data, as makedumpfile's does
            assert max(ends) == os.path.getsize(path), codec
            assert kdump.HEADER.size + 8 * d.nr_cpus <= sums.trailer_off < d.block_size, codec
            assert sums.trailer_off + len(d.read_at(sums.trailer_off, d.block_size - sums.trailer_off)) \
                == d.block_size
    with fastdump.open(dumps["elf"]) as d:    # ELF: data checksums before the first PT_LOAD, the trailer after all
        size = os.path.getsize(dumps["elf"])
        sums = checksums.load(lambda o, n: os.pread(d.fd, n, o), size)
        assert sums.array_count == -(-sums.data_len // 4096)
        assert sums.array_off + 4 * sums.array_count == sums.data_off == min(p.offset for p in d.loads if p.filesz)
        assert sums.trailer_off == sums.data_off + sums.data_len == max(p.offset + p.filesz for p in d.loads)


@pytest.mark.parametrize("kind", ["zstd", "elf"])
@pytest.mark.parametrize("trailer", [(0, 0), (0, 1 << 40), (-1, 64), (100, 10)])
def test_forged_footer_is_a_failure_not_a_crash(dumps, tmp_path, kind, trailer):
    """A footer whose own crc is right but that points anywhere: one clear problem."""
    path = str(tmp_path / "forged")
    shutil.copy(dumps[kind], path)
    size = os.path.getsize(path)
    off, length = trailer
    fields = checksums.FOOTER_MAGIC + struct.pack("<QQI", off % (1 << 64), length, 0)
    footer = fields + struct.pack("<I", zlib.crc32(fields))
    with open(path, "r+b") as f:
        f.seek(size - 2 * checksums.FOOTER.size)
        f.write(footer + footer)
    r = verify(path)
    assert not r["ok"] and r["checksums"] == "damaged" and "checksum trailer" in r["verdict"], r["verdict"]


@pytest.mark.parametrize("fmt", ["kdump", "elf"])
def test_failure_after_the_trailer_leaves_no_checksums(small, tmp_path, monkeypatch, fmt):
    """The disk fills while the last buffers are flushed, after the trailer was written:
    the dump is flagged incomplete and carries no checksums that no longer hold."""
    from fastdump.targets import sinks as output
    from fastdump.errors import NoSpaceError

    def full(self):
        raise NoSpaceError(f"{self.temp_path}: no space left on device")
    monkeypatch.setattr(output.FileSink, "commit", full)
    out = str(tmp_path / "dump")
    with pytest.raises(NoSpaceError):
        fastdump.dump(small, out, level=1, compress="none" if fmt == "elf" else "zstd", format=fmt)
    r = verify(out + ".incomplete")
    assert r["incomplete"] and r["checksums"] is False and r["problem_count"] == 0, r["verdict"]
    if fmt == "elf":
        with fastdump.open(out + ".incomplete") as d:
            assert not d.header.checksums_marked


def test_cut_short_dump_still_checks_its_pages(small, tmp_path, monkeypatch):
    """The page checksums live in the descriptors, so a dump without a trailer (flagged
    incomplete) still has every written page checked, and a changed byte is named."""
    from fastdump.targets import sinks as output
    from fastdump.errors import NoSpaceError

    def full(self):
        raise NoSpaceError(f"{self.temp_path}: no space left on device")
    monkeypatch.setattr(output.FileSink, "commit", full)
    out = str(tmp_path / "dump")
    with pytest.raises(NoSpaceError):
        fastdump.dump(small, out, level=1, compress="zstd")
    path = out + ".incomplete"
    r = verify(path)
    assert r["incomplete"] and r["checksums"] is False and r["problem_count"] == 0, r["verdict"]
    assert r["pages_checksummed"] == r["pages_checked"] > 0, r
    with fastdump.open(path) as d:
        pfn = [p for p in d.pfns() if d.descriptor(p)[3]][-1]
        off, size, _, _ = d.descriptor(pfn)
    with open(path, "r+b") as f:
        f.seek(off + size // 2)
        b = f.read(1)
        f.seek(off + size // 2)
        f.write(bytes([b[0] ^ 0x10]))
    r = verify(path)
    assert f"{pfn:#x}" in r["verdict"] and "checksum" in r["verdict"], r["verdict"]


def test_makedumpfile_reassembly_keeps_the_page_checksums(vmcore, tmp_path):
    """makedumpfile --reassemble moves the page data but copies each descriptor's
    page_flags: the offset is not part of the checksum, so every page still checks
    but the zero pages, which it points at a zero block of its own with page_flags 0
    (the trailer is ours alone, and it is gone)."""
    parts = [str(tmp_path / f"part{i}") for i in range(2)]
    fastdump.dump(vmcore, level=1, compress="zlib", split=parts, split_block_pfns=1024)
    out = str(tmp_path / "joined")
    makedumpfile("--reassemble", *parts, out)
    r = verify(out, vmcore)
    assert r["ok"] and r["checksums"] is False, r["verdict"]
    with fastdump.open(out) as d:
        zero = d.zero_page_offset()
        zeros = sum(d.descriptor(p)[0] == zero for p in d.pfns())
    assert r["pages_checksummed"] == r["pages_checked"] - zeros > 0 and r["pages_checked"] == r["pages_compared"], r
    assert f"{r['pages_checksummed']} pages match the checksums in their descriptors" in r["verdict"], r["verdict"]
    assert "carries none" not in r["verdict"]


@pytest.mark.parametrize("bitmap_blocks, in_header", [(16, True), (400, True), (500, False)])
def test_trailer_goes_in_the_header_block_while_it_fits(bitmap_blocks, in_header):
    """4 bytes per bitmap block: up to some 50 GiB of RAM the trailer fits behind the
    header and its task pointers; past that it follows the last page data.  Either
    way the reader finds it, with every bitmap block as a region of its own."""
    bs, end = 4096, 1 << 30
    sums = checksums.Builder(block_size=bs, bitmap1=2 * bs, bitmap_len=bitmap_blocks * bs)
    sums.bitmap(checksums.BITMAP2, 5 * bs, b"\x01" * bs)
    header = kdump.SIGNATURE + bytes(kdump.HEADER.size - len(kdump.SIGNATURE))
    block0, tail = kdump.seal(sums, header, page_size=bs, nr_cpus=8, end=end, count=7)
    assert (tail == b"") == in_header
    assert len(block0) == (bs if in_header else kdump.HEADER.size)
    image = {0: bytes(block0), end: tail}

    def read(off, n):
        for at, data in image.items():
            if at <= off < at + len(data):
                return data[off - at:off - at + n]
        return bytes(n)
    got = checksums.load(read, end + len(tail), header_block=bs)
    assert got.scheme == checksums.IN_DESCRIPTORS and got.array_count == 7 and got.problem is None
    assert got.trailer_off == (bs - sums.trailer_size() if in_header else end)
    assert not in_header or got.trailer_off >= kdump.HEADER.size + 8 * 8      # behind the 8 task pointers
    kinds = Counter(kind for *_, kind in got.regions)
    assert kinds[checksums.BITMAP1] == kinds[checksums.BITMAP2] == bitmap_blocks and kinds[checksums.HEADER] == 1
    assert (2 * bs + (bitmap_blocks + 5) * bs, bs, zlib.crc32(b"\x01" * bs), checksums.BITMAP2) in got.regions
    header_region = next(r for r in got.regions if r[3] == checksums.HEADER)
    assert header_region[:2] == ((0, got.trailer_off) if in_header else (0, bs))


def test_version_1_trailer_still_reads():
    """A dump of an older fastdump (every region listed, page checksums in an array)
    keeps its regions checked; its page array is not read (verify counts none)."""
    regions = [(0, 4096, 123, checksums.HEADER), (8192, 4096, 456, checksums.BITMAP1)]
    body = checksums.HEAD.pack(checksums.MAGIC, 1, checksums.ALGO_CRC32, checksums.PER_DESCRIPTOR, 4096,
                               20480, 3, 0, 0, len(regions)) + b"".join(checksums.REGION.pack(*r) for r in regions)
    at = 1 << 20
    fields = checksums.FOOTER_MAGIC + struct.pack("<QQI", at, len(body), zlib.crc32(body))
    footer = fields + struct.pack("<I", zlib.crc32(fields))
    tail = body + footer + footer
    got = checksums.load(lambda off, n: tail[off - at:off - at + n], at + len(tail), header_block=4096)
    assert got.scheme == checksums.PER_DESCRIPTOR and got.regions == regions and got.trailer_off == at


def test_trailer_too_large_for_the_header_block_follows_the_data(tmp_path):
    """The writer's other placement, end to end: 460 CPUs' task pointers leave the header
    block no room, so the trailer follows the last page.  verify checks it, a changed
    byte in the header block's padding or the trailer is found, libkdumpfile reads every
    page."""
    src = str(tmp_path / "vmcore")
    SyntheticVmcore(VmcoreSpec(ram_size=32 * MiB, nr_cpus=460)).write(src)
    out = str(tmp_path / "dump")
    fastdump.dump(src, out, level=1, compress="zlib")
    with fastdump.open(out) as d:
        assert d.nr_cpus == 460
        sums = d.checksums()
        ends = max(d.descriptor(p)[0] + d.descriptor(p)[1] for p in d.pfns())
    assert sums.trailer_off == ends > d.block_size
    r = verify(out, src)
    assert r["ok"] and r["checksums"] is True and r["pages_checksummed"] == r["pages_checked"] > 0, r["verdict"]
    source_pages = elf_pages(src)
    _, got = kdumpfile_digests(out, max(source_pages) + 1)
    assert got == digests(source_pages)
    missed = _flip_each(out, {3000: None, sums.trailer_off + 10: None}, 0x20)
    assert not missed, missed


@pytest.mark.parametrize("trailer", [(0, 0), (0, 1 << 40), (4000, 10)])
def test_forged_footer_in_the_header_block_is_a_failure_not_a_crash(dumps, tmp_path, trailer):
    """The header block's footer copies, right in their own crc but pointing anywhere:
    one clear problem, as at the end of the file."""
    path = str(tmp_path / "forged")
    shutil.copy(dumps["zstd"], path)
    off, length = trailer
    fields = checksums.FOOTER_MAGIC + struct.pack("<QQI", off, length, 0)
    footer = fields + struct.pack("<I", zlib.crc32(fields))
    with open(path, "r+b") as f:
        f.seek(4096 - 2 * checksums.FOOTER.size)
        f.write(footer + footer)
    r = verify(path)
    assert not r["ok"] and r["checksums"] == "damaged" and "checksum trailer" in r["verdict"], r["verdict"]


def _descriptor_table(path):
    """(offset of the table, the dumped pfns in table order, their descriptors)."""
    with fastdump.open(path) as d:
        pfns = list(d.pfns())
        return d.desc_off, pfns, [d.descriptor(p) for p in pfns], d.zero_page_offset()


def test_two_descriptors_swapped_are_found_without_the_source(dumps, tmp_path):
    """A page checksum covers the pfn: two whole descriptors exchanged, each still
    matching the bytes it points at, are two pages in the wrong place (crash would show
    one page's memory at the other's address).  Both are named."""
    path = str(tmp_path / "swapped")
    shutil.copy(dumps["zstd"], path)
    desc_off, pfns, descs, zero = _descriptor_table(path)
    i, j = [k for k, (off, *_) in enumerate(descs) if off != zero][1:3]
    with open(path, "r+b") as f:
        a, b = os.pread(f.fileno(), 24, desc_off + 24 * i), os.pread(f.fileno(), 24, desc_off + 24 * j)
        os.pwrite(f.fileno(), b, desc_off + 24 * i)
        os.pwrite(f.fileno(), a, desc_off + 24 * j)
    r = verify(path)
    assert not r["ok"] and "2 pages do not match their checksums" in r["verdict"], r["verdict"]
    assert f"{pfns[i]:#x}" in r["verdict"] and f"{pfns[j]:#x}" in r["verdict"], r["verdict"]


def _as_version_1(path):
    """Rewrite every descriptor's checksum as fastdump wrote it before the pfn was covered."""
    desc_off, pfns, descs, _ = _descriptor_table(path)
    with open(path, "r+b") as f:
        for k, (off, size, flags, _) in enumerate(descs):
            data = os.pread(f.fileno(), size, off)
            desc = checksums.with_checksum(kdump.DESC.pack(off, size, flags, 0), zlib.crc32(data), 0,
                                           checksums.DESC_TAG)
            os.pwrite(f.fileno(), desc, desc_off + 24 * k)


def test_version_1_page_checksums_still_check(dumps, tmp_path):
    """A dump of fastdump before the pfn was covered (tag 1) verifies as before: a flipped
    byte is found, a swap is not (it never was), and a missing trailer cannot be told from
    makedumpfile's --reassemble of parts, so it is not claimed."""
    path = str(tmp_path / "v1")
    shutil.copy(dumps["zlib"], path)
    _as_version_1(path)
    r = verify(path)
    assert r["ok"] and r["checksums"] is True and r["pages_checksummed"] > 0, r["verdict"]
    desc_off, pfns, descs, zero = _descriptor_table(path)
    k = next(k for k, (off, *_) in enumerate(descs) if off != zero)
    flipped = str(tmp_path / "v1-flipped")
    shutil.copy(path, flipped)
    with open(flipped, "r+b") as f:
        off = descs[k][0]
        os.pwrite(f.fileno(), bytes([os.pread(f.fileno(), 1, off + 3)[0] ^ 0x10]), off + 3)
    r = verify(flipped)
    assert not r["ok"] and f"pfn {pfns[k]:#x}" in r["verdict"], r["verdict"]
    with open(path, "r+b") as f:            # both footer copies gone
        os.pwrite(f.fileno(), bytes(2 * checksums.FOOTER.size), 4096 - 2 * checksums.FOOTER.size)
    r = verify(path)
    assert r["ok"] and r["checksums"] is False, r["verdict"]


def test_a_kdump_dump_whose_footer_is_wiped_fails_verify(dumps, tmp_path):
    """Both copies of the footer zeroed (64 bytes at the end of the header block): the
    descriptors say that a trailer ends this dump, so verify must fail instead of saying
    that the dump carries none.  The pages still check against their descriptors."""
    path = str(tmp_path / "wiped")
    shutil.copy(dumps["zstd"], path)
    with fastdump.open(path) as d:
        sums = d.checksums()
        assert sums.trailer_off < d.block_size
    with open(path, "r+b") as f:
        os.pwrite(f.fileno(), bytes(2 * checksums.FOOTER.size), 4096 - 2 * checksums.FOOTER.size)
    r = verify(path)
    assert not r["ok"] and r["checksums"] == "missing", r["verdict"]
    assert "say a checksum trailer ends this dump, but none is there" in r["verdict"], r["verdict"]


def test_a_split_part_whose_footer_is_wiped_fails_verify(vmcore, tmp_path):
    """A part as fastdump wrote it ends with its own trailer: wiped, it fails; the file
    makedumpfile --reassemble makes of the parts carries their descriptors and no trailer,
    and passes (test_makedumpfile_reassembly_keeps_the_page_checksums)."""
    parts = [str(tmp_path / f"part{i}") for i in range(2)]
    fastdump.dump(vmcore, level=1, compress="zlib", split=parts, split_block_pfns=1024)
    with fastdump.open(parts[1]) as d:
        assert {d.descriptor(p)[3] >> 32 for p in d.pfns()} == {checksums.DESC_TAG_PART}
        bs = d.block_size
    assert verify(parts[1])["ok"]
    with open(parts[1], "r+b") as f:
        os.pwrite(f.fileno(), bytes(2 * checksums.FOOTER.size), bs - 2 * checksums.FOOTER.size)
    r = verify(parts[1])
    assert not r["ok"] and r["checksums"] == "missing" and "ends this part" in r["verdict"], r["verdict"]
