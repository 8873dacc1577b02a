"""fastdump.kernel.dmesg: the kernel log from synthetic printk buffers (5.10+ lockless ring,
3.5-5.9 structured log, <=3.4 plain ring), from ELF and kdump-compressed dumps,
from corrupt buffers, and from real Debian vmcores when the e2e cache holds some.

The synthetic buffers are checked three ways: against the layout's own truth,
against literal lines, and against makedumpfile --dump-dmesg reading the same
vmcore (an implementation that shares no code with ours)."""

import glob
import json
import os
import random
import re
import struct
import subprocess

import pytest

import fastdump
from fastdump.commands import dmesg as dmesg_command
from fastdump.kernel import dmesg
from fastdump.errors import FastdumpError
from fastdump.sources.vmcore import ElfSource
from fastdump.testing.generator import MiB, SyntheticVmcore, VmcoreSpec
from fastdump.testing.kernel_layout import KernelLayout
from fastdump.testing.printk_layout import (COMMITTED, FINALIZED, ID_MASK, REUSABLE, Msg, PrintkLayout,
                                            default_messages, reference_line)
from fastdump.kernel.vmcoreinfo import VmcoreInfo

from support import need_tool, time_limit

MAKEDUMPFILE = "makedumpfile"


def deadline(seconds=20):
    return time_limit(seconds, "extract_dmesg")


def make(tmp_path, name="vmcore", base=None, ram=64 * MiB, osrelease=None, **kw):
    layout = PrintkLayout(base, **kw)
    path = str(tmp_path / name)
    spec = VmcoreSpec(ram_size=ram, sparse=base is not None)
    if osrelease:
        spec.osrelease = osrelease
    SyntheticVmcore(spec, layout=layout).write(path)
    return path, layout


def extract(path, **kw):
    with deadline():
        return dmesg.extract_dmesg(path, **kw)


def makedumpfile_dmesg(path, out):
    need_tool(MAKEDUMPFILE)
    if os.path.exists(out):
        os.unlink(out)
    r = subprocess.run([MAKEDUMPFILE, "--dump-dmesg", path, out], capture_output=True, text=True, timeout=600)
    if r.returncode != 0 or not os.path.exists(out):
        return None, (r.stderr or r.stdout).strip()
    with open(out, encoding="latin-1") as f:
        text = f.read()
    # makedumpfile prints bytes >= 0x80 through a signed char: \xffffffc3 for \xc3
    return re.sub(r"\\xffffff([0-9a-f]{2})", r"\\x\1", text), ""


CALLER_COLUMN = re.compile(r"^\[\s*\d+\.\d{6}\] \[\s*[TC]\d+\] ", re.M)


# -- 5.10+ lockless ring ----------------------------------------------------------------
LOCKLESS_CASES = {
    "6.1-image": dict(variant="6.1"),
    "5.10-directmap": dict(variant="5.10", dynamic=True),
    "data-bound": dict(size_bits=10),           # the text ring wraps before the descriptor ring
    "7.x-exact-fit": dict(variant="7.x"),
    "big": dict(count_bits=12, size_bits=17, messages=default_messages(5000, seed=4)),
}


@pytest.mark.parametrize("case", sorted(LOCKLESS_CASES))
def test_lockless_known_messages(tmp_path, case):
    path, layout = make(tmp_path, kind="lockless", **LOCKLESS_CASES[case])
    got = extract(path)
    assert got == layout.expected_dmesg()
    assert got.endswith("] Kernel panic - not syncing: sysrq triggered crash\n")
    assert "half-written record" not in got          # reserved at the crash: skipped
    assert "stale stale" not in got                  # overwritten text never leaks
    recs = layout.records
    # the buffer really wrapped: ids crossed 2**62, text blocks wrapped, old records were dropped
    assert recs[0].id <= ID_MASK < recs[-1].id
    assert any(r.begin & 1 == 0 and r.begin >> layout.size_bits != (r.next - 1) >> layout.size_bits
               for r in recs)
    assert not recs[0].live
    assert recs[-2].state == COMMITTED and recs[-3].state == FINALIZED
    if case == "data-bound":   # reusable descriptors between tail and head are skipped
        window = [r for r in recs if r.id >= recs[-1].id - (1 << layout.count_bits) + 1]
        assert any(r.state == REUSABLE for r in window)


