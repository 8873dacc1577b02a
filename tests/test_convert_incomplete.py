"""Dumps that did not arrive whole: ``convert`` of an input flagged incomplete gives an
output flagged incomplete (status 3, the pages the input never got counted, every page
that did arrive readable as in the source), a flattened stream cut short is named as the
user gave it, an output never replaces its input, and ``info`` says when a kdump file
is cut short.  Every dump is read by libkdumpfile or pyelftools, not by fastdump."""

import json
import os
import struct
import subprocess
import sys

import pytest

from support import digests, elf_pages, fastdump_cli, kdumpfile_digests

FASTDUMP = [sys.executable, "-m", "fastdump"]


@pytest.fixture(scope="module")
def streams(vmcore, tmp_path_factory):
    """Flattened streams of the vmcore: kdump (-l -d 31) and ELF (-E -d 1)."""
    where = tmp_path_factory.mktemp("streams")
    out = {}
    for name, args in (("kdump", ["-l", "-d", "31"]), ("elf", ["-E", "-d", "1"])):
        path = where / f"{name}.flat"
        with open(path, "wb") as f:
            subprocess.run(FASTDUMP + ["-F", *args, vmcore], stdout=f, stderr=subprocess.DEVNULL, check=True)
        out[name] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def kdump_file(vmcore, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("kdump") / "d.kdump")
    fastdump_cli("-c", "-d", "1", vmcore, path)
    return path


def _rebuild(data, dest):
    """``fastdump -R`` of a stream's bytes: the dump it left (``.incomplete`` when cut)."""
    r = subprocess.run(FASTDUMP + ["-R", str(dest)], input=data, capture_output=True)
    return str(dest) if r.returncode == 0 else f"{dest}.incomplete"


def _without_final_header(data, n):
    """The stream without its last ``n`` records (the header that says complete last),
    ended well."""
    at, records = 4096, []
    while True:
        offset, size = struct.unpack_from(">qq", data, at)
        if offset == -1:
            break
        records.append((at, offset))
        at += 16 + size
    assert records[-1][1] == 0
    return data[:records[-n][0]] + struct.pack(">qq", -1, -1)


def _flagged_incomplete(path):
    r = fastdump_cli("info", "--json", path)
    return json.loads(r.stdout)["incomplete"]


def _converted_but_partial(r, given, out):
    """Status 3, the warning naming the input, one error line saying both are flagged."""
    assert r.returncode == 3, r.stdout + r.stderr
    errors = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("fastdump: error: converted but partial:"), r.stderr
    assert f"{given} is flagged incomplete" in errors[0] and f"{out} is flagged incomplete" in errors[0]
    assert ".fastdump-tmp" not in r.stdout + r.stderr


