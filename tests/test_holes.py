"""A saved vmcore copied sparse (cp, the generator) has its zero pages as file holes:
fastdump finds them with SEEK_DATA/SEEK_HOLE and does not read them, and the dump
still holds every page the source holds."""

import os

import pytest

import fastdump
from support import digests, elf_pages, kdumpfile_digests

MiB = 1 << 20


@pytest.fixture(scope="module")
def sparse(generated_vmcore):
    path = generated_vmcore(ram_size=64 * MiB, mix={"zero": 6, "text": 1, "pointers": 1, "random": 1}, seed=11)
    st = os.stat(path)
    assert st.st_blocks * 512 < st.st_size // 2, "the generator no longer writes zero pages as holes"
    return path, elf_pages(path)


@pytest.mark.parametrize("level", [0, 1])
@pytest.mark.parametrize("mmap", [True, False])
def test_holes_are_not_read_and_the_dump_is_whole(sparse, tmp_path, level, mmap):
    path, pages = sparse
    out = str(tmp_path / "dump")
    stats = fastdump.dump(path, out, level=level, compress="zstd", use_mmap=mmap)
    nonzero = sum(1 for p in pages.values() if any(p))
    # only data is read: the non-zero pages (and the partial pages around holes)
    assert stats.bytes_read < (nonzero + 64) * 4096 < stats.pages_scanned * 4096 // 2, stats
    _, got = kdumpfile_digests(out, max(pages) + 1)
    assert got == digests(pages)      # at -d 1 zero pages share the zero descriptor


def test_holes_in_elf_output(sparse, tmp_path):
    """Dense ELF windows get the zeros of a hole written out, not skipped."""
    path, pages = sparse
    out = str(tmp_path / "dump.elf")
    stats = fastdump.dump(path, out, level=0, format="elf")
    assert stats.bytes_read < stats.pages_scanned * 4096 // 2
    assert elf_pages(out) == pages
