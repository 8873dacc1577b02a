"""x86_64 virtual -> physical translation and struct page location (kernel/vtop.py, kernel/memmap.py)."""

import random

import pytest

from fastdump.kernel.memmap import MemMap
from fastdump.kernel.memory import KernelMemory
from fastdump.kernel.vtop import TranslationError, X86_64Vtop
from fastdump.sources.vmcore import ElfSource
from fastdump.testing.generator import MiB
from fastdump.testing.kernel_layout import PAGE_OFFSET

VARIANTS = {
    "4level": {}, "5level": {"five_level": True}, "vmemmap_4k": {"vmemmap_4k": True},
    "sme": {"sme": True}, "sparse": {"memory_model": "sparse"}, "flatmem": {"memory_model": "flatmem"},
    "deref": {"mem_section_deref": True, "encoding": "4.x"},
}
# variants whose struct pages live in a virtually mapped memmap (vmemmap)
VMEMMAP_VARIANTS = sorted(n for n, kw in VARIANTS.items() if kw.get("memory_model", "vmemmap") == "vmemmap")


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def made(request, generated_kernel):
    kw = dict(VARIANTS[request.param])
    kw.setdefault("encoding", "6.12")
    path, layout = generated_kernel(160 * MiB, seed=2, **kw)
    src = ElfSource(path)
    yield request.param, src, layout
    src.close()


def test_struct_pages_translate(made):
    name, src, layout = made
    vt = X86_64Vtop(src)
    mm = MemMap(src, KernelMemory(src))
    rng = random.Random(1)
    pfns = [p for a, b in src.present_runs() for p in (a, b - 1)] + \
           [rng.randrange(a, b) for a, b in src.present_runs() for _ in range(200)]
    for p in pfns:
        assert mm.struct_va(p) == layout.struct_va(p)
        assert vt.translate(mm.struct_va(p)) == layout.struct_phys(p)
    # phys_runs covers every present pfn with the right physical address
    for a, b in src.present_runs():
        for p0, p1, pa in mm.phys_runs(a, b):
            assert pa == layout.struct_phys(p0) and layout.struct_phys(p1 - 1) == pa + (p1 - 1 - p0) * 64


def test_direct_map_and_image(made):
    name, src, layout = made
    vt = X86_64Vtop(src)
    for pa in (0x1000, 5 * MiB + 123, 100 * MiB):
        assert vt.translate(PAGE_OFFSET + pa) == pa
    kt0 = layout.kernel_text[0]
    assert vt.translate(0xFFFFFFFF81000000 + 0x2345) == kt0 + 0x2345
    assert vt.walk(0xFFFFFFFF81000000 + 0x2345) == kt0 + 0x2345
    assert vt.levels == (5 if name == "5level" else 4)
    with pytest.raises(TranslationError):
        vt.walk(0xFFFFC90000000000)          # vmalloc: not mapped in the synthetic kernel
    # above the direct map (MAX_PHYSMEM_BITS of it) nothing is a fixed offset: --vtop of these
    # printed 0x777fffffffff and the like for page_offset 0xffff888000000000
    for va in (0xFFFFFFFFFFFFFFFF, 0xFFFFFE0000000000, PAGE_OFFSET + (1 << vt.max_physmem_bits)):
        with pytest.raises(TranslationError):
            vt.translate(va)


@pytest.mark.parametrize("made", VMEMMAP_VARIANTS, indirect=True)
def test_runs_follow_large_pages(made):
    name, src, layout = made
    assert layout.memory_model == "vmemmap"
    vt = X86_64Vtop(src)
    va = layout.struct_va(0)
    runs = vt.runs(va, 2 * MiB)
    assert sum(n for _, _, n in runs) == 2 * MiB
    if name != "vmemmap_4k":
        assert len(runs) == 1


def test_runs_can_skip_unmapped_pages(made):
    """A range whose first half translates by no rule (just below the direct map):
    the translatable part, exactly; the rest left out instead of failing the range."""
    name, src, layout = made
    vt = X86_64Vtop(src)
    va = vt.page_offset - 8 * MiB
    size = 16 * MiB
    with pytest.raises(TranslationError):
        vt.runs(va, size)
    runs = vt.runs(va, size, skip_unmapped=True)
    assert runs and runs[0][0] == vt.page_offset and sum(n for _, _, n in runs) == 8 * MiB
    for v, pa, n in runs:
        assert v + n <= va + size
        for off in (0, n // 2, n - 1):
            assert vt.translate(v + off) == pa + off
    with pytest.raises(TranslationError):
        vt.translate(vt.page_offset - 1)
