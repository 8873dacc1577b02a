"""A source page the hardware cannot deliver (EIO) costs that page, not the dump."""

import json
import os
import subprocess
import sys

import pytest

import fastdump
from fastdump.errors import EXIT_PARTIAL
from fastdump.commands.info import summary
from fastdump.sources.vmcore import ElfSource
from fastdump.commands.verify import verify
from support import digests, elf_pages, elf_segments, gdb_read, kdumpfile_digests, need_tool

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    cc = need_tool("gcc")
    so = str(tmp_path_factory.mktemp("shim") / "eio_shim.so")
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", so, os.path.join(HERE, "faults", "eio_shim.c"), "-ldl"],
                   check=True)
    return so


BAD_PFNS = {0x4000 + i for i in range(3)}             # three pages inside the big RAM segment


def _partial_dump(vmcore, shim, tmp_path, fmt, level=1):
    """A dump of ``vmcore`` whose source pages BAD_PFNS give EIO: (path, stats)."""
    out = str(tmp_path / "vmcore")
    r = _eio_run(vmcore, shim, ["-E" if fmt == "elf" else "-z", "-d", str(level), "--stats-json",
                                str(tmp_path / "s.json"), vmcore, out], text=True)
    assert r.returncode == EXIT_PARTIAL, r.stderr
    assert "partial" in r.stderr and "Traceback" not in r.stderr
    return out, json.load(open(tmp_path / "s.json"))


