"""ELF vmcore input: the shapes /proc/vmcore and other producers give."""

import array
import os
import struct

import pytest

from fastdump.formats import elf
from fastdump.errors import SourceError
from fastdump.sources.vmcore import ElfSource, NotPresentError
from fastdump.testing.generator import MiB, make_vmcore
from support import elf_pages


def test_synthetic_vmcore_shape(vmcore):
    with ElfSource(vmcore) as s:
        assert s.nr_cpus == 2
        assert s.vmcoreinfo.osrelease.startswith("6.1")
        # kernel-text PT_LOAD folded into RAM: extents do not overlap and cover RAM only
        assert len(s.loads) == 3 and len(s.extents) == 2
        assert s.extents[0][:2] == (0x1000, 0x9FC00)
        assert s.present_runs() == [(1, 160), (256, 96 * MiB // 4096)]


def test_pages_match_pyelftools(vmcore, source_pages):
    with ElfSource(vmcore) as s:
        for pfn in (1, 159, 256, 4096, 5000, 96 * MiB // 4096 - 1):
            assert s.read_pfn(pfn) == source_pages[pfn], pfn
        assert s.read_pfn(159)[0xC00:] == bytes(0x400)   # partial last page: zero beyond the segment
        with pytest.raises(NotPresentError):
            s.read_phys(0xA0000, 16)                      # the legacy VGA hole


@pytest.mark.parametrize("kw", [dict(elfclass=elf.ELFCLASS32), dict(phoff=192), dict(nr_cpus=5)])
def test_variants(tmp_path, kw):
    path = str(tmp_path / "v")
    make_vmcore(path, ram_size=32 * MiB, **kw)
    ref = elf_pages(path)
    with ElfSource(path) as s:
        assert s.nr_cpus == kw.get("nr_cpus", 2)
        assert s.header.phoff == kw.get("phoff", 64 if kw.get("elfclass", 2) == 2 else 52)
        for pfn in (1, 300, 8000):
            assert s.read_pfn(pfn) == ref[pfn]


def test_several_pt_notes_are_merged(tmp_path):
    """Before /proc/vmcore merges them, each CPU has its own PT_NOTE (QEMU dumps too)."""
    path = str(tmp_path / "n")
    make_vmcore(path, ram_size=16 * MiB)
    with ElfSource(path) as s:
        notes, loads = s.note_bytes, s.loads
        cpu_notes = [n for n in s.notes if n.name == b"CORE"]
    vm = [n for n in elf.parse_notes(notes) if n.name == b"VMCOREINFO"][0]
    blob = open(path, "rb").read()
    # rebuild: one PT_NOTE per note, with a zero terminator and slack after each
    parts = [elf.build_note(b"CORE", 1, n.desc) + bytes(64) for n in cpu_notes]
    parts.append(elf.build_note(b"VMCOREINFO", 0, vm.desc) + bytes(12))
    base = 0x1000
    phdrs, off = [], base
    for p in parts:
        phdrs.append(elf.Phdr(elf.PT_NOTE, 0, off, 0, 0, len(p), len(p), 0))
        off += len(p)
    phdrs += loads
    hdr = elf.build_header(elf.ELFCLASS64, elf.EM_X86_64, phdrs)
    data = bytearray(blob)
    data[:len(hdr)] = hdr
    data[base:base + sum(map(len, parts))] = b"".join(parts)
    path2 = str(tmp_path / "n2")
    open(path2, "wb").write(data)
    with ElfSource(path2) as s:
        assert s.nr_cpus == 2
        assert s.vmcoreinfo.osrelease.startswith("6.1")


def _corrupt(tmp_path, vmcore, offset, data):
    path = str(tmp_path / "bad")
    blob = bytearray(open(vmcore, "rb").read(1 << 16))
    blob[offset:offset + len(data)] = data
    with open(path, "wb") as f:
        f.write(blob)
    return path


@pytest.mark.parametrize("offset,data,match", [
    (0, b"\x7fELG", "bad magic"),
    (4, b"\x07", "class"),
    (5, b"\x02", "big-endian"),
    (16, b"\x02\x00", "not a core"),
    (54, b"\x20\x00", "program header size"),
    (56, b"\xff\x00", "truncated"),
])
def test_corrupt_headers_are_one_line_errors(tmp_path, vmcore, offset, data, match):
    with pytest.raises(SourceError, match=match):
        ElfSource(_corrupt(tmp_path, vmcore, offset, data))


def test_truncated_file_is_reported(tmp_path, vmcore):
    path = str(tmp_path / "short")
    with open(vmcore, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read(os.path.getsize(vmcore) // 2))
    with pytest.raises(SourceError, match="truncated"):
        ElfSource(path)


def test_note_running_past_segment(tmp_path, vmcore):
    with ElfSource(vmcore) as s:
        note_off = s.header.phdrs[0].offset
    path = _corrupt(tmp_path, vmcore, note_off + 4, struct.pack("<I", 0x7FFFFFF0))
    with pytest.raises(SourceError, match="note"):
        ElfSource(path)


def test_mmap_reads_equal_pread(vmcore):
    """/proc/vmcore is read through mmap windows; the bytes must be the same."""
    import random
    with ElfSource(vmcore) as a, ElfSource(vmcore) as b:
        b.mmap_reads = True
        rng = random.Random(3)
        for _ in range(500):
            addr = rng.randrange(0, a.max_pfn * 4096 - 9000)
            n = rng.randrange(1, 9000)
            assert a.read_phys(addr, n, zero_fill=True) == b.read_phys(addr, n, zero_fill=True)
        assert b.mmap_reads


def test_map_windows_stay_in_budget_and_copy_the_same_bytes(vmcore, source_pages, tmp_path, monkeypatch):
    """Each job maps 1-4 MiB of the source at once, all jobs together at most MAPPED_BUDGET.
    The size chosen is the one the core maps (a one-page window maps once per page read;
    a job's run covers 2 MiB of pfns, which 1 MiB windows map twice and 4 MiB windows
    once), and every size gives the same dump
    bytes as pread, at a sparse level and a dense one; libkdumpfile reads the 4 MiB dump
    page for page."""
    import fastdump
    from fastdump import _core
    from fastdump.copy import engine
    from fastdump.copy.plan import cycles, runs_bitmap
    from support import digests, kdumpfile_digests
    for njobs in range(1, 70):
        w = engine.map_window_bytes(njobs)
        assert w & (w - 1) == 0 and engine.MAP_WINDOW_RANGE[0] <= w <= engine.MAP_WINDOW_RANGE[1]
        assert w * njobs <= engine.MAPPED_BUDGET or w == engine.MAP_WINDOW_RANGE[0]
    assert engine.map_window_bytes(4) == 4 << 20
    for bad in (0, 4095, 3 << 20):
        with pytest.raises(ValueError, match="power of two"):
            _core.Source(-1, array.array("Q"), 4096, False, bad)

    def mapped(window):
        """(mmap calls, pages read from the file: holes are not) of one copy of every
        stored page with that window."""
        monkeypatch.setattr(engine, "MAP_WINDOW_RANGE", (window, window))
        with ElfSource(vmcore) as s:
            eng = engine.CopyEngine(s, codec="lz4", threads=2, use_mmap=True)
            assert eng.core_source.map_window == window
            read = [0]
            for c0, c1 in cycles(s.max_pfn):
                bm = runs_bitmap(s.stored_runs(), c0, c1)
                eng.run(eng.windows(bm, c0, c1 - c0), lambda job: read.__setitem__(0, read[0] + job.bytes_read // 4096),
                        zero_check=True)
            return sum(j.windows_mapped for j in eng.jobs), read[0]
    maps = {w: mapped(w) for w in (4096, 1 << 20, 4 << 20)}
    assert maps[4096][0] >= maps[4096][1] > 10000
    assert maps[1 << 20][0] >= maps[1 << 20][1] // 256 and 0 < maps[4 << 20][0] < 0.6 * maps[1 << 20][0], maps

    for level in (1, 31):
        outs = {}
        for name, rng, mm in (("pread", None, False), ("page", (4096, 4096), True),
                              ("4MiB", (4 << 20, 4 << 20), True)):
            if rng:
                monkeypatch.setattr(engine, "MAP_WINDOW_RANGE", rng)
            out = tmp_path / f"{name}-{level}"
            fastdump.dump(vmcore, str(out), level=level, compress="zstd", threads=2, use_mmap=mm)
            outs[name] = out.read_bytes()
        assert outs["page"] == outs["pread"] == outs["4MiB"], level
    _, got = kdumpfile_digests(str(tmp_path / "4MiB-1"), max(source_pages) + 1)
    assert got == digests(source_pages)


@pytest.mark.parametrize("cmd", [["-d", "1", "FIFO", "OUT"], ["info", "FIFO"], ["verify", "FIFO"],
                                 ["verify", "DUMP", "FIFO"], ["convert", "FIFO", "OUT"], ["dmesg", "FIFO"],
                                 ["-d", "1", "-i", "FIFO", "VMCORE", "OUT"],
                                 ["-d", "1", "--iomem", "FIFO", "VMCORE", "OUT"]])
def test_a_fifo_with_no_writer_is_refused_not_waited_on(vmcore, tmp_path, cmd):
    from support import fastdump_cli
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    names = {"FIFO": str(fifo), "OUT": str(tmp_path / "out"), "VMCORE": vmcore, "DUMP": vmcore}
    r = fastdump_cli(*[names.get(a, a) for a in cmd], check=False, timeout=60)
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr
    assert "FIFO" in r.stderr.splitlines()[-1]
    assert sorted(os.listdir(tmp_path)) == ["fifo"]


def test_api_refuses_a_fifo(tmp_path):
    import fastdump
    from support import time_limit
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with time_limit(30, "fastdump.open on a FIFO"), pytest.raises(fastdump.FastdumpError, match="FIFO"):
        fastdump.open(fifo)


# -- work is bounded by what the file really holds (class 6) ------------------------------

def _vmcore_from(path, loads, page_bytes):
    """An x86_64 vmcore with the given ``(paddr, filesz, memsz)`` PT_LOADs; page i of the
    file data is ``page_bytes(i)``."""
    vmci = b"OSRELEASE=6.1.0-bounds\nPAGESIZE=4096\nCRASHTIME=1764000000\n"
    notes = elf.build_note(b"VMCOREINFO", 0, vmci)
    hdr = elf.header_size(elf.ELFCLASS64, 1 + len(loads))
    off = -(-(hdr + len(notes)) // 4096) * 4096
    phdrs = [elf.Phdr(elf.PT_NOTE, 0, hdr, 0, 0, len(notes), len(notes), 0)]
    for paddr, filesz, memsz in loads:
        phdrs.append(elf.Phdr(elf.PT_LOAD, 7, off, 0xFFFF888000000000 + paddr, paddr, filesz, memsz, 0))
        off += filesz
    with open(path, "wb") as f:
        f.write(elf.build_header(elf.ELFCLASS64, elf.EM_X86_64, phdrs) + notes)
        f.seek(phdrs[1].offset)
        for i in range(sum(fs for _, fs, _ in loads) // 4096):
            f.write(page_bytes(i))
    return path


def test_a_huge_p_memsz_costs_nothing_before_a_check(tmp_path, monkeypatch):
    """A PT_LOAD that describes petabytes it does not store: no spill file, no pass over
    the described memory; -E writes what is stored, kdump (whose bitmaps span max_pfn) is
    written or refused for room, in seconds either way."""
    import fastdump
    from support import time_limit
    pages = 256
    src = _vmcore_from(str(tmp_path / "vmcore"), [(1 << 20, pages * 4096, (1 << 52) - (2 << 20))],
                       lambda i: bytes([i % 251 + 1]) * 4096)

    def no_spill(*a, **kw):
        raise AssertionError("a bitmap spill file was created for memory the source does not store")
    import tempfile         # plan imports it when it spills
    monkeypatch.setattr(tempfile, "TemporaryFile", no_spill)
    with time_limit(60, "-E of a huge p_memsz"):
        stats = fastdump.dump(src, str(tmp_path / "elf"), level=1, format="elf")
    assert stats.pages_kept == pages and os.path.getsize(tmp_path / "elf") < (pages + 16) * 4096
    assert elf_pages(str(tmp_path / "elf")) == elf_pages(src)
    # a synthetic kernel's vmcore (classifiable) whose last PT_LOAD describes up to 2^52
    kern = str(tmp_path / "kernel")
    make_vmcore(kern, ram_size=64 * MiB, seed=3)
    with ElfSource(kern) as s:
        phdrs, stored = list(s.header.phdrs), sum(e - a for a, e in s.stored_runs())
        p = phdrs[-1]
        phdrs[-1] = elf.Phdr(p.type, p.flags, p.offset, p.vaddr, p.paddr, p.filesz, (1 << 52) - p.paddr, p.align)
        header = elf.build_header(s.elfclass, s.machine, phdrs)
    with open(kern, "r+b") as f:
        f.write(header)
    from fastdump.kernel.estimate import estimate
    with time_limit(60, "estimate of a huge p_memsz"), ElfSource(kern) as s:
        assert s.max_pfn == 1 << 40
        assert estimate(s, warn=lambda t: None)["present"] == stored
    with time_limit(60, "kdump of a huge p_memsz"):
        try:
            fastdump.dump(src, str(tmp_path / "kdump"), level=1, compress="zstd")
        except fastdump.errors.NoSpaceError as e:   # even "write what fits" needs the bitmaps
            assert "needs about" in str(e) or "header and bitmaps alone need" in str(e)
            assert not [p for p in os.listdir(tmp_path) if p.startswith("kdump") and "dmesg" not in p]
    with time_limit(60, "--split of a huge p_memsz"):
        parts = [str(tmp_path / "part1"), str(tmp_path / "part2")]
        try:
            fastdump.dump(src, split=parts, level=1, compress="zstd")
        except fastdump.errors.NoSpaceError as e:
            assert "header and bitmaps alone need" in str(e)
            assert not [p for p in os.listdir(tmp_path) if p.startswith("part")]


@pytest.fixture(scope="module")
def many_loads(tmp_path_factory):
    """30000 one-page PT_LOADs, every other page: fragmented bitmaps and many extents."""
    n = 30000
    path = str(tmp_path_factory.mktemp("many") / "vmcore")
    return _vmcore_from(path, [((1 << 20) + 2 * i * 4096, 4096, 4096) for i in range(n)],
                        lambda i: (b"%08d" % i) * 512 if i % 3 else bytes(4096))


def test_many_pt_loads_and_fragmented_bitmaps_stay_linear(many_loads, tmp_path):
    """-E, kdump, verify against the source and convert all finish in seconds, and the
    pages survive (libkdumpfile and pyelftools read them)."""
    from support import digests, fastdump_cli, kdumpfile_digests
    want = elf_pages(many_loads)
    elf_out, kd, conv = (str(tmp_path / n) for n in ("elf", "kdump", "conv"))
    fastdump_cli("-E", "-d", "0", many_loads, elf_out, timeout=90)
    assert elf_pages(elf_out) == want
    fastdump_cli("-z", "-d", "0", many_loads, kd, timeout=90)
    r = fastdump_cli("verify", kd, many_loads, timeout=90)
    assert r.stdout.startswith("OK")
    fastdump_cli("convert", "-d", "0", "--compress", "zlib", kd, conv, timeout=90)
    assert kdumpfile_digests(conv, max(want) + 1)[1] == digests(want)


def test_convert_is_bounded_by_the_descriptors_the_file_holds(tmp_path):
    """A kdump header and 2nd bitmap claiming 2^27 dumped pages in a 16 MiB file: convert
    works on what the file can hold (its descriptors), in seconds, leaving no temp file."""
    from fastdump.formats import kdump
    from support import fastdump_cli
    ps, nblocks = 4096, 4096
    bitmap_len = nblocks * ps // 2
    max_mapnr = bitmap_len * 8
    hdr = kdump.HEADER.pack(kdump.SIGNATURE, 6, *([b"x"] * 6), 0, 0, 0, ps, 1, nblocks, max_mapnr & 0xFFFFFFFF,
                            0, 0, 0, 0, 1)
    sub = kdump.SUB_HEADER.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, max_mapnr)
    src = tmp_path / "hostile"
    src.write_bytes(hdr.ljust(ps, b"\0") + sub.ljust(ps, b"\0") + b"\xff" * (2 * bitmap_len) + bytes(ps))
    r = fastdump_cli("convert", str(src), str(tmp_path / "out"), check=False, timeout=60)
    assert "Traceback" not in r.stderr and r.returncode in (1, 3)    # 3: the pages it could not hold, said
    assert sorted(os.listdir(tmp_path)) == (["hostile", "out"] if r.returncode == 3 else ["hostile"])


def test_default_read_mode(vmcore, generated_kernel):
    """mmap windows by default for /proc/vmcore and saved vmcores (regular files), for the
    pages and the struct pages alike; pread for anything else (a device such as
    /dev/oldmem) and with --non-mmap."""
    from fastdump.copy.engine import CopyEngine, _mappable
    from fastdump.kernel.judge import make_judge
    from fastdump.testing.generator import MiB
    with ElfSource(vmcore) as s:
        assert CopyEngine(s).use_mmap is True
        assert CopyEngine(s, use_mmap=False).use_mmap is False
    r, w = os.pipe()
    try:
        assert _mappable(type("Device", (), {"fd": r})()) is False
        assert _mappable(type("ProcVmcore", (), {"fd": r, "is_proc_vmcore": lambda self: True})()) is True
    finally:
        os.close(r)
        os.close(w)
    path, layout = generated_kernel(64 * MiB, encoding="6.1", seed=3)
    with ElfSource(path) as s:
        judge = make_judge(s, 31, warn=lambda m: None)
        assert judge._scanner().use_mmap is True
        judge = make_judge(s, 31, warn=lambda m: None, use_mmap=False)
        assert judge._scanner().use_mmap is False


def test_two_pt_loads_that_disagree_about_memory_are_warned_about(tmp_path, vmcore):
    """Two PT_LOADs storing one physical range with different bytes: a corrupt vmcore whose
    pages cannot all be right.  The dump is made (the longer segment's bytes, as before)
    with a warning naming them; the kernel-text copy that repeats RAM says nothing."""
    import subprocess
    import sys
    with ElfSource(vmcore) as src:
        assert src.warnings == []
    data = bytearray(open(vmcore, "rb").read())
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    loads = [phoff + i * phentsize for i in range(phnum) if struct.unpack_from("<I", data, phoff + i * phentsize)[0]
             == elf.PT_LOAD]
    low_ram, ram = loads[1], loads[2]                     # [0] is the kernel-text copy
    struct.pack_into("<Q", data, low_ram + 24, struct.unpack_from("<Q", data, ram + 24)[0])
    bad = tmp_path / "overlapping"
    bad.write_bytes(data)
    with ElfSource(str(bad)) as src:
        assert src.warnings == ["PT_LOAD 1 and PT_LOAD 2 hold different bytes for physical 0x100000: "
                                "the dump takes the longer segment's"]
    r = subprocess.run([sys.executable, "-m", "fastdump", "-l", "-d", "1", str(bad), str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and f"fastdump: warning: {src.warnings[0]}" in r.stderr.splitlines(), r.stderr