def test_lockless_literal_lines(tmp_path):
    msgs = [Msg(b"Linux version 6.1.0-synthetic", 0, 0),
            Msg(b"first line\nsecond line", 1_500_000_000, 77),
            Msg(b"", 1_600_000_000, 5),                                 # empty: data-less, no line
            Msg(b"CPU features:", 2_000_001_999, 0x80000003, cont=(b" fpu", b" avx2")),
            Msg(b"bytes \x01\x7f\xc3\xa9\ttab", 12_345_678_901_234, 3),
            Msg(b"sysrq: Trigger a crash", 123_456_000_000_000, 4242)]
    path, _ = make(tmp_path, kind="lockless", messages=msgs, in_flight=False)
    assert extract(path) == (
        "[    0.000000] Linux version 6.1.0-synthetic\n"
        "[    1.500000] first line\n"
        "               second line\n"
        "[    2.000001] CPU features: fpu avx2\n"
        "[12345.678901] bytes \\x01\\x7f\\xc3\\xa9\ttab\n"
        "[123456.000000] sysrq: Trigger a crash\n")
    assert extract(path, caller=True) == (
        "[    0.000000] [      T0] Linux version 6.1.0-synthetic\n"
        "[    1.500000] [     T77] first line\n"
        "                          second line\n"
        "[    2.000001] [      C3] CPU features: fpu avx2\n"
        "[12345.678901] [      T3] bytes \\x01\\x7f\\xc3\\xa9\ttab\n"
        "[123456.000000] [   T4242] sysrq: Trigger a crash\n")


@pytest.mark.parametrize("variant", ["6.1", "5.10"])
def test_lockless_caller_and_partial(tmp_path, variant):
    path, layout = make(tmp_path, kind="lockless", variant=variant, clear_at=110)
    assert extract(path, caller=True) == layout.expected_dmesg(caller=True)
    part = extract(path, partial=True)
    assert part == layout.expected_dmesg(partial=True)
    assert 0 < len(part) < len(extract(path))


@pytest.mark.parametrize("variant", ["6.1", "7.x"])
def test_lockless_block_that_fits_the_ring_end(tmp_path, variant):
    """64-byte blocks in a 1 KiB ring: every 16th block reaches the end exactly.  Older
    kernels move it to offset 0, newer ones (is_blk_wrapped) leave it in place."""
    msgs = [Msg(b"exact %02d " % i + b"." * 47, 1000 * i, 1) for i in range(40)]
    path, layout = make(tmp_path, kind="lockless", variant=variant, messages=msgs, size_bits=10,
                        count_bits=6, in_flight=False)
    at_end = [r for r in layout.records if (r.next & 1023) == 0 and r.next - r.begin == 64]
    assert bool(at_end) == (variant == "7.x")
    got = extract(path)
    assert got == layout.expected_dmesg()
    assert len(got.splitlines()) == (16 if variant == "7.x" else 15)   # 6.1 wastes the ring's tail
    if variant == "6.1":   # makedumpfile agrees (it misreads the 7.x exact-fit block)
        theirs, why = makedumpfile_dmesg(path, str(tmp_path / "mk.txt"))
        assert theirs is not None, why
        assert extract(path, caller=bool(CALLER_COLUMN.search(theirs))) == theirs


def test_lockless_partial_after_everything_cleared(tmp_path):
    path, _ = make(tmp_path, kind="lockless", clear_at=10**6)
    assert extract(path, partial=True) == ""


# -- 3.5 .. 5.9 structured log -------------------------------------------------------------
STRUCTURED_CASES = {
    "5.4-image": dict(variant="5.4"),
    "3.5-log-directmap": dict(variant="3.5", dynamic=True),
    "caller": dict(printk_caller=True),
    "big": dict(log_buf_len=1 << 17, messages=default_messages(3000, seed=9)),
}


@pytest.mark.parametrize("case", sorted(STRUCTURED_CASES))
def test_structured_known_messages(tmp_path, case):
    path, layout = make(tmp_path, kind="structured", **STRUCTURED_CASES[case])
    got = extract(path)
    assert got == layout.expected_dmesg()
    assert got.endswith("] Kernel panic - not syncing: sysrq triggered crash\n")
    assert not layout.records[0].live                        # the log wrapped
    assert layout.next_idx < layout.first_idx or case == "big"
    assert "stale stale" not in got and "SUBSYSTEM=" not in got   # dictionaries are not text
    if case == "caller":
        assert extract(path, caller=True) == layout.expected_dmesg(caller=True)
        assert re.search(r"^\[\s*\d+\.\d{6}\] \[\s*C\d+\] odd bytes", extract(path, caller=True), re.M)
    else:   # no caller_id field: the column is never invented
        assert extract(path, caller=True) == got


