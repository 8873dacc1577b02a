"""``fastdump verify``: good dumps pass; each kind of corruption is found."""

import os
import struct
import subprocess
import sys

import pytest

import fastdump
from fastdump import _core
from fastdump.formats import kdump
from fastdump.testing.generator import MiB, make_vmcore
from fastdump.commands.verify import verify
from support import makedumpfile

CODECS = ["zstd", "zlib", "lz4", "lzo", "snappy", "none"]


@pytest.fixture(scope="module")
def small_vmcore(generated_vmcore):
    return generated_vmcore(ram_size=64 * MiB, seed=5)


@pytest.fixture(scope="module")
def dumps(small_vmcore, tmp_path_factory):
    d = tmp_path_factory.mktemp("vdumps")
    out = {}
    for codec in CODECS:
        p = str(d / f"dump.{codec}")
        fastdump.dump(small_vmcore, p, level=1 if codec != "lz4" else 0, compress=codec)
        out[codec] = p
    p = str(d / "dump.elf")
    fastdump.dump(small_vmcore, p, level=1, format="elf")
    out["elf"] = p
    return out


def corrupt(src, tmp_path, edit, name="bad"):
    data = bytearray(open(src, "rb").read())
    edit(data)
    p = str(tmp_path / name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def layout(path):
    """The reader (closed: only its attributes and bitmaps), dumped pfns, descriptors."""
    with fastdump.open(path) as d:
        pfns = list(d.pfns())
        descs = [d.descriptor(p) for p in pfns]
        d.first_bitmap = d.bitmap1()
        return d, pfns, descs


@pytest.mark.parametrize("kind", CODECS + ["elf"])
def test_good_dumps_pass(dumps, small_vmcore, kind):
    r = verify(dumps[kind])
    assert r["ok"] and r["verdict"].startswith("OK: "), r
    assert r["pages_checked"] > 1000 and r["problem_count"] == 0
    r = verify(dumps[kind], small_vmcore, threads=3)
    assert r["ok"] and r["pages_compared"] == r["pages_checked"], r


@pytest.mark.parametrize("flag", ["-c", "-l"])
def test_makedumpfile_dump_passes(small_vmcore, tmp_path, flag):
    """An independent writer's dump: no false alarm from our layout expectations, and
    every page decoded (LZO too, whatever Python modules are installed) and compared."""
    out = str(tmp_path / "mkd")
    makedumpfile(flag, "-d", "1", small_vmcore, out)
    r = verify(out, small_vmcore)
    assert r["ok"], r["verdict"]
    assert r["pages_compared"] == r["pages_checked"] > 1000, r


def test_a_zlib_page_whose_size_runs_into_the_next_page_fails(small_vmcore, tmp_path):
    """zlib's uncompress() stops at the end of the stream and ignores what follows: a
    makedumpfile -c page whose descriptor size was grown over the next page's data passed
    verify, with and without the source (lzo, snappy, zstd and lz4 refuse such bytes)."""
    out = str(tmp_path / "mkd")
    makedumpfile("-c", "-d", "1", small_vmcore, out)
    with fastdump.open(out) as d:
        pfn = next(p for p in d.pfns() if d.descriptor(p)[2] == _core.KD_ZLIB and d.descriptor(p)[1] < 2000)
        at = d.desc_off + kdump.DESC.size * (d._prefix_index(pfn) - d._base_index)
    bad = corrupt(out, tmp_path, lambda b: struct.pack_into("<I", b, at + 8, struct.unpack_from("<I", b, at + 8)[0]
                                                                        + 40))
    for src in (None, small_vmcore):
        r = verify(bad, src)
        assert not r["ok"] and f"pfn {pfn:#x}" in r["verdict"], r["verdict"]


@pytest.mark.parametrize("codec", CODECS)
def test_flipped_byte_in_page_data(dumps, small_vmcore, tmp_path, codec):
    d, pfns, descs = layout(dumps[codec])
    k = next(i for i, (off, size, flags, _) in enumerate(descs) if flags or codec == "none")
    off, size = descs[k][0], descs[k][1]
    bad = corrupt(dumps[codec], tmp_path, lambda b: b.__setitem__(off + size // 2, b[off + size // 2] ^ 0x5A))
    r = verify(bad, small_vmcore)          # against the source: always found
    assert not r["ok"] and f"pfn {pfns[k]:#x}" in r["verdict"], r["verdict"]
    r = verify(bad)                         # without it: the dump's own checksums find it
    assert not r["ok"] and f"{pfns[k]:#x}" in " ".join(r["problems"]), r["problems"]
    if codec == "zlib":                     # and zlib's own checksum
        assert "decompress" in " ".join(r["problems"]), r["problems"]


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_descriptor_offset_out_of_file(dumps, tmp_path, codec):
    d, pfns, descs = layout(dumps[codec])
    at = d.desc_off + kdump.DESC.size * 7
    bad = corrupt(dumps[codec], tmp_path, lambda b: struct.pack_into("<q", b, at, os.path.getsize(dumps[codec]) + 4096))
    r = verify(bad)
    assert not r["ok"] and "outside the page data area" in r["verdict"], r["verdict"]


@pytest.mark.parametrize("offset", [2**63 - 8, 2**63 - 4096, 2**63 - 1])
def test_descriptor_offset_near_the_top_of_int64(dumps, tmp_path, offset):
    """An offset where offset + size wraps: a clear verdict, not a crash (run apart: a
    segfault would take pytest with it)."""
    d, pfns, descs = layout(dumps["zstd"])
    at = d.desc_off + kdump.DESC.size * 7
    bad = corrupt(dumps["zstd"], tmp_path, lambda b: struct.pack_into("<q", b, at, offset))
    r = subprocess.run([sys.executable, "-m", "fastdump", "verify", bad], capture_output=True, text=True)
    assert r.returncode == 1, (r.returncode, r.stderr[-1000:])
    assert "outside the page data area" in r.stdout + r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("change", [-1, -40, -64, +1, +4096])
def test_an_elf_dump_cut_or_added_to_keeps_its_checksums(dumps, tmp_path, change):
    """The trailer ends the file: bytes cut from or added to the end move its footer off
    the end, which must not read as "this dump carries no checksums" (a damaged page
    would then pass)."""
    data = open(dumps["elf"], "rb").read()
    p = tmp_path / "changed"
    p.write_bytes(data[:change] if change < 0 else data + bytes(change))
    r = verify(str(p))
    assert not r["ok"] and ("not at the end of the file" in r["verdict"] or "without its footer" in r["verdict"]), \
        r["verdict"]


@pytest.mark.parametrize("which", ["clear-2nd", "set-2nd", "2nd-not-in-1st"])
def test_bitmap_bit_flipped(dumps, tmp_path, which):
    path = dumps["zstd"]
    d, pfns, descs = layout(path)
    b1 = d.first_bitmap
    if which == "clear-2nd":
        pfn = pfns[len(pfns) // 2]
    elif which == "set-2nd":     # one more dumped page (made present too, so only the count is off)
        pfn = next(p for p in range(d.max_mapnr) if not d.is_dumped(p))
        at1 = d.bitmap1_off + pfn // 8
        path = corrupt(path, tmp_path, lambda b: b.__setitem__(at1, b[at1] | (1 << (pfn % 8))), "b1")
    else:                        # neither present nor dumped
        pfn = next(p for p in range(d.max_mapnr) if not b1[p >> 3] >> (p & 7) & 1)
    at = d.bitmap2_off + pfn // 8
    bad = corrupt(path, tmp_path, lambda b: b.__setitem__(at, b[at] ^ (1 << (pfn % 8))))
    r = verify(bad)
    assert not r["ok"], r["verdict"]
    if which == "2nd-not-in-1st":
        assert "not present (1st bitmap)" in " ".join(r["problems"])


@pytest.mark.parametrize("kind", ["zstd", "none", "elf"])
@pytest.mark.parametrize("keep", [0.5, 0.99, 3000])
def test_truncated_file(dumps, tmp_path, kind, keep):
    size = os.path.getsize(dumps[kind])
    cut = int(size * keep) if keep < 1 else keep
    bad = corrupt(dumps[kind], tmp_path, lambda b: b.__delitem__(slice(cut, None)))
    r = verify(bad)
    assert not r["ok"] and r["verdict"].startswith("FAILED: "), r["verdict"]


def test_incomplete_flag_reported(dumps, tmp_path):
    status_at = kdump.HEADER.offset("status")
    bad = corrupt(dumps["zstd"], tmp_path, lambda b: struct.pack_into(
        "<I", b, status_at, struct.unpack_from("<I", b, status_at)[0] | kdump.STATUS_INCOMPLETE))
    r = verify(bad)
    # the flag was set after the dump was finished: its checksum says the header changed
    with fastdump.open(dumps["zstd"]) as d:     # the header block up to the trailer at its end
        covered = d.checksums().trailer_off
    assert not r["ok"] and r["incomplete"] and r["problems"] == [f"header block at 0x0+{covered:#x} does not "
                                                                 "match its checksum"], r["problems"]
    assert "incomplete" in r["verdict"]


def test_unwritten_descriptors_without_incomplete_flag(dumps, tmp_path):
    d, pfns, descs = layout(dumps["zstd"])
    at = d.desc_off + kdump.DESC.size * (len(pfns) - 1)
    bad = corrupt(dumps["zstd"], tmp_path, lambda b: b.__setitem__(slice(at, at + 24), bytes(24)))
    r = verify(bad)
    assert not r["ok"] and "never written" in r["verdict"]


def test_wrong_source_is_found(dumps, tmp_path):
    other = str(tmp_path / "other")
    make_vmcore(other, ram_size=64 * MiB, seed=6)
    r = verify(dumps["zstd"], other)
    assert not r["ok"] and "differs from the source" in r["verdict"]


def test_cli_verdict_and_status(dumps, small_vmcore, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "fastdump", "verify", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    r = run(dumps["lz4"], small_vmcore)
    assert r.returncode == 0 and r.stdout.startswith("OK: ") and r.stdout.count("\n") == 1, r
    bad = corrupt(dumps["none"], tmp_path, lambda b: b.__delitem__(slice(len(b) // 2, None)))
    r = run(bad)
    assert r.returncode == 1 and r.stdout.startswith("FAILED: ") and r.stdout.count("\n") == 1 and not r.stderr
    r = run(str(tmp_path / "missing"))
    assert r.returncode == 1 and r.stderr.startswith("fastdump: error: ") and "Traceback" not in r.stderr
    r = run("--json", dumps["zstd"])
    assert r.returncode == 0 and '"ok": true' in r.stdout


def test_elf_kernel_text_copy_is_compared(dumps, small_vmcore, tmp_path):
    """The kernel-text PT_LOAD repeats RAM that another PT_LOAD stores: a flipped byte
    in that copy alone is found, against the source and without it."""
    with fastdump.open(dumps["elf"]) as d:
        text = next(p for p in d.loads if p.vaddr >= 0xFFFFFFFF80000000 and p.filesz)
    at = text.offset + text.filesz // 2
    bad = corrupt(dumps["elf"], tmp_path, lambda b: b.__setitem__(at, b[at] ^ 0x5A))
    pfn = (text.paddr + text.filesz // 2) // 4096
    for src in (small_vmcore, None):
        r = verify(bad, src)
        assert not r["ok"] and f"pfn {pfn:#x}" in r["verdict"], r["verdict"]


def test_shared_zero_page_not_zero(dumps, tmp_path):
    """Every zero page of a level-1 dump reads the one shared zero page: a flipped byte
    there is found without the source."""
    _, _, descs = layout(dumps["zstd"])
    with fastdump.open(dumps["zstd"]) as d:
        _, zero_off = d.data_gap(min(off for off, *_ in descs))
    assert zero_off is not None and sum(1 for off, *_ in descs if off == zero_off) > 100
    bad = corrupt(dumps["zstd"], tmp_path, lambda b: b.__setitem__(zero_off + 100, 1))
    r = verify(bad)
    assert not r["ok"] and "zero page" in r["verdict"], r["verdict"]


@pytest.mark.parametrize("maker", ["fastdump", "makedumpfile"])
def test_a_split_part_does_not_count_the_other_parts_pages_as_unreadable(vmcore, tmp_path, maker):
    """A split part's descriptor table has room for every part's pages; the slots the
    other parts fill are no source pages this part lost."""
    parts = [str(tmp_path / f"part{i}") for i in range(2)]
    if maker == "fastdump":
        fastdump.dump(vmcore, level=1, compress="zlib", split=parts, split_block_pfns=4096)
    else:
        makedumpfile("--split", "--splitblock-size", "16384", "-c", "-d", "1", vmcore, *parts)
    for part in parts:
        with fastdump.open(part) as d:
            assert d.split and 0 < d.n_descriptors() < d.n_descriptors(all_parts=True)
        r = verify(part)
        assert r["ok"] and r["pages_unreadable"] == 0, r["verdict"]
        assert "unreadable" not in r["verdict"]


def test_the_verdict_says_what_was_not_held_to_anything(small_vmcore, tmp_path):
    """Without the source or checksums, a raw page is not read at all and an ELF page is
    held to nothing but the kernel-text copy: the OK line said "N pages checked" as if
    every one had been decoded.  It also counted the kernel text twice as pages."""
    raw, elfd = str(tmp_path / "raw"), str(tmp_path / "elf")
    makedumpfile("-d", "1", small_vmcore, raw)
    makedumpfile("-E", "-d", "1", small_vmcore, elfd)
    r = verify(raw)
    assert r["ok"] and f"of which {r['codecs']['none']} stored raw only had their place in the file checked" \
        in r["verdict"], r["verdict"]
    assert "only had their place" not in verify(raw, small_vmcore)["verdict"]
    r = verify(elfd)
    assert r["ok"] and f"stored pages checked ({r['pages']} pfns" in r["verdict"], r["verdict"]
    assert "held to nothing but the kernel-text copy" in r["verdict"]


def test_the_shared_zero_page_is_checked_whatever_the_dump_level_says(small_vmcore, tmp_path):
    """The zero page that many descriptors share was checked only when the sub header's
    dump_level excluded zero pages: with the level edited to 0, a byte written into it
    (every zero page then reads non-zero) passed verify."""
    out = str(tmp_path / "mkd")
    makedumpfile("-c", "-d", "1", small_vmcore, out)
    with fastdump.open(out) as d:
        descs = [d.descriptor(p) for p in d.pfns()]
        bs = d.block_size
    first = min(o for o, *_ in descs if o)
    assert sum(1 for o, *_ in descs if o == first) > 100

    def edit(b):
        struct.pack_into("<I", b, bs + 8, 0)          # the sub header's dump_level (after phys_base)
        b[first + 100] = 1
    bad = corrupt(out, tmp_path, edit)
    with fastdump.open(bad) as d:
        assert d.dump_level == 0
    r = verify(bad)
    assert not r["ok"] and "zero page" in r["verdict"], r["verdict"]


def test_a_dump_cut_by_its_size_limit_counts_the_pages_it_never_wrote(small_vmcore, dumps, tmp_path):
    """The writer of an unfinished dump takes the pages it never wrote out of the 2nd
    bitmap (so readers do not read empty descriptors): verify must still count them from
    the table's empty slots, not say "0 were never written"."""
    out, limit = str(tmp_path / "cut"), os.path.getsize(dumps["zstd"]) // 2
    r = subprocess.run([sys.executable, "-m", "fastdump", "-q", "-z", "-d", "1", "-L", str(limit), small_vmcore, out],
                       capture_output=True, text=True)
    assert r.returncode != 0 and os.path.exists(out + ".incomplete"), r.stderr
    got = verify(out + ".incomplete")
    whole = verify(dumps["zstd"])
    assert got["incomplete"] and 0 < got["pages_checked"] < whole["pages_checked"], got["verdict"]
    assert got["pages_unwritten"] == whole["pages_checked"] - got["pages_checked"], got["verdict"]
    assert f"{got['pages_unwritten']} were never written" in got["verdict"]
    # cut before any page data: the count is not known (it said 0)
    out2 = str(tmp_path / "cut-early")
    subprocess.run([sys.executable, "-m", "fastdump", "-q", "-z", "-d", "1", "-L", "420000", small_vmcore, out2],
                   capture_output=True)
    early = verify(out2 + ".incomplete")
    assert early["pages_checked"] == 0 and early["pages_unwritten"] is None, early["verdict"]
    assert "how many were never written is not known" in early["verdict"]
