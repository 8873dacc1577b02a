"""Raw memory images (/dev/oldmem copies) with a memory map, as the seed's `dd` workflow makes."""

import os

import pytest

import fastdump
from fastdump.formats import elf
from fastdump.errors import UsageError
from fastdump.sources.rawmem import parse_iomem, parse_ranges
from fastdump.sources.vmcore import ElfSource
from support import digests, fastdump_cli, kdumpfile_digests

IOMEM = """00000000-00000fff : Reserved
00001000-0009fbff : System RAM
000a0000-000bffff : PCI Bus 0000:00
00100000-05ffffff : System RAM
  01000000-01ffffff : Kernel code
  03000000-03ffffff : Crash kernel
fec00000-fec003ff : IOAPIC 0
"""


def test_iomem_and_ranges_parsing():
    assert parse_iomem(IOMEM) == [(0x1000, 0x9FC00), (0x100000, 0x3000000), (0x4000000, 0x6000000)]
    assert parse_ranges("0x1000-0x9fbff, 100000-5ffffff") == [(0x1000, 0x9FC00), (0x100000, 0x6000000)]
    with pytest.raises(UsageError):
        parse_ranges("zz-1")
    with pytest.raises(UsageError):
        parse_iomem("nothing here")


@pytest.fixture(scope="module")
def oldmem(vmcore, tmp_path_factory):
    """`dd if=/dev/oldmem of=oldmem.001` of the synthetic machine: offset = physical address,
    with the VMCOREINFO note somewhere in kernel memory, as in a real kernel."""
    d = tmp_path_factory.mktemp("oldmem")
    path = str(d / "oldmem.001")
    with ElfSource(vmcore) as s, open(path, "wb") as out:
        out.truncate(max(e for _, e, _ in s.extents))
        for start, end, off in s.extents:
            for a in range(start, end, 1 << 20):
                out.seek(a)
                out.write(os.pread(s.fd, min(1 << 20, end - a), off + a - start))
        vm = s.vmcoreinfo_note
        out.seek(0x2100000)
        out.write(elf.build_note(b"VMCOREINFO", 0, vm.desc))
        vmci_text = vm.desc
    iomem = d / "iomem"
    iomem.write_text(IOMEM)
    info = d / "vmcoreinfo"
    info.write_bytes(vmci_text)
    return path, str(iomem), str(info)


def test_raw_image_dump_matches_the_vmcore(oldmem, source_pages, tmp_path):
    path, iomem, _ = oldmem
    out = str(tmp_path / "dump")
    fastdump_cli("-z", "-d", "1", "--iomem", iomem, path, out)
    fmt, got = kdumpfile_digests(out, max(source_pages) + 1)
    hole = range(0x3000000 // 4096, 0x4000000 // 4096)          # the crash kernel reservation
    want = {p: d for p, d in digests(source_pages).items() if p not in hole}
    want[0x2100000 // 4096] = got.get(0x2100000 // 4096)         # the page we planted the note in
    assert got == want
    with fastdump.open(out) as d:
        assert d.vmcoreinfo is not None and d.vmcoreinfo.osrelease.startswith("6.1")   # found in memory


def test_vmcoreinfo_from_a_file_and_a_plain_map(oldmem, tmp_path):
    path, _, info = oldmem
    out = str(tmp_path / "dump")
    fastdump_cli("-c", "-d", "1", "-i", info, "--mem-map", "0x1000-0x9fbff,0x100000-0x5ffffff", path, out)
    with fastdump.open(out) as d:
        assert d.vmcoreinfo.osrelease.startswith("6.1") and d.max_mapnr == 0x6000


def test_raw_image_without_a_map_is_a_clear_error(oldmem, tmp_path):
    path, _, _ = oldmem
    r = fastdump_cli("-d", "1", "--mem-map", "12-zz", path, str(tmp_path / "o"), check=False)
    assert r.returncode == 2 and "bad memory range" in r.stderr


@pytest.mark.parametrize("source,mem_map,expect", [
    ("/dev/zero", "0-fffffffff", "character device"),      # never ends: not a memory image
    ("/dev/urandom", "0-fff", "character device"),
    ("IMAGE", "0-ffffffffffffffff", "physical address space"),
    ("IMAGE", "0-fff,10000000000000-10000000000fff", "physical address space"),
])
def test_raw_sources_are_bounded(oldmem, tmp_path, source, mem_map, expect):
    """Raw memory is read only as far as the image really goes; what has no size is refused."""
    source = oldmem[0] if source == "IMAGE" else source
    r = fastdump_cli("-d", "1", "--mem-map", mem_map, source, str(tmp_path / "o"), check=False, timeout=60)
    assert r.returncode in (1, 2) and expect in r.stderr.splitlines()[-1] and "Traceback" not in r.stderr
    assert not os.listdir(tmp_path)


def test_a_huge_map_over_a_small_image_reads_only_the_image(oldmem, tmp_path):
    path, _, info = oldmem
    out = str(tmp_path / "dump")
    fastdump_cli("-d", "1", "-i", info, "--mem-map", "0-fffffffffff", path, out, timeout=120)
    with fastdump.open(out) as d:
        assert d.max_mapnr == -(-os.path.getsize(path) // 4096)
