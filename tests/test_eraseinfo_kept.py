"""An erased (``--config``) kdump dump that is not finished keeps its eraseinfo record: a
run interrupted, a flattened stream cut short, and ``convert`` of such an input.  The kdump
writer named the record only in complete dumps (after the last page, as makedumpfile
does), so an unfinished one said nothing was erased and its 'X' and zero bytes read as
memory; it now goes before the page data.  The record is read from the raw sub header and
through makedumpfile's re-filtering, the pages by libkdumpfile: no fastdump reader judges."""

import os
import struct
import subprocess
import sys

import pytest
from support import kdumpfile_digests, makedumpfile
from test_erase import CONFIG, MiB, EraseVmcore, Secrets

from fastdump.formats import kdump

FASTDUMP = [sys.executable, "-m", "fastdump"]
MAX_PFN = 64 * MiB // 4096


def raw_eraseinfo(path):
    """The eraseinfo a kdump file's sub header names (makedumpfile's struct layout: block_size
    at byte 432 of the header, offset/size_eraseinfo at 72/80 of the sub header), or b""."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"KDUMP   "
    block = struct.unpack_from("<i", data, 428)[0]
    off, size = struct.unpack_from("<QQ", data, block + 64)
    return data[off:off + size] if off and size else b""


@pytest.fixture(scope="module")
def erased(tmp_path_factory):
    """An erased vmcore's streams: ELF cut to a third and rebuilt (``.incomplete``; the
    ERASEINFO note is in its first records), kdump without the final header record (the
    eraseinfo and sub header arrived, the header saying complete did not)."""
    d = tmp_path_factory.mktemp("erased")
    vmcore, conf = str(d / "vmcore"), d / "erase.conf"
    EraseVmcore(Secrets(), ram_size=64 * MiB).write(vmcore)
    conf.write_text(CONFIG)
    out = {}
    for fmt in ("elf", "kdump"):
        codec = ["-c"] if fmt == "kdump" else []       # zlib: this makedumpfile reads no zstd
        r = subprocess.run(FASTDUMP + ["-F", "--format", fmt, *codec, "-d", "1", "--config", str(conf), vmcore],
                           capture_output=True, check=True)
        out[fmt] = r.stdout
    cut = d / "elf.cut"
    r = subprocess.run(FASTDUMP + ["-R", str(cut)], input=out["elf"][:len(out["elf"]) // 3], capture_output=True)
    assert r.returncode == 1 and (d / "elf.cut.incomplete").exists(), r.stderr
    data, at, records = out["kdump"], 4096, []
    while True:               # the flattened stream's records; the last one is the final header
        offset, size = struct.unpack_from(">qq", data, at)
        if offset == -1:
            break
        records.append(at)
        at += 16 + size
    stream = d / "kdump.flat"
    stream.write_bytes(data[:records[-1]] + struct.pack(">qq", -1, -1))
    whole = str(d / "whole")
    subprocess.run(FASTDUMP + ["-R", whole], input=data, check=True, capture_output=True)
    return {"elf": str(d / "elf.cut.incomplete"), "kdump": str(stream), "whole": whole,
            "record": raw_eraseinfo(whole)}


@pytest.mark.parametrize("kind", ["elf", "kdump"])
def test_convert_of_an_unfinished_erased_dump_keeps_the_eraseinfo(erased, tmp_path, kind):
    record = erased["record"]
    assert record.startswith(b"erase secret_buf size 100\n") and record.endswith(b"erase lonely nullify\n")
    given, out = erased[kind], str(tmp_path / "out")
    r = subprocess.run(FASTDUMP + ["convert", "-c", "-d", "1", given, out], capture_output=True, text=True)
    assert r.returncode == 3 and "marked incomplete" in r.stdout, r.stdout + r.stderr
    assert raw_eraseinfo(out) == record
    again = str(tmp_path / "again")          # makedumpfile finds it and carries it on
    makedumpfile("-c", "-d", "1", out, again)
    assert raw_eraseinfo(again) == record
    _, got = kdumpfile_digests(out, MAX_PFN, cut=True)     # the erased pages as the input has them
    _, want = kdumpfile_digests(erased["whole"], MAX_PFN)
    assert len(got) > 1000 and all(want[p] == h for p, h in got.items())
    assert kind == "elf" or got == want


def test_an_interrupted_erased_dump_keeps_the_eraseinfo(tmp_path, monkeypatch):
    """A ``--config`` dump stopped part way (SIGTERM, Ctrl-C: the dump is finished as
    incomplete) still names its eraseinfo, after the last page data it holds; before, only
    a complete dump did, and the erased bytes of an unfinished one read as memory."""
    import fastdump
    from fastdump.errors import Interrupted
    from fastdump.formats import kdump
    vmcore, conf = str(tmp_path / "vmcore"), tmp_path / "erase.conf"
    EraseVmcore(Secrets(), ram_size=64 * MiB).write(vmcore)
    conf.write_text(CONFIG)
    whole = str(tmp_path / "whole")
    fastdump.dump(vmcore, whole, level=1, compress="zlib", erase_config=str(conf), threads=1)
    commit, calls = kdump.KdumpWriter.commit, []

    def stop_after_three(writer, job):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(job)
        commit(writer, job)
    monkeypatch.setattr(kdump.KdumpWriter, "commit", stop_after_three)
    out = str(tmp_path / "cut")
    with pytest.raises(Interrupted):
        fastdump.dump(vmcore, out, level=1, compress="zlib", erase_config=str(conf), threads=1)
    cut = out + ".incomplete"
    assert raw_eraseinfo(cut) == raw_eraseinfo(whole) != b""     # (makedumpfile refuses a flagged input)
    _, got = kdumpfile_digests(cut, MAX_PFN, cut=True)
    _, want = kdumpfile_digests(whole, MAX_PFN)
    assert len(got) > 100 and all(want[p] == h for p, h in got.items())


def test_a_cut_erased_stream_keeps_the_eraseinfo(tmp_path):
    """A flattened kdump stream of a --config dump cut right after its first page record
    (a dead ssh link, a full raw device): rebuilt, it is flagged incomplete and names the
    eraseinfo, which the stream carries before any page."""
    vmcore, conf = str(tmp_path / "vmcore"), tmp_path / "erase.conf"
    EraseVmcore(Secrets(), ram_size=64 * MiB).write(vmcore)
    conf.write_text(CONFIG)
    data = subprocess.run(FASTDUMP + ["-F", "-c", "-d", "1", "--config", str(conf), vmcore],
                          capture_output=True, check=True).stdout
    whole = str(tmp_path / "whole")
    subprocess.run(FASTDUMP + ["-R", whole], input=data, check=True, capture_output=True)
    record = raw_eraseinfo(whole)
    at, pages_from = 4096, None
    with open(whole, "rb") as f:
        head = f.read(8192)
    block = struct.unpack_from("<i", head, 428)[0]
    while pages_from is None:            # the first record past the eraseinfo: page data
        offset, size = struct.unpack_from(">qq", data, at)
        if offset > struct.unpack_from("<Q", head, block + 64)[0]:
            pages_from = at
        at += 16 + size
    cut = str(tmp_path / "cut")
    r = subprocess.run(FASTDUMP + ["-R", cut], input=data[:at], capture_output=True)
    assert r.returncode == 1 and os.path.exists(cut + ".incomplete"), r.stderr
    assert raw_eraseinfo(cut + ".incomplete") == record != b""


def test_a_join_of_erased_parts_one_cut_short_keeps_the_eraseinfo(tmp_path):
    """--reassemble of a --config --split dump whose last part was cut (flagged incomplete):
    the joined file is flagged incomplete, exit 3, and still names the eraseinfo (it went
    after the page data of complete joins only)."""
    vmcore, conf = str(tmp_path / "vmcore"), tmp_path / "erase.conf"
    EraseVmcore(Secrets(), ram_size=64 * MiB).write(vmcore)
    conf.write_text(CONFIG)
    parts = [str(tmp_path / f"p{i}") for i in range(2)]
    subprocess.run(FASTDUMP + ["--split", "--splitblock-size", "4096", "-c", "-d", "1", "--config", str(conf),
                               vmcore, *parts], check=True, capture_output=True)
    record = raw_eraseinfo(parts[0])
    with open(parts[1], "rb") as f:
        data = bytearray(f.read())
    del data[len(data) * 2 // 3:]
    data[:kdump.HEADER.size] = kdump.flag_incomplete(bytes(data[:kdump.HEADER.size]))
    with open(parts[1], "wb") as f:
        f.write(data)
    out = str(tmp_path / "joined")
    r = subprocess.run(FASTDUMP + ["--reassemble", *parts, out], capture_output=True, text=True)
    assert r.returncode == 3, r.stderr
    assert raw_eraseinfo(out) == record != b""
    _, got = kdumpfile_digests(out, MAX_PFN, cut=True)
    assert len(got) > 1000


def test_a_direct_io_dump_killed_after_the_eraseinfo_is_named_holds_it(tmp_path):
    """--direct-io buffers small writes until a block fills: the eraseinfo must be on disk
    before the sub header (a small write that goes at once) names it, or a kill right after
    leaves a header pointing past the end of the file (verify and convert: "truncated")."""
    vmcore, conf = str(tmp_path / "vmcore"), tmp_path / "erase.conf"
    EraseVmcore(Secrets(), ram_size=64 * MiB).write(vmcore)
    conf.write_text(CONFIG)
    out = str(tmp_path / "dd")
    kill_after = ("import os, signal, sys\n"
                  "from fastdump.formats import kdump\n"
                  "start = kdump.KdumpWriter.start_pages\n"
                  "def killed(self, *a, **k):\n"
                  "    start(self, *a, **k)\n"
                  "    os.kill(os.getpid(), signal.SIGKILL)\n"
                  "kdump.KdumpWriter.start_pages = killed\n"
                  "sys.argv[0] = 'fastdump'\n"
                  "from fastdump.commands.cli import run\n"
                  "run()\n")
    r = subprocess.run([sys.executable, "-c", kill_after, "-q", "--direct-io", "-c", "-d", "1", "--config", str(conf),
                        vmcore, out], capture_output=True)
    assert r.returncode == -9 and os.path.exists(out + ".incomplete"), r.stderr
    whole = str(tmp_path / "whole")
    subprocess.run(FASTDUMP + ["-q", "-c", "-d", "1", "--config", str(conf), vmcore, whole], check=True)
    assert raw_eraseinfo(out + ".incomplete") == raw_eraseinfo(whole) != b""
