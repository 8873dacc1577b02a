"""One kernel-memory reader (kernel/memory.py) for every source: the ELF vmcore, a
kdump dump of it, with its errors in the caller's class."""

import pytest

import fastdump
from fastdump.kernel.dmesg import DmesgError
from fastdump.kernel.memory import KernelMemory
from fastdump.kernel.utsname import read_utsname
from fastdump.sources.vmcore import ElfSource

UNMAPPED = 0xFFFFFFFFFF000000     # in the kernel map, far past the synthetic kernel's image


@pytest.fixture(scope="module")
def sources(vmcore, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("mem") / "dump")
    fastdump.dump(vmcore, out, level=31, compress="zstd")
    with ElfSource(vmcore) as elf, fastdump.open(out) as dump:
        yield elf, dump


def test_same_bytes_from_every_source(sources):
    elf, dump = sources
    vi = elf.vmcoreinfo
    va = vi.symbols["init_uts_ns"] + vi.offsets["uts_namespace.name"]
    got = [KernelMemory(s).read(va, 6 * 65) for s in sources]
    assert got[0] == got[1] and got[0].startswith(b"Linux\0")
    assert read_utsname(elf) == read_utsname(dump) == ["Linux", "fastdump-synthetic", vi.osrelease,
                                                       "#1 SMP PREEMPT_DYNAMIC", "x86_64", "(none)"]
    # a kernel-image address goes through the kernel's own page tables, which the dump holds
    assert KernelMemory(dump).vtop.walk(va) == KernelMemory(elf).translate(va)


def test_a_long_read_in_one_piece_equals_the_page_by_page_read(sources):
    """Ranges over a page are read per physically contiguous piece; the bytes are those of
    reading each page apart, and a range that runs into a missing page still fails there."""
    for src in sources:
        mem = KernelMemory(src, error=DmesgError)
        vi = src.vmcoreinfo
        va = vi.symbols["init_uts_ns"] - 5000          # a range over three pages of the image
        whole = mem.read(va, 3 * 4096 + 123)
        pieces = b"".join(mem.read(a, min(va + 3 * 4096 + 123, (a | 4095) + 1) - a)
                          for a in [va] + list(range((va | 4095) + 1, va + 3 * 4096 + 123, 4096)))
        assert len(whole) == 3 * 4096 + 123 and whole == pieces
        with pytest.raises(DmesgError, match=f"^kernel address {UNMAPPED:#x} is not readable"):
            mem.read(UNMAPPED, 2 * 4096)


def test_missing_memory_is_one_line_in_the_callers_class_or_counted(sources):
    for src in sources:
        mem = KernelMemory(src, error=DmesgError)
        with pytest.raises(DmesgError, match=f"^kernel address {UNMAPPED:#x} is not readable") as e:
            mem.read(UNMAPPED, 16)
        assert "\n" not in str(e.value)
        assert mem.read(UNMAPPED - 8, 4096 + 16, strict=False) == bytes(4096 + 16)
        assert mem.missing == 4096 + 16
        with pytest.raises(DmesgError, match="VMCOREINFO has no SYMBOL"):
            mem.keys("the test").sym("no_such_symbol")
