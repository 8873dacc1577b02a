"""Filtered ELF output (-E), checked with pyelftools, gdb and libkdumpfile."""

import os
import stat
from types import SimpleNamespace

import pytest

import fastdump
from fastdump.formats import elf
from fastdump.errors import UsageError
from fastdump.formats import elfdump
from fastdump.testing.generator import MiB, make_vmcore
from support import digests, elf_pages, elf_segments, gdb_read, kdumpfile_digests

ZERO = bytes(4096)


@pytest.fixture(scope="module")
def long_zero_vmcore(generated_vmcore):
    """Long runs of one class, so zero runs of >= 256 pages occur."""
    return generated_vmcore(ram_size=64 * MiB, seed=3, run_pages=700, mix={"zero": 50, "text": 30, "random": 20})


def _zero_runs(pages):
    runs, start, prev = [], None, None
    for pfn in sorted(pages):
        if pages[pfn] == ZERO:
            if start is None or pfn != prev + 1:
                if start is not None:
                    runs.append((start, prev + 1))
                start = pfn
            prev = pfn
    if start is not None:
        runs.append((start, prev + 1))
    return runs


@pytest.mark.parametrize("level", [0, 1])
def test_elf_dump_pages(long_zero_vmcore, tmp_path, level):
    src = elf_pages(long_zero_vmcore)
    out = str(tmp_path / "e.elf")
    stats = fastdump.dump(long_zero_vmcore, out, level=level, format="elf")
    got = elf_pages(out)
    for pfn, data in got.items():
        assert data == src[pfn], pfn                          # every stored page identical
    missing = set(src) - set(got)
    assert all(src[p] == ZERO for p in missing)               # only zero pages are left out
    zeros = {p for p in src if src[p] == ZERO}
    if level == 0:
        assert not missing
    else:
        assert missing and stats.pages_zero == len(zeros)
        # a zero run of 256+ pages is never stored; shorter ones inside data may be
        for a, b in _zero_runs(src):
            if b - a >= 256:
                assert not any(p in got for p in range(a + 1, b - 1)), (a, b)
    hdr, segs = elf_segments(out)
    assert hdr["e_type"] == "ET_CORE" and segs[0]["p_type"] == "PT_NOTE"
    assert all(s["p_align"] == 0 and s["p_filesz"] <= s["p_memsz"] for s in segs[1:])
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


def test_segments_cover_what_the_source_describes(long_zero_vmcore, tmp_path):
    """Each input PT_LOAD becomes pieces whose p_memsz add up to it, in order."""
    out = str(tmp_path / "e.elf")
    fastdump.dump(long_zero_vmcore, out, level=1, format="elf")
    _, src_segs = elf_segments(long_zero_vmcore)
    _, out_segs = elf_segments(out)
    src_loads = [s for s in src_segs if s["p_type"] == "PT_LOAD"]
    out_loads = [s for s in out_segs if s["p_type"] == "PT_LOAD"]
    assert len(out_loads) > len(src_loads)
    i = 0
    for s in src_loads:
        addr = s["p_paddr"]
        while addr < s["p_paddr"] + s["p_memsz"]:
            o = out_loads[i]
            assert o["p_paddr"] == addr and o["p_vaddr"] == s["p_vaddr"] + (addr - s["p_paddr"])
            addr += o["p_memsz"]
            i += 1
        assert addr == s["p_paddr"] + s["p_memsz"]
    assert i == len(out_loads)