def test_structured_empty_record_and_partial(tmp_path):
    msgs = [Msg(b"one", 1000, 1), Msg(b"", 2000, 1), Msg(b"three\nmore", 3_000_000, 1, dict=b"K=V"),
            Msg(b"four", 4_000_000, 1)]
    path, layout = make(tmp_path, kind="structured", messages=msgs, clear_at=2)
    assert extract(path) == ("[    0.000001] one\n[    0.000002] \n[    0.003000] three\n"
                             "               more\n[    0.004000] four\n")
    assert extract(path, partial=True) == layout.expected_dmesg(partial=True) == \
        "[    0.003000] three\n               more\n[    0.004000] four\n"


def test_plain_ring(tmp_path):
    path, layout = make(tmp_path, kind="plain", log_buf_len=2048, osrelease="3.2.0-4-amd64")
    got = extract(path)
    assert got == layout.expected_dmesg()
    assert "<6>[" in got and got.endswith("sysrq triggered crash\n") and len(got) == 2048
    theirs, why = makedumpfile_dmesg(path, str(tmp_path / "mk.txt"))   # needs OSRELEASE < 3.5
    assert theirs is not None, why
    assert got == theirs


# -- composition and dump formats -------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lockless", "structured"])
@pytest.mark.parametrize("encoding", ["6.12", "5.10"])
def test_kernel_layout_base_and_kdump(tmp_path, kind, encoding):
    """On top of a full synthetic kernel; ELF, kdump-compressed -d 1 and -d 31."""
    path, layout = make(tmp_path, base=KernelLayout(encoding=encoding), kind=kind, ram=128 * MiB,
                        dynamic=(encoding == "5.10"))
    # the base layout's keys survive
    keys = ElfSource(path).vmcoreinfo
    assert keys.has("SYMBOL(mem_section)") and keys.has("SYMBOL(log_buf)" if kind == "structured" else "SYMBOL(prb)")
    expected = layout.expected_dmesg()
    assert extract(path) == expected
    for level in (1, 31):
        out = str(tmp_path / f"dump-d{level}")
        fastdump.dump(path, out, level=level, compress="zstd", progress="quiet")
        with fastdump.open(out) as d:
            assert d.format != "elf"
            with deadline():
                assert dmesg.extract_dmesg(d) == expected
    assert layout.dropped_pfns(31)                   # truth queries reach the base layout


def test_default_base_kdump_and_elf_output(tmp_path):
    path, layout = make(tmp_path, kind="lockless")
    out = str(tmp_path / "dump")
    fastdump.dump(path, out, level=1, compress="zstd", progress="quiet")
    assert extract(out) == layout.expected_dmesg()
    elf_out = str(tmp_path / "dump.elf")
    fastdump.dump(path, elf_out, level=1, format="elf", progress="quiet")
    assert extract(elf_out) == layout.expected_dmesg()


@pytest.mark.parametrize("kind,kw", [("lockless", {}), ("lockless", dict(variant="5.10", dynamic=True,
                                                                          size_bits=10)),
                                     ("structured", {}), ("structured", dict(variant="3.5", dynamic=True))])
def test_makedumpfile_reads_the_same(tmp_path, kind, kw):
    """makedumpfile --dump-dmesg on the same synthetic vmcore prints what we print."""
    path, layout = make(tmp_path, kind=kind, **kw)
    theirs, why = makedumpfile_dmesg(path, str(tmp_path / "mk.txt"))
    assert theirs is not None, f"makedumpfile --dump-dmesg failed: {why}"
    caller = bool(CALLER_COLUMN.search(theirs))        # makedumpfile >= 1.7.5 prints the caller
    assert extract(path, caller=caller) == theirs


