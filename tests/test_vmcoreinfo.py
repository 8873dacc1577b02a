import pytest

from fastdump.errors import VmcoreinfoError
from fastdump.vmcoreinfo import VmcoreInfo

TEXT = """OSRELEASE=6.1.0-27-amd64
BUILD-ID=0123456789abcdef0123456789abcdef01234567
PAGESIZE=4096
SYMBOL(init_uts_ns)=ffffffff9a613460
SYMBOL(mem_section)=ffff9c4a3ffd5000
OFFSET(page._mapcount)=48
SIZE(page)=64
LENGTH(zone.free_area)=11
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129
NUMBER(phys_base)=-1073741824
NUMBER(VMALLOC_START)=0xffffc90000000000
NUMBER(PG_lru)=4
NUMBER(PG_lru)=99
KERNELOFFSET=18a00000
CRASHTIME=1764000000
"""


def test_typed_values():
    v = VmcoreInfo(TEXT.encode())
    assert v.osrelease == "6.1.0-27-amd64"
    assert v.page_size == 4096
    assert v.symbol("init_uts_ns") == 0xFFFFFFFF9A613460
    assert v.offset("page._mapcount") == 48
    assert v.size("page") == 64
    assert v.length("zone.free_area") == 11
    assert v.number("PAGE_BUDDY_MAPCOUNT_VALUE") == -129
    assert v.number("VMALLOC_START") == 0xFFFFC90000000000
    assert v.phys_base == (1 << 64) - 1073741824      # two's complement, as the sub header stores it
    assert v.kerneloffset == 0x18A00000
    assert v.crashtime == 1764000000
    assert v.build_id.startswith("0123")
    assert v.number("PG_lru") == 4                     # first occurrence wins
    assert v.has("SYMBOL(mem_section)") and not v.has("SYMBOL(mem_map)")


def test_missing_key_names_it():
    v = VmcoreInfo("OSRELEASE=x\n")
    with pytest.raises(VmcoreinfoError, match=r"SYMBOL\(swapper_pg_dir\)"):
        v.symbol("swapper_pg_dir")


@pytest.mark.parametrize("text", ["PAGESIZE=4095\n", "SYMBOL(x)=zz\n", "", "\0\0\0"])
def test_bogus_text_is_a_clear_error(text):
    with pytest.raises(VmcoreinfoError):
        VmcoreInfo(text)