def test_convert_of_a_kdump_dump_cut_short_is_flagged_incomplete(streams, source_pages, tmp_path):
    """The stream's rebuild keeps a third of the pages and no longer claims the rest: the
    warning counts those (it said 0), the output is flagged incomplete (it passed verify)
    and holds exactly the pages that arrived, as in the source."""
    data = streams["kdump"]
    whole = _rebuild(data, tmp_path / "whole")
    cut = _rebuild(data[:len(data) * 2 // 5], tmp_path / "cut")
    assert cut.endswith(".incomplete")
    max_pfn = max(source_pages) + 1
    _, all_pages = kdumpfile_digests(whole, max_pfn)
    _, arrived = kdumpfile_digests(cut, max_pfn, cut=True)
    assert 0 < len(arrived) < len(all_pages) // 2
    out, stats = str(tmp_path / "conv"), tmp_path / "stats.json"
    r = fastdump_cli("convert", "-c", "--stats-json", str(stats), cut, out, check=False)
    _converted_but_partial(r, cut, out)
    missing = len(all_pages) - len(arrived)
    assert f"warning: {cut} is marked incomplete; {missing} pages it never got stay missing" in r.stdout
    _, got = kdumpfile_digests(out, max_pfn, cut=True)
    want = digests(source_pages)
    assert got == arrived and all(want[p] == h for p, h in got.items())
    assert _flagged_incomplete(out)
    assert fastdump_cli("verify", out, check=False).returncode != 0
    written = json.loads(stats.read_text())
    assert written["incomplete"] is True and any("marked incomplete" in w for w in written["warnings"])


def test_convert_of_an_elf_dump_cut_short_is_flagged_incomplete(streams, source_pages, tmp_path):
    """The ELF stream's rebuild names pages past the end of its file: they are counted,
    and the output, flagged incomplete, stores every other page as in the source."""
    data = streams["elf"]
    whole = _rebuild(data, tmp_path / "whole.elf")
    cut = _rebuild(data[:len(data) // 3], tmp_path / "cut.elf")
    assert cut.endswith(".incomplete")
    out = str(tmp_path / "conv.elf")
    r = fastdump_cli("convert", "-E", cut, out, check=False)
    _converted_but_partial(r, cut, out)
    stored, all_pages = elf_pages(out), elf_pages(whole)
    assert 0 < len(stored) < len(all_pages)
    missing = len(all_pages) - len(stored)
    assert f"warning: {cut} is marked incomplete; {missing} pages it never got stay missing" in r.stdout
    assert all(stored[p] == source_pages[p] for p in stored)
    _, got = kdumpfile_digests(out, max(source_pages) + 1, cut=True)
    assert {p: got[p] for p in stored} == digests(stored)
    assert _flagged_incomplete(out)
    assert fastdump_cli("verify", out, check=False).returncode != 0


@pytest.mark.parametrize("kind", ["kdump", "elf"])
def test_convert_of_a_stream_that_lost_its_final_header_is_flagged_incomplete(streams, source_pages,
                                                                              tmp_path, kind):
    """All pages came, but the header that says complete did not (nor, for ELF, the
    checksum trailer sent before it, which covers that header): the output is flagged
    incomplete too, and the warning claims no count the input does not give (an ELF
    dump's headers do not say how many pages it never got)."""
    stream = tmp_path / "cut.flat"
    stream.write_bytes(_without_final_header(streams[kind], 2 if kind == "elf" else 1))
    out = str(tmp_path / "conv")
    r = fastdump_cli("convert", *(["-E"] if kind == "elf" else []), str(stream), out, check=False)
    _converted_but_partial(r, stream, out)
    said = {"kdump": "0 pages it never got stay missing",
            "elf": "the pages it never got stay missing (its headers do not say how many)"}[kind]
    assert f"warning: {stream} is marked incomplete; {said}" in r.stdout
    assert _flagged_incomplete(out)
    _, got = kdumpfile_digests(out, max(source_pages) + 1, cut=True)
    want = digests(source_pages)
    assert len(got) > 1000 and all(want[p] == got[p] for p in got if p in want)


def test_convert_of_a_stream_cut_short_names_the_stream(streams, tmp_path):
    """The error named the rebuild in a temporary directory already removed."""
    stream = tmp_path / "in" / "trunc.flat"
    stream.parent.mkdir()
    stream.write_bytes(streams["kdump"][:len(streams["kdump"]) // 3])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    r = fastdump_cli("convert", "-z", str(stream), str(out_dir / "conv"), check=False)
    errors = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(errors) == 1, r.stderr
    assert errors[0].startswith(f"fastdump: error: {stream}: flattened stream ended inside record"), errors
    assert ".fastdump-tmp" not in errors[0] and "rearranged" not in errors[0]
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("kind", ["kdump", "flattened"])
def test_convert_never_writes_over_its_input(streams, kdump_file, tmp_path, kind):
    """Even with -f: a kdump or flattened input is unpacked to a temporary file first, and
    the output was checked against that, not against the input it then replaced."""
    path = tmp_path / "dump"
    path.write_bytes(open(kdump_file, "rb").read() if kind == "kdump" else streams["kdump"])
    before = path.read_bytes()
    r = fastdump_cli("convert", "-f", str(path), str(path), check=False)
    assert r.returncode == 2 and "is the input" in r.stderr, r.stdout + r.stderr
    assert path.read_bytes() == before


def test_info_says_a_kdump_file_is_cut_short(kdump_file, tmp_path):
    """Cut in the page data (info printed the counts as if whole, exit 0) or in the
    descriptor table (info failed): TRUNCATED beside the format line, ``truncated`` in
    --json, the status that of an incomplete dump (0)."""
    data = open(kdump_file, "rb").read()
    # disk_dump_header: block_size, sub_hdr_size and bitmap_blocks at bytes 428..440
    block, sub_hdr, bitmap_blocks = struct.unpack_from("<iiI", data, 428)
    table = (1 + sub_hdr + bitmap_blocks) * block
    for size, what in ((len(data) // 2, "its page data ends at"), (table + 24 * 100 + 7, "its page descriptors end at")):
        path = tmp_path / "cut.kdump"
        path.write_bytes(data[:size])
        r = fastdump_cli("info", str(path), check=False)
        assert r.returncode == 0, r.stderr
        first = r.stdout.splitlines()[0]
        assert f"(TRUNCATED: the file ends at {size} bytes, {what} " in first, first
        j = json.loads(fastdump_cli("info", "--json", str(path)).stdout)
        assert j["truncated"] is True and j["file_size"] == size < j["expected_size"]
    assert "TRUNCATED" not in fastdump_cli("info", kdump_file).stdout
    assert json.loads(fastdump_cli("info", "--json", kdump_file).stdout)["truncated"] is False