# -- corrupt buffers ------------------------------------------------------------------------
class Patched:
    """A source whose physical memory (and VMCOREINFO) can be patched in memory."""

    def __init__(self, src, patches=(), vmcoreinfo=None):
        self.src, self.loads, self.page_size = src, src.loads, src.page_size
        self.vmcoreinfo = vmcoreinfo or src.vmcoreinfo
        self.patches = list(patches)

    def read_phys(self, addr, size, **kw):
        data = bytearray(self.src.read_phys(addr, size, **kw))
        for pa, b in self.patches:
            lo, hi = max(pa, addr), min(pa + len(b), addr + size)
            if lo < hi:
                data[lo - addr:hi - addr] = b[lo - pa:hi - pa]
        return bytes(data)


@pytest.fixture(scope="module")
def lockless_core(tmp_path_factory):
    path, layout = make(tmp_path_factory.mktemp("lockless"), kind="lockless", size_bits=10)
    src = ElfSource(path)
    yield src, layout
    src.close()


@pytest.fixture(scope="module")
def structured_core(tmp_path_factory):
    path, layout = make(tmp_path_factory.mktemp("structured"), kind="structured")
    src = ElfSource(path)
    yield src, layout
    src.close()


def run(source, **kw):
    problems = []
    with deadline():
        text = dmesg.extract_dmesg(source, problems=problems, **kw)
    return text, problems


def one_line_error(source, match):
    with deadline(), pytest.raises(FastdumpError) as ei:
        dmesg.extract_dmesg(source)
    msg = str(ei.value)
    assert "\n" not in msg and re.search(match, msg), msg
    return msg


def desc_pa(layout, rid):
    pa, _ = layout.buffers["descs"]
    return pa + (rid & ((1 << layout.count_bits) - 1)) * 24


def info_pa(layout, rid):
    pa, _ = layout.buffers["infos"]
    return pa + (rid & ((1 << layout.count_bits) - 1)) * 88


def test_lockless_bad_records_are_skipped(lockless_core):
    src, layout = lockless_core
    live = [r for r in layout.records if r.live and r.state in (COMMITTED, FINALIZED) and r.msg.full_text]
    victims = live[1:6]
    patches = [
        # committed, right id, lpos beyond the ring
        (desc_pa(layout, victims[0].id) + 8, struct.pack("<QQ", 0x10, 0x10 + (1 << 40))),
        # misaligned lpos
        (desc_pa(layout, victims[1].id) + 8, struct.pack("<QQ", victims[1].begin + 3 & ((1 << 64) - 1),
                                                         victims[1].next & ((1 << 64) - 1))),
        # the block's id does not match the descriptor (text overwritten)
        (layout.buffers["data"][0] + (victims[2].begin & 1023)
         if victims[2].begin >> 10 == (victims[2].next - 1) >> 10 else layout.buffers["data"][0],
         struct.pack("<Q", 0x1234)),
        # garbage state word
        (desc_pa(layout, victims[3].id), struct.pack("<Q", 0xFFFFFFFFFFFFFFFF)),
    ]
    # text_len beyond the block: clamped, no over-read
    patches.append((info_pa(layout, victims[4].id) + 16, struct.pack("<H", 0xFFFF)))
    text, problems = run(Patched(src, patches))
    lines = text.splitlines()
    expected = layout.expected_dmesg().splitlines()
    assert len(lines) >= len(expected) - 4
    for v in victims[:4]:
        assert not any(v.msg.text[:20].decode("latin-1") in l for l in lines) or \
            sum(v.msg.text[:20].decode("latin-1") in l for l in expected) > 1
    assert "skipped" in " ".join(problems)
    assert lines[-1].endswith("Kernel panic - not syncing: sysrq triggered crash")


def test_lockless_tail_far_behind_head(lockless_core):
    src, layout = lockless_core
    rb_pa = layout.buffers["rb"][0]
    text, problems = run(Patched(src, [(rb_pa + 32, struct.pack("<Q", (layout.head_id - 10**9) & ID_MASK))]))
    assert text == layout.expected_dmesg()
    assert "behind head" in problems[0]


@pytest.mark.parametrize("offset,value,match", [
    (0, struct.pack("<I", 63), "count_bits 63 is out of range"),
    (48, struct.pack("<I", 0xFFFFFFFF), "size_bits .* out of range"),
    (24, struct.pack("<Q", 0x2345), "no readable record"),                       # head id garbage
    (8, struct.pack("<Q", 0xFFFFC90000000000), "descriptor array at 0xffffc90000000000 is not in this dump"),
])
def test_lockless_unusable_ring_is_one_line_error(lockless_core, offset, value, match):
    src, layout = lockless_core
    one_line_error(Patched(src, [(layout.buffers["rb"][0] + offset, value)]), match)


