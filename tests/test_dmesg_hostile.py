"""fastdump.kernel.dmesg against a damaged printk header: sizes the kernel log reader
takes from the crashed kernel's memory (the lockless ring's count_bits/size_bits, the
structured and plain log's log_buf_len/log_end) must not make it allocate what they
say.  A capture kernel may have 256 MiB in all: the reader's memory stays bounded, a
log that cannot be read is one line (``fastdump dmesg``: an error; a dump to a
directory or a target with no room: a warning, and the dump is still written).

The CLI runs as a child of a small wrapper process that caps its address space
(RLIMIT_AS, so a regression fails fast instead of taking the test machine's memory)
and reports its peak RSS (RUSAGE_CHILDREN of the wrapper: that child only)."""

import json
import os
import shutil
import struct
import subprocess
import sys

import pytest

import fastdump
from fastdump.kernel import dmesg
from fastdump.kernel.memory import KernelMemory
from fastdump.testing.generator import MiB, SyntheticVmcore, VmcoreSpec
from fastdump.testing.printk_layout import PrintkLayout

from support import SYSTEM_PYTHON, kdumpfile_digests, write_kernel_vmcore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the address space the CLI gets: a reader that allocates what a damaged header says
#: (GiBs) fails; fastdump itself needs far less
ADDRESS_SPACE = 1536 * MiB
#: peak RSS allowed (the project aims at 64 MiB; before the fix: GiBs, or MemoryError)
MAX_RSS = 160 * MiB

