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
    the page checksums, the trailer and both footer copies."""
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
                   sums.array_off, sums.array_end - 1, sums.trailer_off, sums.trailer_off + 40,
                   size - 64, size - 40, size - 1]
    raw = [off + size_ // 2 for off, size_, flags, _ in descs if flags == 0 and off != sums.array_off]
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
        assert sums.array_count == d.n_descriptors()      # the array is sized for the part's own pages
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


def test_trailer_is_after_the_last_page_and_the_array_before_the_first(dumps):
    """Where the checksums are: nowhere a reader looks (no header field points at them)."""
    for codec in CODECS:
        path = dumps[codec]
        with fastdump.open(path) as d:
            sums = d.checksums()
            ends = [d.descriptor(p)[0] + d.descriptor(p)[1] for p in d.pfns()]
            starts = [d.descriptor(p)[0] for p in d.pfns() if d.descriptor(p)[0] >= sums.array_end]
            assert max(ends) == sums.trailer_off and min(starts) == sums.array_end, codec
            assert d.offset_eraseinfo == 0 and d.size_eraseinfo == 0
            assert os.path.getsize(path) == sums.trailer_off + 24 * len(sums.regions) \
                + checksums.HEAD.size + 2 * checksums.FOOTER.size
            assert kdump.DESC.size * d.n_descriptors() + d.desc_off <= sums.array_off
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
