import json
import re

import pytest

from fastdump.errors import VmcoreinfoError
from fastdump.testing.generator import MiB, SyntheticVmcore, VmcoreSpec
from fastdump.kernel.vmcoreinfo import VmcoreInfo
from support import digests, elf_pages, fastdump_cli, kdumpfile_digests, makedumpfile

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


def test_empty_note_is_a_clear_error_but_not_fatal_to_a_source():
    for text in ("", "\0\0\0", "no key value lines here"):
        with pytest.raises(VmcoreinfoError):
            VmcoreInfo(text)
        assert VmcoreInfo.from_note(text.encode()) is None   # the note is copied, just not used


GARBLED = ["NUMBER(unused_thing)=zz", "SYMBOL(nothing_reads_me)=not-hex", "OFFSET(foo.bar)=",
           "SIZE(huge)=" + "9" * 60, "LENGTH(neg)=-0x", "=no key", "KERNELOFFSET=q"]


@pytest.mark.parametrize("line", GARBLED)
def test_a_garbled_line_fails_only_the_code_reading_it(line):
    v = VmcoreInfo(TEXT + line + "\n")
    assert v.symbol("init_uts_ns") == 0xFFFFFFFF9A613460 and v.page_size == 4096
    assert v.phys_base == (1 << 64) - 1073741824 and v.crashtime == 1764000000
    key = line.split("=", 1)[0]
    form, _, name = key.partition("(")
    if name:
        table = {"NUMBER": v.numbers, "SYMBOL": v.symbols, "OFFSET": v.offsets, "SIZE": v.sizes,
                 "LENGTH": v.lengths}[form]
        assert name[:-1] in table                                       # it is there ...
        with pytest.raises(VmcoreinfoError, match=re.escape(key)):      # ... and bad when read
            getattr(v, form.lower())(name[:-1])
        with pytest.raises(VmcoreinfoError, match=re.escape(key)):
            table.get(name[:-1])


def test_bogus_used_values_are_clear_errors_when_used():
    with pytest.raises(VmcoreinfoError, match="PAGESIZE"):
        VmcoreInfo("PAGESIZE=4095\n").page_size
    with pytest.raises(VmcoreinfoError, match="PAGESIZE"):
        VmcoreInfo("PAGESIZE=4k\n").page_size
    assert VmcoreInfo("NUMBER(phys_base)=zz\n").phys_base is None    # header field only: no failure


class _Garbled(SyntheticVmcore):
    """A vmcore whose VMCOREINFO ends with lines no code needs, each malformed."""

    def vmcoreinfo_text(self):
        return super().vmcoreinfo_text() + "\n".join(GARBLED) + "\n"


@pytest.fixture(scope="module")
def garbled(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("garbled") / "vmcore")
    _Garbled(VmcoreSpec(ram_size=64 * MiB, seed=5)).write(path)
    return path


@pytest.mark.parametrize("args", [["-d", "0"], ["-z", "-d", "1"], ["-E", "-d", "1"]])
def test_levels_0_and_1_copy_whatever_vmcoreinfo_says(garbled, tmp_path, args):
    out = str(tmp_path / "dump")
    fastdump_cli(*args, garbled, out)
    pages = elf_pages(garbled)
    if args[0] == "-E":   # ELF drops (most) zero pages; every non-zero page is there, unchanged
        got, want = digests(elf_pages(out)), digests(pages)
        assert {p: want[p] for p in got} == got
        assert all(p in got for p, d in pages.items() if any(d))
    else:
        assert kdumpfile_digests(out, max(pages) + 1)[1] == digests(pages)


def test_makedumpfiles_dump_of_it_is_accepted(garbled, tmp_path):
    """info, verify and convert read the dump makedumpfile wrote from the same vmcore."""
    theirs = str(tmp_path / "theirs")
    makedumpfile("-c", "-d", "1", garbled, theirs)
    info = json.loads(fastdump_cli("info", "--json", theirs).stdout)
    assert info["kernel"] == "6.1.0-fastdump-synthetic" and info["pages"]["dumped"] > 0
    fastdump_cli("verify", theirs, garbled)
    conv = str(tmp_path / "conv")
    fastdump_cli("convert", "-d", "1", "--compress", "zstd", theirs, conv)
    max_pfn = max(elf_pages(garbled)) + 1
    assert kdumpfile_digests(conv, max_pfn)[1] == kdumpfile_digests(theirs, max_pfn)[1]


def test_a_garbled_key_that_classification_needs_fails_only_those_levels(tmp_path, generated_kernel):
    path, layout = generated_kernel(96 * MiB, extra_keys=["NUMBER(PG_lru)=0xzz"])
    r = fastdump_cli("-d", "31", path, str(tmp_path / "d31"), check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "NUMBER(PG_lru)" in r.stderr.splitlines()[-1]
    fastdump_cli("-d", "1", path, str(tmp_path / "d1"))