def test_lockless_null_prb_falls_back_to_static(lockless_core):
    src, layout = lockless_core
    assert run(Patched(src, [(layout.vars_pa, bytes(8))]))[0] == layout.expected_dmesg()


def test_missing_keys_are_one_line_errors(lockless_core):
    src, _ = lockless_core
    text = src.vmcoreinfo.text
    one_line_error(Patched(src, vmcoreinfo=VmcoreInfo(text.replace("SIZE(prb_desc)=24\n", ""))),
                   r"VMCOREINFO has no SIZE\(prb_desc\)")
    one_line_error(Patched(src, vmcoreinfo=VmcoreInfo(text.replace("SYMBOL(prb)", "SYMBOL(xprb)"))),
                   r"neither SYMBOL\(prb\) nor SYMBOL\(log_buf\)")
    one_line_error(Patched(src, vmcoreinfo=VmcoreInfo(text.replace("SIZE(printk_info)=88",
                                                                   "SIZE(printk_info)=99999"))),
                   "out of range")


def _log_buf(layout):
    return layout.buffers["log_buf"][0]


def _is_subsequence(small, big):
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def test_structured_corruption_stops_with_partial_output(structured_core):
    src, layout = structured_core
    live = [r for r in layout.records if r.live]
    expected = layout.expected_dmesg().splitlines(True)
    k = len(live) // 2
    for bad_len in (0, 3, 0xFFF0):
        text, problems = run(Patched(src, [(_log_buf(layout) + live[k].idx + 8, struct.pack("<H", bad_len))]))
        got = text.splitlines(True)
        # everything before the bad record, nothing invented after it
        assert _is_subsequence(got, expected) and len(got) >= k, bad_len
        assert reference_line(live[k - 1].msg.ts_nsec, live[k - 1].msg.full_text) in text
        if bad_len:
            assert got == expected[:len(got)] and "corrupt" in problems[-1]
        # len 0 reads as the end-of-buffer marker: the walk wraps early and skips to log_buf[0]


def test_structured_unreachable_next_idx_terminates(structured_core):
    src, layout = structured_core
    live = [r for r in layout.records if r.live]
    text, problems = run(Patched(src, [(layout.vars_pa + 0x94, struct.pack("<I", live[3].idx + 2))]))
    assert text.startswith(layout.expected_dmesg()[:200]) and problems


@pytest.mark.parametrize("offset,value,match", [
    (0x88, struct.pack("<I", 0xFFFFFFFF), "log_buf_len .* out of range"),
    (0x90, struct.pack("<I", 1 << 20), "outside log_buf_len"),
    (0x80, struct.pack("<Q", 0xFFFFC90000000000), "not in this dump|not mapped"),
])
def test_structured_unusable_is_one_line_error(structured_core, offset, value, match):
    src, layout = structured_core
    one_line_error(Patched(src, [(layout.vars_pa + offset, value)]), match)


@pytest.mark.parametrize("core", ["lockless_core", "structured_core"])
def test_fuzzed_buffers_never_hang_or_crash(request, core):
    src, layout = request.getfixturevalue(core)
    rng = random.Random(5)
    regions = [(pa, len(buf)) for pa, buf in layout.buffers.values()] + [(layout.vars_pa, 0xB0)]
    outcomes = {"text": 0, "error": 0}
    for _ in range(150):
        patches = []
        for _ in range(rng.choice([1, 3, 20, 200])):
            pa, n = rng.choice(regions)
            at = pa + rng.randrange(n)
            patches.append((at, rng.randbytes(rng.choice([1, 2, 4, 8]))))
        try:
            text, _ = run(Patched(src, patches))
            assert isinstance(text, str)
            outcomes["text"] += 1
        except FastdumpError as e:
            assert "\n" not in str(e)
            outcomes["error"] += 1
    assert outcomes["text"] > 0


def test_tamper_hook_reaches_the_file(tmp_path):
    def tamper(layout):     # smash every descriptor's state word: nothing is readable
        _, descs = layout.buffers["descs"]
        for o in range(0, len(descs), 24):
            descs[o:o + 8] = b"\xee" * 8
    path, _ = make(tmp_path, kind="lockless", tamper=tamper)
    out = str(tmp_path / "dump")
    fastdump.dump(path, out, level=1, compress="zstd", progress="quiet")
    for f in (path, out):
        one_line_error(f, "no readable record")