WRAPPER = r"""
import json, resource, subprocess, sys
limit = int(sys.argv[1])
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
r = subprocess.run(sys.argv[2:], capture_output=True, preexec_fn=cap, timeout=300)
print(json.dumps({"rc": r.returncode, "stdout": r.stdout.decode("latin-1"),
                  "stderr": r.stderr.decode("utf-8", "replace"),
                  "maxrss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""


def cli(*args):
    """``python3 -m fastdump ARGS`` under ADDRESS_SPACE: (rc, stdout, stderr, peak RSS bytes)."""
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run([sys.executable, "-c", WRAPPER, str(ADDRESS_SPACE), sys.executable, "-m", "fastdump",
                        *args], capture_output=True, text=True, env=env, timeout=400)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    return out["rc"], out["stdout"], out["stderr"], out["maxrss"]


def assert_bounded(stderr, rss):
    assert "internal error" not in stderr and "Traceback" not in stderr, stderr
    assert rss <= MAX_RSS, f"peak RSS {rss >> 20} MiB: {stderr}"


def one_line_error(rc, stderr, rss, match):
    assert_bounded(stderr, rss)
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert rc not in (0, None), stderr
    assert len(lines) == 1 and lines[0].startswith("fastdump: error: ") and match in lines[0], stderr


def poke(path, va, data):
    """Write ``data`` at kernel virtual ``va`` of an ELF vmcore (every PT_LOAD holding it)."""
    with fastdump.open(path) as d:
        pa = KernelMemory(d).translate(va)
        offs = [l.offset + pa - l.paddr for l in d.loads
                if l.paddr <= pa and pa + len(data) <= l.paddr + l.filesz]
    assert offs
    with open(path, "r+b") as f:
        for o in offs:
            f.seek(o)
            f.write(data)


def damage_lockless(path, count_bits=25, size_bits=30):
    """The largest sizes the reader accepts, in the ring header (static and *prb)."""
    with fastdump.open(path) as d:
        vi = d.vmcoreinfo
        rings = {vi.symbols["printk_rb_static"], KernelMemory(d).u64(vi.symbols["prb"])}
    o_cb = vi.offsets["printk_ringbuffer.desc_ring"] + vi.offsets["prb_desc_ring.count_bits"]
    o_sb = vi.offsets["printk_ringbuffer.text_data_ring"] + vi.offsets["prb_data_ring.size_bits"]
    for rb in rings:
        poke(path, rb + o_cb, struct.pack("<I", count_bits))
        poke(path, rb + o_sb, struct.pack("<I", size_bits))


@pytest.fixture(scope="module")
def hostile_kernel(tmp_path_factory):
    """A synthetic 6.12 kernel (dumpable at any level) whose printk ring header says
    32 Mi descriptors and 1 GiB of text."""
    path = str(tmp_path_factory.mktemp("hostile") / "prb.core")
    write_kernel_vmcore(path, 64 * MiB, printk="lockless", encoding="6.12")
    damage_lockless(path)
    return path


def make(path, kind, osrelease=None, **kw):
    layout = PrintkLayout(None, kind=kind, **kw)
    spec = VmcoreSpec(ram_size=64 * MiB, seed=3, mix={"random": 70, "text": 30})
    if osrelease:
        spec.osrelease = osrelease
    SyntheticVmcore(spec, layout=layout).write(str(path))
    return layout


# -- fastdump dmesg / --dump-dmesg ------------------------------------------------------------
@pytest.mark.parametrize("mode", ["dmesg", "--dump-dmesg"])
def test_lockless_huge_ring_header_is_one_line_error_in_bounded_memory(hostile_kernel, tmp_path, mode):
    args = ["dmesg", hostile_kernel] if mode == "dmesg" else ["--dump-dmesg", hostile_kernel,
                                                              str(tmp_path / "out.txt")]
    rc, out, err, rss = cli(*args)
    one_line_error(rc, err, rss, "printk ring buffer")
    assert out == ""


def test_structured_huge_log_buf_len_reads_the_log_in_bounded_memory(tmp_path):
    """log_buf_len damaged to 1 GiB (the most accepted): the records are still where
    log_first_idx/log_next_idx say, so the log is read, with a warning."""
    path = str(tmp_path / "st.core")
    expected = make(path, "structured").expected_dmesg()
    with fastdump.open(path) as d:
        vi = d.vmcoreinfo
    poke(path, vi.symbols["log_buf_len"], struct.pack("<I", 1 << 30))
    rc, out, err, rss = cli("dmesg", path)
    assert_bounded(err, rss)
    assert rc == 0 and out == expected, err
    assert "bytes of log_buf are not in the dump" in err


@pytest.mark.parametrize("log_buf_len", [1 << 30, 1 << 28])
def test_plain_huge_log_buf_len_is_bounded(tmp_path, log_buf_len):
    """A 3.4-and-older ring whose log_buf_len and log_end are damaged: at most
    MAX_LOG_TEXT is ever read, and a ring that is not in the dump is one line."""
    path = str(tmp_path / "pl.core")
    make(path, "plain", log_buf_len=2048, osrelease="3.2.0-4-amd64")
    with fastdump.open(path) as d:
        vi = d.vmcoreinfo
    poke(path, vi.symbols["log_buf_len"], struct.pack("<I", log_buf_len))
    poke(path, vi.symbols["log_end"], struct.pack("<I", 0xFFFFFFF0))
    rc, out, err, rss = cli("dmesg", path)
    one_line_error(rc, err, rss, "not in this dump")


# -- a healthy log is unchanged however it is read ------------------------------------------------
@pytest.mark.parametrize("kind,kw", [("lockless", {"count_bits": 9, "size_bits": 14}),
                                     ("structured", {"log_buf_len": 1 << 14}),
                                     ("plain", {"log_buf_len": 1 << 14, "osrelease": "3.2.0-4-amd64"})])
def test_small_windows_read_the_same_log(tmp_path, monkeypatch, kind, kw):
    """Windows far smaller than the buffers (records straddle window edges)."""
    path = str(tmp_path / "core")
    layout = make(path, kind, **kw)
    whole = dmesg.extract_dmesg(path)
    assert whole == layout.expected_dmesg()
    monkeypatch.setattr(dmesg, "WINDOW", 4096)
    assert dmesg.extract_dmesg(path) == whole


@pytest.mark.parametrize("kind,kw", [("lockless", {}), ("structured", {}),
                                     ("plain", {"log_buf_len": 2048, "osrelease": "3.2.0-4-amd64"})])
def test_text_cap_keeps_the_newest(tmp_path, monkeypatch, kind, kw):
    path = str(tmp_path / "core")
    expected = make(path, kind, **kw).expected_dmesg()
    monkeypatch.setattr(dmesg, "MAX_LOG_TEXT", 1000)
    problems = []
    text = dmesg.extract_dmesg(path, problems=problems)
    assert 0 < len(text) <= 1000 and expected.endswith(text)
    if kind != "plain":     # whole records
        assert text.startswith("[") and expected[:-len(text)].endswith("\n")
    assert any("left out" in p for p in problems), problems


def test_out_of_memory_is_a_dmesg_error(tmp_path, monkeypatch):
    """Whatever is left unbounded (or a machine smaller still): a FastdumpError, which
    every caller (dmesg, a dump's vmcore-dmesg.txt, the no-room path) reports in one line."""
    path = str(tmp_path / "core")
    make(path, "lockless")

    def exhausted(*args, **kw):
        raise MemoryError

    monkeypatch.setattr(dmesg, "format_record", exhausted)
    with pytest.raises(dmesg.DmesgError, match="out of memory") as ei:
        dmesg.extract_dmesg(path)
    assert "\n" not in str(ei.value)


# -- dumps: the log is a warning, the dump is written -------------------------------------------------
def test_directory_target_writes_the_dump_and_warns(hostile_kernel, tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    rc, _, err, rss = cli("-z", "-d", "31", hostile_kernel, str(target) + "/")
    assert_bounded(err, rss)
    assert rc == 0, err
    assert [x for x in err.splitlines() if "vmcore-dmesg.txt" in x] == \
        [x for x in err.splitlines() if x.startswith("fastdump: warning: no vmcore-dmesg.txt: printk ring buffer")]
    assert "no vmcore-dmesg.txt" in err
    (sub,) = os.listdir(target)
    assert sorted(os.listdir(target / sub)) == ["vmcore"]
    dump = str(target / sub / "vmcore")
    with fastdump.open(dump) as d:
        assert not d.incomplete and d.dump_level == 31
        max_pfn = d.max_mapnr
        kept = sum(1 for _ in d.pfns())
    if os.path.exists(SYSTEM_PYTHON):
        fmt, pages = kdumpfile_digests(dump, max_pfn)
        assert len(pages) == kept > 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root")
def test_no_room_saves_what_fits_despite_a_hostile_log(tmp_path):
    """No target has room: the kernel log is tried first (and refused, in one warning),
    then the dump is written as far as it fits, flagged incomplete."""
    path = str(tmp_path / "logged.core")
    make(path, "lockless")
    damage_lockless(path)
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"cannot mount tmpfs: {r.stderr}"
    try:
        rc, _, err, rss = cli("-z", "-d", "1", path, str(mnt) + "/")
        assert_bounded(err, rss)
        assert rc != 0 and "kernel log not saved: printk ring buffer" in err, err
        assert err.splitlines()[-1].startswith("fastdump: error: ") and "incomplete" in err.splitlines()[-1]
        (sub,) = os.listdir(mnt)
        assert os.listdir(mnt / sub) == ["vmcore-incomplete"]
        kept = str(tmp_path / "kept")
        shutil.copyfile(mnt / sub / "vmcore-incomplete", kept)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    with fastdump.open(kept) as d:
        assert d.incomplete and d.dump_level == 31