def test_gdb_and_libkdumpfile_read_it(vmcore, source_pages, tmp_path):
    out = str(tmp_path / "e.elf")
    fastdump.dump(vmcore, out, level=1, format="elf")
    stored = elf_pages(out)
    fmt, got = kdumpfile_digests(out, max(source_pages) + 1)
    assert fmt == "elf"
    want = digests(stored)
    assert {p: got[p] for p in want} == want
    # libkdumpfile 0.5.1 also returns zeros for the page just below a PT_LOAD's start
    # (it does the same on the source vmcore); nothing else may appear
    _, segs = elf_segments(out)
    starts = {s["p_paddr"] // 4096 for s in segs if s["p_type"] == "PT_LOAD"}
    extra = set(got) - set(want)
    assert all(got[p] == digests({0: ZERO})[0] and p + 1 in starts for p in extra), sorted(extra)[:10]
    pfn = next(p for p in sorted(stored) if p > 300 and stored[p] != ZERO)
    va = 0xFFFF888000000000 + pfn * 4096
    assert gdb_read(out, va + 16, 64) == source_pages[pfn][16:80]


def test_elf32_output(vmcore, source_pages, tmp_path):
    out = str(tmp_path / "e32.elf")
    fastdump.dump(vmcore, out, level=1, format="elf", elf_class=32)
    hdr, segs = elf_segments(out)
    assert hdr["e_ident"]["EI_CLASS"] == "ELFCLASS32"
    got = elf_pages(out)
    assert got and all(got[p] == source_pages[p] for p in got)


def test_elf32_refuses_memory_above_4g(tmp_path):
    src = str(tmp_path / "big")
    make_vmcore(src, ram_size=3 * 1024 * MiB + 64 * MiB, sparse=True, mix={"zero": 1})
    with pytest.raises(UsageError, match="ELF32"):
        fastdump.dump(src, str(tmp_path / "o"), level=1, format="elf", elf_class=32)
    assert not os.path.exists(str(tmp_path / "o"))


def test_pn_xnum_round_trip():
    phdrs = [elf.Phdr(elf.PT_NOTE, 0, 4096, 0, 0, 10, 10, 0)]
    phdrs += [elf.Phdr(elf.PT_LOAD, 7, 0, i * 4096, i * 4096, 0, 4096, 0) for i in range(70000)]
    blob = elf.build_header(elf.ELFCLASS64, elf.EM_X86_64, phdrs)
    hdr = elf.parse_header(lambda off, size: blob[off:off + size])
    assert len(hdr.phdrs) == 70001 and hdr.phdrs[-1].paddr == 69999 * 4096
    assert blob[56:58] == b"\xff\xff"


class _Sink:
    def __init__(self):
        self.buf, self.size = bytearray(), 0

    def pwrite(self, data, offset):
        data = bytes(data)
        self.buf[len(self.buf):] = bytes(max(0, offset + len(data) - len(self.buf)))
        self.buf[offset:offset + len(data)] = data
        self.size = max(self.size, offset + len(data))


def test_more_unreadable_runs_than_spare_header_slots(tmp_path, monkeypatch):
    """Scattered EIO pages, more runs than reserved program-header slots: the closest
    runs are merged, the header still ends before the notes, and no PT_LOAD (not even
    its p_memsz) covers an unreadable page; every page outside the runs is readable."""
    monkeypatch.setattr(elfdump, "RESERVED_PHDRS", 8)
    npages, bad = 64, [3, 5, 9, 20, 21, 30, 31, 32, 50, 61]         # 7 runs: 3 must be merged
    load = elf.Phdr(elf.PT_LOAD, 7, 0, 0xFFFF888000100000, 0x100000, npages * 4096, npages * 4096, 0)
    seg = SimpleNamespace(phdrs=lambda: [load])
    src = SimpleNamespace(note_bytes=elf.build_note(b"CORE", 1, bytes(8)), machine=elf.EM_X86_64,
                          page_size=4096, elfclass=elf.ELFCLASS64)
    sink = _Sink()
    w = elfdump.ElfDumpWriter(sink, src, [seg])
    w.write_prologue()
    first = 0x100
    pages = b"".join(bytes([p + 1]) * 4096 for p in range(npages))
    for lo in range(0, npages, 16):      # four windows of 16 pages
        w.commit_window(w.loads[0], SimpleNamespace(
            n_pages=16, window=(first + lo, first + lo + 16),
            pages_view=lambda lo=lo: pages[lo * 4096:(lo + 16) * 4096],
            unreadable_pages=1, unreadable_pfns=lambda lo=lo: [first + p for p in bad if lo <= p < lo + 16]))
    w.finish()
    path = tmp_path / "core"
    path.write_bytes(bytes(sink.buf))
    _, phdrs = elf_segments(str(path))
    loads = [(h["p_paddr"], h["p_paddr"] + h["p_memsz"]) for h in phdrs if h["p_type"] == "PT_LOAD"]
    assert len(phdrs) <= 1 + 1 + 8
    with fastdump.open(str(path)) as d:
        assert phdrs[0]["p_offset"] >= 64 + 56 * len(phdrs)      # the note is after the table
        left_out = {a + k for a, b in d.unreadable_runs for k in range(b - a)}
    assert {first + p for p in bad} <= left_out
    assert not any(a < (p + 1) * 4096 and b > p * 4096 for a, b in loads for p in left_out)
    got = elf_pages(str(path))
    assert set(got) == {first + p for p in range(npages)} - left_out
    assert all(got[p] == pages[(p - first) * 4096:(p - first + 1) * 4096] for p in got)
