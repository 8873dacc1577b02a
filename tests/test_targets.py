"""Where dumps go and how they travel: flattened streams, raw devices, split files,
directory targets, fallback lists, config files, conversion (issue 6)."""

import filecmp
import io
import json
import os
import re
import stat
import struct
import subprocess
import sys

import pytest

import fastdump
from fastdump.formats import elf, kdump
from fastdump.commands.verify import verify
from fastdump.testing.generator import MiB
from support import (digests, elf_pages, fastdump_cli, kdumpfile_digests, makedumpfile, need_tool)

FASTDUMP = [sys.executable, "-m", "fastdump"]


@pytest.fixture(scope="module")
def kvmcore(generated_kernel):
    """A 6.12-layout vmcore with free, cache and user pages and a printk buffer."""
    return generated_kernel(160 * MiB, encoding="6.12", seed=5, printk="lockless")


def _pipe(cmd_a, cmd_b, **kw):
    a = subprocess.Popen(cmd_a, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    b = subprocess.run(cmd_b, stdin=a.stdout, capture_output=True, **kw)
    a.stdout.close()
    a.wait()
    return a, b


def test_flattened_stdout_rebuilt_by_fastdump_and_makedumpfile(vmcore, source_pages, tmp_path):
    direct = str(tmp_path / "direct")
    fastdump.dump(vmcore, direct, level=1, compress="zlib", threads=2)
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    a, b = _pipe(FASTDUMP + ["-F", "-c", "-d", "1", "--threads", "2", vmcore], FASTDUMP + ["-R", ours])
    assert a.returncode == 0 and b.returncode == 0, b.stderr
    assert filecmp.cmp(direct, ours, shallow=False)          # same bytes as writing the file directly
    flat = str(tmp_path / "flat")
    with open(flat, "wb") as f:
        subprocess.run(FASTDUMP + ["-F", "-c", "-d", "1", vmcore], stdout=f, check=True)
    with open(flat, "rb") as f:
        r = subprocess.run(["makedumpfile", "-R", theirs], stdin=f, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert filecmp.cmp(direct, theirs, shallow=False)
    _, got = kdumpfile_digests(theirs, max(source_pages) + 1)
    assert got == digests(source_pages)


def test_makedumpfile_stream_rebuilt_by_fastdump(vmcore, source_pages, tmp_path):
    flat, out = str(tmp_path / "mdf.flat"), str(tmp_path / "rebuilt")
    with open(flat, "wb") as f:
        r = subprocess.run(["makedumpfile", "-F", "-c", "-d", "1", vmcore], stdout=f, stderr=subprocess.PIPE)
    assert r.returncode == 0
    with open(flat, "rb") as f:
        r = subprocess.run(FASTDUMP + ["-R", out], stdin=f, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    _, got = kdumpfile_digests(out, max(source_pages) + 1)
    want = digests(source_pages)
    assert {p: want[p] for p in got} == got and len(got) >= len(want) - 1   # makedumpfile drops pfn 0x9f


def test_elf_through_a_stream(vmcore, source_pages, tmp_path):
    out = str(tmp_path / "elf")
    a, b = _pipe(FASTDUMP + ["-F", "-E", "-d", "1", vmcore], FASTDUMP + ["-R", out])
    assert b.returncode == 0
    got = elf_pages(out)
    assert got and all(got[p] == source_pages[p] for p in got)


def test_cut_stream_rebuilds_into_an_incomplete_dump(vmcore, tmp_path):
    flat = tmp_path / "flat"
    with open(flat, "wb") as f:
        subprocess.run(FASTDUMP + ["-F", "-z", "-d", "1", vmcore], stdout=f, check=True)
    data = flat.read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(data[:len(data) * 2 // 3])
    out = str(tmp_path / "rebuilt")
    with open(cut, "rb") as f:
        r = subprocess.run(FASTDUMP + ["-R", out], stdin=f, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "ended" in r.stderr
    assert not os.path.exists(out)
    with fastdump.open(out + ".incomplete") as d:
        assert d.incomplete                                    # the final header never arrived
        pfn = next(iter(d.pfns()))
        assert len(d.read_pfn(pfn)) == 4096


@pytest.mark.parametrize("cut", ["end record first", "end after the header record"])
def test_a_stream_that_ends_too_early_is_not_a_dump(vmcore, tmp_path, cut):
    """An end record before the dump's headers all came: an error and the .incomplete
    file, never a short file under the dump's name with status 0."""
    flat = tmp_path / "flat"
    with open(flat, "wb") as f:
        subprocess.run(FASTDUMP + ["-F", "-z", "-d", "1", vmcore], stdout=f, check=True)
    data = flat.read_bytes()
    end = struct.pack(">qq", -1, -1)
    if cut == "end record first":
        bad = data[:4096] + end
    else:
        first = 4096 + 16 + struct.unpack_from(">qq", data, 4096)[1]
        bad = data[:first] + end
    (tmp_path / "bad").write_bytes(bad)
    out = str(tmp_path / "rebuilt")
    with open(tmp_path / "bad", "rb") as f:
        r = subprocess.run(FASTDUMP + ["-R", out], stdin=f, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "flattened stream" in r.stderr and "Traceback" not in r.stderr
    assert not os.path.exists(out) and os.path.exists(out + ".incomplete")


def _records(stream):
    """(position, offset, size) of each record of a flattened ``stream`` (bytes)."""
    at, out = 4096, []
    while True:
        offset, size = struct.unpack_from(">qq", stream, at)
        if offset == -1:
            return out
        out.append((at, offset, size))
        at += 16 + size


@pytest.fixture(scope="module")
def streams(vmcore, tmp_path_factory):
    """Flattened streams of the same vmcore: fastdump's kdump and ELF, makedumpfile's kdump."""
    where = tmp_path_factory.mktemp("streams")
    out = {}
    for name, cmd in [("fastdump kdump", FASTDUMP + ["-F", "-z", "-d", "1"]),
                      ("fastdump ELF", FASTDUMP + ["-F", "-E", "-d", "1"]),
                      ("makedumpfile kdump", [need_tool("makedumpfile"), "-F", "-l", "-d", "1"])]:
        with open(where / "s", "wb") as f:
            subprocess.run(cmd + [vmcore], stdout=f, stderr=subprocess.DEVNULL, check=True)
        out[name] = (where / "s").read_bytes()
    return out


@pytest.mark.parametrize("shift", [1 << 40, 4096])
@pytest.mark.parametrize("kind", ["fastdump kdump", "fastdump ELF", "makedumpfile kdump"])
def test_a_record_moved_elsewhere_is_not_rebuilt_into_a_dump(streams, tmp_path, kind, shift):
    """A record whose offset changed on the way leaves a hole (zeros) where it belonged
    and bytes where nothing was to be: -R must say so, not rebuild a dump that reads
    zeros for a sub-header, a bitmap, a checksum array or a page."""
    from fastdump.errors import FormatError
    from fastdump.formats.flat import rearrange
    data = streams[kind]
    records = _records(data)
    good = tmp_path / "good"
    rearrange(io.BytesIO(data), str(good))
    picked = records[:6] + records[6:-6:max(1, len(records) // 20)] + records[-6:]   # each kind of record
    passed = []
    for at, offset, size in picked:
        moved = bytearray(data)
        struct.pack_into(">q", moved, at, offset + shift)
        out = tmp_path / f"r{at}"
        try:
            rearrange(io.BytesIO(moved), str(out))
        except FormatError as e:
            assert str(e).count("\n") == 0 and os.path.exists(f"{out}.incomplete") and not out.exists()
            os.unlink(f"{out}.incomplete")
            continue
        same = out.stat().st_size == good.stat().st_size and filecmp.cmp(out, good, shallow=False)
        passed.append((offset, size, same))
        out.unlink()
    assert all(same for _, _, same in passed), f"rebuilt into another dump: {passed}"


def test_a_stream_without_its_final_header_is_no_finished_dump(streams, source_pages, tmp_path):
    """fastdump sends its header flagged incomplete first and complete last: a stream
    whose last header record was lost ends well but holds an unfinished dump, kept as
    .incomplete (readable), never under the dump's name, status 1 and one line."""
    data = streams["fastdump kdump"]
    at, offset, size = _records(data)[-1]
    assert offset == 0
    cut = data[:at] + struct.pack(">qq", -1, -1)
    out = str(tmp_path / "rebuilt")
    r = subprocess.run(FASTDUMP + ["-R", out], input=cut, capture_output=True)
    assert r.returncode == 1 and r.stderr.decode().count("\n") == 1, r.stderr
    assert b"flagged incomplete" in r.stderr and b"Traceback" not in r.stderr
    assert not os.path.exists(out)
    with fastdump.open(out + ".incomplete") as d:
        assert d.incomplete and len(d.read_pfn(next(iter(d.pfns())))) == 4096
    _, theirs = kdumpfile_digests(out + ".incomplete", max(source_pages) + 1, cut=True)   # libkdumpfile too
    want = digests(source_pages)
    assert len(theirs) > 1000 and all(theirs[p] == want[p] for p in theirs)


def test_a_page_record_sent_twice_is_refused_after_any_number_of_header_rewrites(streams, tmp_path):
    """Headers may be sent again (fastdump sends its header last, makedumpfile its program
    headers); a record writing page data again may not, however many header records
    came before it."""
    from fastdump.errors import FormatError
    from fastdump.formats.flat import rearrange
    data = streams["fastdump kdump"]
    records = _records(data)
    at0, _, size0 = records[0]
    at, offset, size = records[len(records) // 2]
    assert offset > 1 << 16
    headers = data[at0:at0 + 16 + size0] * 1500
    stream = data[:4096] + headers + data[4096:-16] + data[at:at + 16 + size] + data[-16:]
    out = tmp_path / "rebuilt"
    with pytest.raises(FormatError, match=f"wrote bytes {offset}..{offset + size} again"):
        rearrange(io.BytesIO(stream), str(out))
    assert not out.exists()
    rearrange(io.BytesIO(data[:4096] + headers + data[4096:]), str(tmp_path / "ok"))   # headers alone: a dump


def test_an_elf_stream_that_lost_its_checksum_trailer_is_no_finished_dump(streams, tmp_path):
    """fastdump's ELF header says a checksum trailer ends the dump: a stream whose trailer
    records were lost on the way must not rebuild into a dump that seems to carry none."""
    from fastdump.errors import FormatError
    from fastdump.formats import checksums
    from fastdump.formats.flat import rearrange
    data = streams["fastdump ELF"]
    good = tmp_path / "good"
    rearrange(io.BytesIO(data), str(good))
    with open(good, "rb") as f:
        read = lambda o, n: os.pread(f.fileno(), n, o)      # noqa: E731
        trailer_off = checksums.load(read, good.stat().st_size).trailer_off
        assert elf.parse_header(read).checksums_marked
    kept = b"".join(data[at:at + 16 + size] for at, offset, size in _records(data) if offset < trailer_off)
    assert len(kept) < len(data) - 4096 - 16
    out = tmp_path / "rebuilt"
    with pytest.raises(FormatError, match="checksum trailer"):
        rearrange(io.BytesIO(data[:4096] + kept + struct.pack(">qq", -1, -1)), str(out))
    assert not out.exists() and os.path.exists(f"{out}.incomplete")


def test_convert_takes_a_stream_without_its_final_header_and_names_it(streams, source_pages, tmp_path):
    """convert re-filters an unfinished dump as it would a file flagged incomplete: it
    warns, naming the stream it was given (not its temporary rebuild), converts the pages
    that arrived, which libkdumpfile reads as in the source, into an output flagged
    incomplete too (status 3: nothing says the stream's writer had finished)."""
    data = streams["fastdump kdump"]
    at, offset, _ = _records(data)[-1]
    assert offset == 0
    stream = tmp_path / "cut.flat"
    stream.write_bytes(data[:at] + struct.pack(">qq", -1, -1))
    out = str(tmp_path / "converted")
    r = fastdump_cli("convert", "-d", "1", str(stream), out, check=False)
    assert r.returncode == 3 and f"warning: {stream} is marked incomplete" in r.stdout, r.stdout + r.stderr
    assert "rearranged" not in r.stdout + r.stderr
    with fastdump.open(out) as d:
        assert d.incomplete
    _, theirs = kdumpfile_digests(out, max(source_pages) + 1, cut=True)
    want = digests(source_pages)
    assert len(theirs) > 1000 and all(theirs[p] == want[p] for p in theirs)


def test_a_kdump_file_whose_sub_header_disagrees_with_its_header_is_refused(vmcore, tmp_path):
    """Both headers carry max_mapnr (the sub-header the 64-bit count); a sub-header that
    was zeroed or damaged must not open as a dump of no pages."""
    out = tmp_path / "d"
    fastdump.dump(vmcore, str(out), level=1, compress="zlib")
    raw = bytearray(out.read_bytes())
    with fastdump.open(str(out)) as d:
        at = d.block_size + kdump.SUB_HEADER.size - 8       # max_mapnr_64, the sub-header's last field
        assert d.max_mapnr == struct.unpack_from("<Q", raw, at)[0]
    struct.pack_into("<Q", raw, at, 0)
    out.write_bytes(raw)
    with pytest.raises(fastdump.FastdumpError, match="sub-header"):
        fastdump.open(str(out))


def test_raw_device_target(vmcore, source_pages, tmp_path):
    dev = tmp_path / "disk"
    dev.write_bytes(bytes(64 * MiB))                           # a file standing in for the device
    fastdump_cli("-z", "-d", "1", vmcore, f"raw:{dev}")
    out = str(tmp_path / "back")
    fastdump_cli("-R", "--from-device", str(dev), out)
    _, got = kdumpfile_digests(out, max(source_pages) + 1)
    assert got == digests(source_pages)


def test_raw_device_too_small_is_skipped_for_the_next_target(vmcore, tmp_path):
    small = tmp_path / "small"
    small.write_bytes(bytes(1 * MiB))
    out = str(tmp_path / "fallback")
    r = fastdump_cli("-z", "-d", "1", vmcore, "--target", f"raw:{small}", "--target", out)
    assert "trying" in r.stderr and os.path.exists(out)


@pytest.mark.parametrize("nparts", [2, 3])
def test_split_and_reassemble_both_ways(kvmcore, tmp_path, nparts):
    src, _ = kvmcore
    parts = [str(tmp_path / f"part{i}") for i in range(nparts)]
    fastdump_cli("--split", "--splitblock-size", "16384", "-c", "-d", "31", src, *parts)
    heads = {open(p, "rb").read(kdump.HEADER.size) for p in parts}
    assert len(heads) == 1                                      # byte-identical headers (crash checks)
    ranges = []
    for p in parts:
        with fastdump.open(p) as d:
            assert d.split and d.start_pfn % 64 == 0
            ranges.append((d.start_pfn, d.end_pfn))
    assert ranges[0][0] == 0 and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    whole = str(tmp_path / "whole")
    fastdump.dump(src, whole, level=31, compress="zlib")
    _, want = kdumpfile_digests(whole, 160 * MiB // 4096)
    ours = str(tmp_path / "ours")
    fastdump_cli("--reassemble", *parts, ours)
    assert kdumpfile_digests(ours, 160 * MiB // 4096)[1] == want
    theirs = str(tmp_path / "theirs")
    makedumpfile("--reassemble", *parts, theirs)
    assert kdumpfile_digests(theirs, 160 * MiB // 4096)[1] == want


def test_reassemble_makedumpfile_split(vmcore, source_pages, tmp_path):
    parts = [str(tmp_path / f"m{i}") for i in range(2)]
    makedumpfile("--split", "--splitblock-size", "16384", "-c", "-d", "1", vmcore, *parts)
    out = str(tmp_path / "joined")
    fastdump_cli("--reassemble", *parts, out)
    _, got = kdumpfile_digests(out, max(source_pages) + 1)
    want = digests(source_pages)
    assert all(want[p] == got[p] for p in got) and len(got) >= len(want) - 1


@pytest.mark.parametrize("maker", ["fastdump", "makedumpfile"])
@pytest.mark.parametrize("damage", ["page bytes", "offset into the header", "offset 0"])
def test_reassemble_leaves_a_damaged_page_out(vmcore, source_pages, tmp_path, maker, damage):
    """A page a part cannot give back (bytes failing its checksum or not decoding, data
    outside its page area, a descriptor never written in a part not flagged incomplete)
    is left out, the joined dump is flagged incomplete and the status is 3: never sealed
    with fresh checksums over the damage."""
    parts = [str(tmp_path / f"p{i}") for i in range(2)]
    (fastdump_cli if maker == "fastdump" else makedumpfile)(
        "--split", "--splitblock-size", "16384", "-z" if maker == "fastdump" else "-c", "-d", "1", vmcore, *parts)
    with fastdump.open(parts[1]) as d:
        pfn = next(p for p in d.pfns() if d.descriptor(p)[1] > 64 and d.descriptor(p)[2])   # compressed
        i = d._prefix_index(pfn) - d._base_index
        at = d.desc_off + kdump.DESC.size * i
        off, size = d.descriptor(pfn)[:2]
    data = bytearray(open(parts[1], "rb").read())
    if damage == "page bytes":
        data[off:off + size] = bytes(size)
    else:
        struct.pack_into("<q", data, at, 10 if damage == "offset into the header" else 0)
    open(parts[1], "wb").write(data)
    out = str(tmp_path / "joined")
    r = fastdump_cli("--reassemble", *parts, out, check=False)
    assert r.returncode == 3 and r.stderr.strip().splitlines() == [
        f"fastdump: error: reassembled but partial: 1 pages of the parts could not be read; {out} is flagged incomplete"]
    with fastdump.open(out) as j:
        assert j.incomplete
        with pytest.raises(kdump.FormatError):
            j.read_pfn(pfn)
        for p in list(j.pfns())[::97]:
            if p != pfn:
                assert j.read_pfn(p) == source_pages[p]
    _, theirs = kdumpfile_digests(out, max(source_pages) + 1, cut=True)   # as libkdumpfile reads it
    assert pfn not in theirs and len(theirs) > 1000
    assert all(theirs[p] == digests({p: source_pages[p]})[p] for p in theirs)


@pytest.mark.parametrize("maker", ["fastdump", "makedumpfile"])
def test_reassemble_takes_a_part_that_ends_inside_its_descriptor_table(vmcore, source_pages, tmp_path, maker):
    """A part flagged incomplete whose file ends half way through its descriptors (a writer
    killed early): its pages are missing from the joined dump, flagged incomplete, status 3,
    and no page is counted as damaged; every page of the whole part reads as the source."""
    parts = [str(tmp_path / f"p{i}") for i in range(2)]
    (fastdump_cli if maker == "fastdump" else makedumpfile)(
        "--split", "--splitblock-size", "16384", "-c", "-d", "1", vmcore, *parts)
    with fastdump.open(parts[1]) as d:
        cut = d.desc_off + kdump.DESC.size * (d.n_descriptors() // 2) + 5
    with open(parts[1], "rb") as f:
        data = bytearray(f.read(cut))
    data[:kdump.HEADER.size] = kdump.flag_incomplete(bytes(data[:kdump.HEADER.size]))
    with open(parts[1], "wb") as f:
        f.write(data)
    out = str(tmp_path / "joined")
    r = fastdump_cli("--reassemble", *parts, out, check=False)
    assert r.returncode == 3 and r.stderr.strip().splitlines() == [
        f"fastdump: error: reassembled but partial: {parts[1]} was flagged incomplete, and the pages never "
        f"written there are missing; {out} is flagged incomplete"]
    got = verify(out, vmcore)
    assert got["incomplete"] and got["problem_count"] == 0 and got["pages_unwritten"] > 0
    with fastdump.open(parts[0]) as a, fastdump.open(parts[1]) as b:
        whole = set(a.pfns())
        # of the cut part, only pages stored as the shared zero block (which the joined
        # file has) can be read: its page data was cut off
        zero = b.zero_page_offset()
        shared = {p for p in b.pfns() if b.desc_off + kdump.DESC.size * (b._prefix_index(p) - b._base_index + 1) <= cut
                  and b.descriptor(p)[0] == zero}
    _, theirs = kdumpfile_digests(out, max(source_pages) + 1, cut=True)
    assert set(theirs) == whole | shared
    assert all(theirs[p] == digests({p: source_pages[p]})[p] for p in theirs)


def test_reassemble_refuses_mixed_parts(vmcore, tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fastdump_cli("--split", "--splitblock-size", "16384", "-c", "-d", "1", vmcore, a, b)
    c, d = str(tmp_path / "c"), str(tmp_path / "d")
    fastdump_cli("--split", "--splitblock-size", "16384", "-z", "-d", "1", vmcore, c, d)
    r = fastdump_cli("--reassemble", a, d, str(tmp_path / "x"), check=False)
    assert r.returncode == 1 and "headers differ" in r.stderr


def test_directory_target_like_kdump_utils(kvmcore, tmp_path):
    src, layout = kvmcore
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    fastdump_cli("-l", "--message-level", "7", "-d", "31", src, str(crash_dir) + "/")
    (sub,) = list(crash_dir.iterdir())
    assert re.fullmatch(r"[A-Za-z0-9._-]+-\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d", sub.name)
    assert stat.S_IMODE(sub.stat().st_mode) == 0o700
    assert sorted(p.name for p in sub.iterdir()) == ["vmcore", "vmcore-dmesg.txt"]
    assert stat.S_IMODE((sub / "vmcore").stat().st_mode) == 0o600
    assert stat.S_IMODE((sub / "vmcore-dmesg.txt").stat().st_mode) == 0o600
    assert layout.expected_dmesg().strip() == (sub / "vmcore-dmesg.txt").read_text().strip()
    with fastdump.open(str(sub / "vmcore")) as d:
        assert d.dump_level == 31 and d.describe()["compression"] == "lzo"   # -l, as makedumpfile


def test_level_list_falls_back_when_the_target_is_too_small(kvmcore, tmp_path):
    src, _ = kvmcore
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120m", "tmpfs", str(mnt)], check=True)
    try:
        stats_file = str(tmp_path / "s.json")
        r = fastdump_cli("--compress", "none", "-d", "1,31", "--stats-json", stats_file, src, str(mnt / "vmcore"))
        assert "retrying with dump level 31" in r.stderr
        assert json.load(open(stats_file))["dump_level"] == 31
        with fastdump.open(str(mnt / "vmcore")) as d:
            assert d.dump_level == 31
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_config_file(vmcore, tmp_path):
    (tmp_path / "out").mkdir()
    cfg = tmp_path / "fastdump.toml"
    cfg.write_text(f'source = "{vmcore}"\ntargets = ["{tmp_path}/nowhere/", "{tmp_path}/out/"]\n'
                   'dump_level = 1\ncompress = "zstd"\n')
    r = fastdump_cli("--settings", str(cfg), check=False)
    assert r.returncode == 0, r.stderr
    assert "trying" in r.stderr
    (sub,) = list((tmp_path / "out").iterdir())
    with fastdump.open(str(sub / "vmcore")) as d:
        assert d.describe()["compression"] == "zstd"
    cfg.write_text('targets = "not a list"\n')
    r = fastdump_cli("--settings", str(cfg), check=False)
    assert r.returncode == 2 and "wrong type" in r.stderr


def test_convert_lz4_to_standard_and_refilter(kvmcore, tmp_path):
    src, layout = kvmcore
    fast = str(tmp_path / "fast.lz4")
    fastdump.dump(src, fast, level=1, compress="lz4")
    std = str(tmp_path / "std")
    fastdump_cli("convert", "-d", "31", "--compress", "zstd", fast, std)
    direct = str(tmp_path / "direct")
    fastdump.dump(src, direct, level=31, compress="zstd")
    with fastdump.open(std) as a, fastdump.open(direct) as b:
        assert list(a.pfns()) == list(b.pfns())                # same pages dropped as a direct -d 31
        assert a.bitmap1() == b.bitmap1()
        for pfn in list(a.pfns())[::53]:
            assert a.read_pfn(pfn) == b.read_pfn(pfn)
    fmt, got = kdumpfile_digests(std, 160 * MiB // 4096)
    assert fmt == "diskdump" and got
    elf_out = str(tmp_path / "e")
    fastdump_cli("convert", "-E", "-d", "1", std, elf_out)
    pages = elf_pages(elf_out)
    with fastdump.open(direct) as b:
        assert all(pages[p] == b.read_pfn(p) for p in list(pages)[::41])


@pytest.mark.parametrize("to", ["kdump", "elf"])
def test_convert_leaves_an_unreadable_page_out_and_says_so(vmcore, source_pages, tmp_path, to):
    """A page of the input that no longer decodes is missing from the output (never zeros,
    which a -d 1 output would then drop or store as the shared zero page), and convert
    exits 3 with one line, as a dump with unreadable source pages does."""
    kd = str(tmp_path / "in")
    fastdump.dump(vmcore, kd, level=1, compress="zstd")
    with fastdump.open(kd) as d:
        victim = next(p for p in d.pfns() if 0 < d.descriptor(p)[1] < 2048)
        off, size = d.descriptor(victim)[:2]
    data = bytearray(open(kd, "rb").read())
    data[off:off + size] = bytes(range(size % 256)) + bytes(size - size % 256)
    open(kd, "wb").write(data)
    out = str(tmp_path / "out")
    r = fastdump_cli("convert", "-d", "1", *(["-E"] if to == "elf" else []), kd, out, check=False)
    assert r.returncode == 3 and r.stderr.strip().splitlines() == [
        f"fastdump: error: converted but partial: 1 pages of {kd} could not be read and are missing from {out}"]
    got = elf_pages(out) if to == "elf" else None
    with fastdump.open(out) as o:
        if to == "elf":                                   # not described: memory that reads as missing
            assert not any(a <= victim < b for a, b in o.present_runs())
        else:
            assert not o.bitmap1()[victim >> 3] >> (victim & 7) & 1
        pfns = set(got) if got is not None else set(o.pfns())
        assert victim not in pfns and len(pfns) > 1000
        for p in sorted(pfns)[::7]:
            assert (got[p] if got is not None else o.read_pfn(p)) == source_pages[p], p
    if to == "kdump":                                     # and as libkdumpfile reads it
        _, theirs = kdumpfile_digests(out, max(source_pages) + 1)
        assert victim not in theirs and len(theirs) > 1000
        assert all(theirs[p] == digests({p: source_pages[p]})[p] for p in theirs)


def test_makedumpfile_modes_dump_dmesg_and_mem_usage(kvmcore, tmp_path):
    src, layout = kvmcore
    out = tmp_path / "dmesg.txt"
    fastdump_cli("--dump-dmesg", src, str(out))
    assert out.read_text().strip() == layout.expected_dmesg().strip()
    r = fastdump_cli("--message-level", "7", "--mem-usage", src)
    assert "free" in r.stdout and "-d 31" in r.stdout


def test_file_system_without_fallocate(vmcore, source_pages, tmp_path):
    """ext2 (no extents) has no fallocate, like NFS before 4.2 where a booted ``fastdump initrd``
    found this: glibc's posix_fallocate then reads each block, which the write-only dump file
    refuses (EBADF).  That is "not supported", and the dump is written whole."""
    from support import need_tool
    assert os.geteuid() == 0, "this test mounts a loop device: run it as root"
    img, mnt, copy = tmp_path / "ext2.img", tmp_path / "mnt", tmp_path / "copy"
    with open(img, "wb") as f:
        f.truncate(64 * MiB)
    subprocess.run([need_tool("mkfs.ext2"), "-q", "-F", str(img)], check=True)
    mnt.mkdir()
    script = 'set -e; mount -o loop "$1" "$2"; "$3" -m fastdump -z -d 31 "$4" "$2/dump"; cp "$2/dump" "$5"'
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh", str(img),
                        str(mnt), sys.executable, vmcore, str(copy)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    fmt, pages = kdumpfile_digests(str(copy), max(source_pages) + 1)
    assert fmt == "diskdump" and pages and pages == digests({p: source_pages[p] for p in pages})