@pytest.mark.parametrize("fmt", ["kdump", "elf"])
def test_eio_pages_are_recorded_and_the_rest_is_dumped(vmcore, source_pages, shim, tmp_path, fmt):
    out, stats = _partial_dump(vmcore, shim, tmp_path, fmt)
    bad_pfns = BAD_PFNS
    assert stats["pages_unreadable"] == 3 and set(stats["unreadable_pfns"]) == bad_pfns
    assert os.path.exists(out)                               # complete apart from those pages
    if fmt == "kdump":
        fmt_name, got = kdumpfile_digests(out, max(source_pages) + 1)
        want = digests(source_pages)
        assert set(want) - set(got) == bad_pfns             # only the bad pages are missing
        assert all(got[p] == want[p] for p in got)
        with fastdump.open(out) as d:     # in memory (1st bitmap), not dumped (2nd bitmap)
            first = d.bitmap1()
            assert all(first[p >> 3] >> (p & 7) & 1 and not d.is_dumped(p) for p in bad_pfns)
    else:
        # not stored as zeros: no PT_LOAD, not even its p_memsz (which crash and gdb
        # read as zeros), covers them, so every reader sees them as missing
        _, phdrs = elf_segments(out)
        loads = [(h["p_paddr"], h["p_paddr"] + h["p_memsz"]) for h in phdrs if h["p_type"] == "PT_LOAD"]
        assert not any(a < (p + 1) * 4096 and b > p * 4096 for a, b in loads for p in bad_pfns)
        got = elf_pages(out)                                 # pyelftools
        assert not bad_pfns & set(got)
        assert all(got[p] == source_pages[p] for p in got)
        _, seen = kdumpfile_digests(out, max(source_pages) + 1)
        assert all(seen[p] == h for p, h in digests(got).items())
        # libkdumpfile reads the page right before any PT_LOAD as zeros (the source too)
        edge = {a // 4096 - 1 for a, b in loads}
        assert bad_pfns - edge and not (bad_pfns - edge) & set(seen)
        with ElfSource(vmcore) as s:        # gdb, at the kernel's virtual address
            ph = next(ph for ph in s.loads if ph.paddr <= min(bad_pfns) * 4096 < ph.paddr + ph.filesz)
        vaddr = lambda pfn: ph.vaddr + pfn * 4096 - ph.paddr  # noqa: E731
        assert gdb_read(out, vaddr(max(bad_pfns) + 1), 16) == source_pages[max(bad_pfns) + 1][:16]
        with pytest.raises(AssertionError, match="could not read"):
            gdb_read(out, vaddr(min(bad_pfns)), 16)
        r = subprocess.run([need_tool("crash"), "--osrelease", out], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.strip(), r.stderr     # crash takes the headers


def _segment_boundaries(vmcore):
    """File offsets where one PT_LOAD's page-aligned chunk ends and the next begins."""
    with ElfSource(vmcore) as s:
        return [((off + end - start) + 4095) & ~4095 for start, end, off in s.extents]


def test_mmap_windows_never_cross_a_segment(vmcore, source_pages, shim, tmp_path):
    """/proc/vmcore refuses mappings across two PT_LOADs (seen on real kernels)."""
    log = tmp_path / "mmap.log"
    out = str(tmp_path / "vmcore")
    env = dict(os.environ, LD_PRELOAD=shim, EIO_FILE=os.path.realpath(vmcore), MMAP_LOG=str(log),
               MMAP_BOUNDARIES=",".join(str(b) for b in _segment_boundaries(vmcore)))
    r = subprocess.run([sys.executable, "-m", "fastdump", "-z", "-d", "1", "--mmap", "--threads", "2", vmcore, out],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert not log.exists() or log.read_text() == ""
    _, got = kdumpfile_digests(out, max(source_pages) + 1)
    assert got == digests(source_pages)


def test_mmap_failure_falls_back_to_pread(vmcore, source_pages, shim, tmp_path):
    out = str(tmp_path / "vmcore")
    env = dict(os.environ, LD_PRELOAD=shim, EIO_FILE=os.path.realpath(vmcore), MMAP_FAIL_ALL="1")
    r = subprocess.run([sys.executable, "-m", "fastdump", "-z", "-d", "1", "--mmap", vmcore, out],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    _, got = kdumpfile_digests(out, max(source_pages) + 1)
    assert got == digests(source_pages)


SIGBUS_PROBE = r"""
import json, os, sys
import fastdump._pagescan  # noqa: F401  (its SIGBUS guard, installed last, passes the engine's faults on)
from fastdump.copy.engine import CopyEngine
from fastdump.copy.plan import cycles, runs_bitmap
from fastdump.sources.vmcore import ElfSource

path = sys.argv[1]
src = ElfSource(path)
engine = CopyEngine(src, codec="zstd", threads=2, use_mmap=True)
os.truncate(path, os.path.getsize(path) // 2)   # the engine's mappings now reach past the end
seen = {"pages": 0, "unreadable": [], "ok": 0}

def commit(job):
    seen["pages"] += job.n_pages
    if job.unreadable_pages:
        seen["unreadable"] += job.unreadable_pfns()

for c0, c1 in cycles(src.max_pfn):
    bm = runs_bitmap(src.stored_runs(), c0, c1)
    engine.run(engine.windows(bm, c0, c1 - c0), commit, zero_check=True)
seen["sigbus_windows"] = sum(j.sigbus_windows for j in engine.jobs)
print(json.dumps(seen))
"""


def test_sigbus_in_a_mapping_costs_pages_not_the_process(vmcore, tmp_path):
    """A saved vmcore that shrinks while it is mapped (or an NFS error) raises SIGBUS
    on the access: the window is redone with pread and the lost pages are recorded."""
    path = str(tmp_path / "shrinking")
    with open(vmcore, "rb") as f, open(path, "wb") as g:
        g.write(f.read())
    size = os.path.getsize(path)
    r = subprocess.run([sys.executable, "-c", SIGBUS_PROBE, path], capture_output=True, text=True)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    seen = json.loads(r.stdout)
    assert seen["sigbus_windows"] > 0, seen           # the mapping really faulted
    with ElfSource(vmcore) as s:
        lost = {p for a, b in s.stored_runs() for p in range(a, b)
                if _file_offset(s, p) + 4096 > size // 2}
    assert lost and set(seen["unreadable"]) == lost


def _file_offset(src, pfn):
    for start, end, off in src.extents:
        if start <= pfn * 4096 < end:
            return off + pfn * 4096 - start
    raise KeyError(pfn)


@pytest.mark.parametrize("fmt", ["kdump", "elf"])
def test_verify_and_info_count_a_partial_dump(vmcore, source_pages, shim, tmp_path, fmt):
    """A complete but partial dump (exit 3) verifies, against the source too, and both
    ``verify`` and ``info`` say how many pages were left out; info counts zero pages."""
    out, stats = _partial_dump(vmcore, shim, tmp_path, fmt)
    for src in (None, vmcore):
        r = verify(out, src)
        assert r["ok"] and r["pages_unreadable"] == len(BAD_PFNS), r["verdict"]
        assert r["checksums"] is True     # kdump: the 2nd bitmap's checksum follows its change
        assert f"{len(BAD_PFNS)} pages left out as unreadable by the writer" in r["verdict"]
        if src:
            assert r["pages_compared"] == r["pages_checked"]
    pages = summary(out)["pages"]
    assert pages["unreadable"] == len(BAD_PFNS), pages
    if fmt == "kdump":
        zero = sum(1 for p, data in source_pages.items() if p not in BAD_PFNS and not any(data))
        assert pages["zero"] == zero > 0 and pages["dumped"] == len(source_pages) - len(BAD_PFNS), pages


def test_verify_counts_a_split_parts_own_unreadable_pages_not_the_other_parts(vmcore, shim, tmp_path):
    """A split part's descriptor table has room for every part's pages: its unreadable
    count is the slots left over beyond the other parts' pages, in the part that lost them."""
    with ElfSource(vmcore) as s:
        bad_off = _file_offset(s, min(BAD_PFNS))
    parts = [str(tmp_path / "p1"), str(tmp_path / "p2")]
    env = dict(os.environ, LD_PRELOAD=shim, EIO_FILE=os.path.realpath(vmcore), EIO_START=str(bad_off),
               EIO_LEN=str(len(BAD_PFNS) * 4096))
    r = subprocess.run([sys.executable, "-m", "fastdump", "-z", "-d", "1", "--non-mmap", "--split",
                        "--splitblock-size", "16384", vmcore, *parts], capture_output=True, text=True, env=env)
    assert r.returncode == EXIT_PARTIAL, r.stderr
    lost = {}
    for part in parts:
        res = verify(part)
        assert res["ok"], res["verdict"]
        with fastdump.open(part) as d:
            assert d.split
            holds_bad = d.start_pfn <= min(BAD_PFNS) < d.end_pfn
        lost[part] = res["pages_unreadable"]
        assert lost[part] == (len(BAD_PFNS) if holds_bad else 0), (part, res["verdict"])
    assert sum(lost.values()) == len(BAD_PFNS)


def _eio_run(vmcore, shim, args, **kw):
    """fastdump ``args`` with BAD_PFNS of ``vmcore`` giving EIO (pread: --non-mmap)."""
    with ElfSource(vmcore) as s:
        start, end, off = s.extents[1]
    env = dict(os.environ, LD_PRELOAD=shim, EIO_FILE=os.path.realpath(vmcore),
               EIO_START=str(off + (min(BAD_PFNS) * 4096 - start)), EIO_LEN=str(len(BAD_PFNS) * 4096))
    return subprocess.run([sys.executable, "-m", "fastdump", "--non-mmap", *args], env=env, capture_output=True, **kw)


def test_a_join_of_parts_one_of_which_could_not_read_pages(vmcore, source_pages, shim, tmp_path):
    """--split where a middle part met unreadable pages (exit 3): that part takes them out of
    its own 2nd bitmap only.  --reassemble must count that part's descriptors by its own
    bits: with the first part's, every page after the unreadable ones landed on the wrong
    pfn (verify: 7,000 pages differ from the source; exit 0)."""
    parts = [str(tmp_path / f"p{i}") for i in range(3)]
    r = _eio_run(vmcore, shim, ["-q", "-c", "-d", "1", "--splitblock-size", "8192", "--split", vmcore, *parts])
    assert r.returncode == EXIT_PARTIAL, r.stderr
    joined = str(tmp_path / "joined")
    r = subprocess.run([sys.executable, "-m", "fastdump", "--reassemble", *parts, joined], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    got = verify(joined, vmcore)
    assert got["ok"] and got["pages_unreadable"] == len(BAD_PFNS), got["verdict"]
    _, theirs = kdumpfile_digests(joined, max(source_pages) + 1)
    want = digests(source_pages)
    assert set(want) - set(theirs) == BAD_PFNS and all(theirs[p] == want[p] for p in theirs)


def test_a_flattened_stream_with_unreadable_pages_rebuilds(vmcore, source_pages, shim, tmp_path):
    """-F with pages it could not read sends 2nd-bitmap bytes again (those pages taken out):
    fastdump -R took that for a rewrite past the headers and refused its own stream."""
    stream = _eio_run(vmcore, shim, ["-q", "-F", "-c", "-d", "1", vmcore]).stdout
    out = str(tmp_path / "rebuilt")
    r = subprocess.run([sys.executable, "-m", "fastdump", "-R", out], input=stream, capture_output=True)
    assert r.returncode == 0, r.stderr
    got = verify(out, vmcore)
    assert got["ok"] and got["pages_unreadable"] == len(BAD_PFNS), got["verdict"]
    _, theirs = kdumpfile_digests(out, max(source_pages) + 1)
    assert set(digests(source_pages)) - set(theirs) == BAD_PFNS