def test_no_printk_keys(vmcore):
    one_line_error(vmcore, r"neither SYMBOL\(prb\) nor SYMBOL\(log_buf\)")


# -- the subcommand ------------------------------------------------------------------------
def test_main_writes_file_and_stdout(tmp_path, capsys):
    path, layout = make(tmp_path, kind="lockless")
    out = str(tmp_path / "dmesg.txt")
    assert dmesg_command.main([path, out]) == 0
    with open(out) as f:
        assert f.read() == layout.expected_dmesg()
    assert os.stat(out).st_mode & 0o777 == 0o600
    with pytest.raises(FastdumpError, match="exists"):
        dmesg_command.main([path, out])
    assert dmesg_command.main([path, out, "-f", "--caller"]) == 0
    with open(out) as f:
        assert f.read() == layout.expected_dmesg(caller=True)
    capsys.readouterr()
    assert dmesg_command.main([path]) == 0
    assert capsys.readouterr().out == layout.expected_dmesg()


def test_main_plain_ring_bytes_are_exact(tmp_path, capfdbinary):
    path, layout = make(tmp_path, kind="plain", log_buf_len=2048, osrelease="3.2.0-4-amd64")
    out = str(tmp_path / "dmesg.txt")
    assert dmesg_command.main([path, out]) == 0
    with open(out, "rb") as f:
        raw = f.read()
    assert b"\xc3\xa9" in raw and raw == layout.expected_dmesg().encode("latin-1")
    capfdbinary.readouterr()
    assert dmesg_command.main([path]) == 0
    assert capfdbinary.readouterr().out == raw


def test_cli_subcommand_if_wired(tmp_path):
    from fastdump.commands import cli
    if "dmesg" not in getattr(cli, "SUBCOMMANDS", {}):
        pytest.skip("the CLI does not route `fastdump dmesg` yet")
    path, layout = make(tmp_path, kind="structured")
    r = subprocess.run(["python3", "-m", "fastdump", "dmesg", path], capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0 and r.stdout == layout.expected_dmesg()
    r = subprocess.run(["python3", "-m", "fastdump", "dmesg", str(tmp_path / "missing")], capture_output=True,
                       text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
    if "--dump-dmesg" in getattr(cli, "MODES", {}):
        out = str(tmp_path / "mk-style.txt")
        r = subprocess.run(["python3", "-m", "fastdump", "--dump-dmesg", path, out], capture_output=True,
                           text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert r.returncode == 0, r.stderr
        with open(out) as f:
            assert f.read() == layout.expected_dmesg()


# -- real vmcores: the e2e fixtures (built on demand, never skipped) --------------------------
from tests.e2e import fixtures as e2e_fixtures  # noqa: E402


@pytest.fixture(scope="module", params=e2e_fixtures.KEYS)
def real_dir(request):
    try:
        return e2e_fixtures.fixture_dir(request.param)
    except RuntimeError as e:
        pytest.fail(str(e))


def test_real_vmcore(tmp_path, real_dir):
    path = os.path.join(real_dir, "vmcore.raw")
    text = extract(path)
    assert "Linux version" in text.splitlines()[0]
    assert "sysrq: Trigger a crash" in text
    with open(os.path.join(real_dir, "manifest.json")) as f:
        release = json.load(f).get("kernel", {}).get("release")
    if release:
        assert release in text.splitlines()[0]
    theirs, why = makedumpfile_dmesg(path, str(tmp_path / "mk.txt"))
    # makedumpfile 1.7.2 cannot read every kernel's log; where it can, the text must be the same
    if theirs is not None:
        assert extract(path, caller=bool(CALLER_COLUMN.search(theirs))) == theirs


def test_real_kdump_dump(real_dir):
    dumps = sorted(glob.glob(os.path.join(real_dir, "fastdump-*.kdump")))
    assert dumps, f"no fastdump-written dumps in {real_dir}"
    raw = extract(os.path.join(real_dir, "vmcore.raw"))
    for path in dumps:
        text = extract(path)
        assert "sysrq: Trigger a crash" in text
        assert text == raw
