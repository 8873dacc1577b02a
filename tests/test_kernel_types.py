"""fastdump.kernel.types: kallsyms and BTF decoded from made-up tables, including corrupt ones.

The real kernels' tables are checked in tests/e2e/test_kernel_types_real.py."""

import struct

import pytest

from fastdump.kernel.types import NotAvailable
from fastdump.kernel.types.btf import Btf
from fastdump.kernel.types.kallsyms import Symbols
from fastdump.kernel.types.kernel import Kernel
from fastdump.kernel.vmcoreinfo import VmcoreInfo
from fastdump.testing.kernel_types import BASE, PageMemory, made_up_kernel, sample_btf


def make(rule="absolute-percpu", patch=None, **kw):
    text, layout = made_up_kernel(rule=rule, **kw)
    if patch:
        patch(layout)
    return PageMemory(layout.values()), VmcoreInfo(text)


@pytest.mark.parametrize("rule", ["absolute-percpu", "relative", "place-relative"])
def test_every_address_rule_is_found_and_checked(rule):
    mem, vi = make(rule)
    syms = Symbols(mem.read, vi)
    assert syms.address("jiffies") == BASE + 0x30000
    assert syms.address("x" * 300) == BASE + 0x33000
    assert syms.address("a_static") == BASE + 0x31000          # the first of same-named statics
    assert syms.kind("_stext") == "T" and syms.kind("a_static") == "t"
    if rule == "absolute-percpu":
        assert syms.address("runqueues") == 0x31C40
    with pytest.raises(NotAvailable, match="no symbol"):
        syms.address("nope")


def test_tables_that_put_vmcoreinfo_symbols_elsewhere_are_not_used():
    mem, vi = make()
    vi = VmcoreInfo(vi.text.replace(f"SYMBOL(_stext)={BASE + 0x1000:x}", f"SYMBOL(_stext)={BASE + 0x2000:x}"))
    with pytest.raises(NotAvailable, match="no address rule"):
        Symbols(mem.read, vi)


def test_no_kallsyms_in_vmcoreinfo_is_one_line():
    with pytest.raises(NotAvailable, match="kernels before 6.0"):
        Symbols(lambda va, n: b"\0" * n, VmcoreInfo("OSRELEASE=5.10.0\nSYMBOL(_stext)=ffffffff81000000\n"))


def _set(layout, key, data):
    va, _ = layout[key]
    layout[key] = (va, data)


@pytest.mark.parametrize("patch, message", [
    (lambda l: _set(l, "kallsyms_num_syms", struct.pack("<I", 0xFFFFFFFF)), "not plausible"),
    (lambda l: _set(l, "kallsyms_num_syms", struct.pack("<I", 0)), "not plausible"),
    (lambda l: _set(l, "kallsyms_names", l["kallsyms_names"][1][:40]), "cut short|empty|not in the dump"),
    (lambda l: _set(l, "kallsyms_names", b"\0" * len(l["kallsyms_names"][1])), "empty"),
    (lambda l: _set(l, "kallsyms_token_index", struct.pack("<256H", *([60000] * 256))), "cut short|not in"),
    (lambda l: _set(l, "kallsyms_offsets", l["kallsyms_offsets"][1][:8]), "not in the dump|no address rule"),
    (lambda l: _set(l, "kallsyms_offsets", bytes(len(l["kallsyms_offsets"][1]))), "no address rule"),
])
def test_corrupt_tables_are_not_available(patch, message):
    mem, vi = make(patch=patch)
    with pytest.raises(NotAvailable, match=message):
        Symbols(mem.read, vi)


# -- BTF ---------------------------------------------------------------------------
def test_btf_members_sizes_anonymous_unions_bitfields_arrays():
    btf = Btf(sample_btf().blob())
    page = btf.struct_id("page")
    assert btf.sizeof(page) == 64 and btf.struct_id("page_t") == page
    assert btf.member(page, "flags")[0] == 0
    assert btf.member(page, "lru")[0] == 64                    # through the anonymous union
    assert btf.member(page, "high")[0] == 96                   # two anonymous levels deep
    assert btf.member(page, "priv[2]")[0] == 128 + 2 * 64
    assert btf.member(page, "order")[::2] == (384, 4) and btf.member(page, "mapcount")[::2] == (388, 28)
    with pytest.raises(NotAvailable, match="no member"):
        btf.member(page, "nope")
    with pytest.raises(NotAvailable, match="more than 3"):
        btf.member(page, "priv[3]")


def test_btf_loops_and_bad_sections_are_not_available():
    b = sample_btf()
    t1 = b.typedef("loop_a", b.count + 2)      # loop_a -> loop_b -> loop_a
    b.typedef("loop_b", t1)
    btf = Btf(b.blob())
    with pytest.raises(NotAvailable, match="does not end"):
        btf.sizeof(t1)
    blob = bytearray(b.blob())
    struct.pack_into("<I", blob, 12, 1 << 30)                   # type_len past the blob
    with pytest.raises(NotAvailable, match="past the blob"):
        Btf(bytes(blob))
    blob = bytearray(b.blob())
    blob[24 + 7] = 31                                           # first type: kind 31 does not exist
    with pytest.raises(NotAvailable, match="unknown kind"):
        Btf(bytes(blob))
    with pytest.raises(NotAvailable, match="magic"):
        Btf(b"\0" * 64)


def test_btf_enumerators_by_name_first_of_a_name_negative_and_64_bit():
    b = sample_btf()
    b.struct("uses_the_name", 4, [("MIGRATE_PCPTYPES", 1, 0)])   # the same string first, not deduplicated
    b.enum("migratetype", [("MIGRATE_UNMOVABLE", 0), ("MIGRATE_PCPTYPES", 3), ("NEG", -5)])
    b.enum("other", [("MIGRATE_PCPTYPES", 9)])                    # a second of the name: not taken
    b.enum("big", [("HUGE", 1 << 40), ("HUGE_NEG", -(1 << 40))])
    btf = Btf(b.blob())
    for name, value in [("MIGRATE_PCPTYPES", 3), ("NEG", -5), ("MIGRATE_UNMOVABLE", 0), ("HUGE", 1 << 40),
                        ("HUGE_NEG", -(1 << 40)), ("nothing", None), ("page", None)]:
        assert btf.enumerator(name) == value, name
        assert btf.enumerators.get(name) == value, name         # the decoded table agrees


def test_btf_records_past_the_section_and_names_outside_are_refused():
    b = sample_btf()
    blob = bytearray(b.blob())
    struct.pack_into("<I", blob, 24, 1 << 30)                   # first type's name offset: outside
    with pytest.raises(NotAvailable, match="type 1 names a string outside"):
        Btf(bytes(blob))
    blob = bytearray(b.blob())
    struct.pack_into("<I", blob, 24 + 4, (4 << 24) | 0xFFFF)    # a struct of 65535 members: past the section
    with pytest.raises(NotAvailable, match="running past"):
        Btf(bytes(blob))


def test_kallsyms_names_read_in_small_pieces_give_the_same_answers(monkeypatch):
    """Entries (the two-byte big symbol too) cut at every piece boundary are resumed."""
    from fastdump.kernel.types import kallsyms
    mem, vi = make()
    whole = Symbols(mem.read, vi)
    for chunk in (7, 64, 301):
        monkeypatch.setattr(kallsyms, "NAMES_CHUNK", chunk)
        syms = Symbols(mem.read, vi)
        for name in ("jiffies", "x" * 300, "a_static", "_stext", "runqueues"):
            assert syms.address(name) == whole.address(name) and syms.kind(name) == whole.kind(name)


def test_kallsyms_name_of_impossible_length_is_not_available():
    """A name that expands past KSYM_NAME_LEN (tokens of 5+ bytes) before the wanted ones."""
    def patch(layout):
        va, names = layout["kallsyms_names"]
        layout["kallsyms_names"] = (va, bytes([0x80 | 0x7F, 1]) + bytes([2]) * 255 + names[1 + names[0]:])
    mem, vi = make(patch=patch)
    with pytest.raises(NotAvailable, match="impossible length"):
        Symbols(mem.read, vi)


# -- the accessor ------------------------------------------------------------------------
class FakeDump:
    machine = 62

    def __init__(self, vi):
        self.vmcoreinfo = vi


def kernel(extra):
    mem, vi = make(vmcoreinfo_extra=extra)
    return Kernel(FakeDump(vi), read=mem.read)


def test_kernel_answers_once_btf_agrees_with_vmcoreinfo():
    k = kernel("OFFSET(page.lru)=8\nSIZE(page)=64\n")
    assert k.sizeof("per_cpu_pages") == 16
    assert k.offsetof("page", "lru") == 8 and k.member("page", "priv").size == 24
    with pytest.raises(NotAvailable, match="bitfield"):
        k.offsetof("page", "mapcount")
    assert k.available().startswith("kallsyms: 1") and "BTF: 1" in k.available()


@pytest.mark.parametrize("offsets", ["OFFSET(page.lru)=16\n", "SIZE(page)=80\n", ""])
def test_btf_that_disagrees_with_vmcoreinfo_is_not_used(offsets):
    k = kernel(offsets)
    with pytest.raises(NotAvailable, match="VMCOREINFO"):
        k.sizeof("page")
    with pytest.raises(NotAvailable, match="VMCOREINFO"):     # remembered, one line every time
        k.offsetof("page", "flags")
    assert "BTF: not available" in k.available()


def test_kallsyms_find_agrees_with_a_plain_decoding():
    """The compiled search rejects names token by token, without decoding them; it must find
    what decoding every name and comparing would: near misses of the same length (one
    letter off, first or last), names that are prefixes of others, empty tokens, and the
    first of two same-named entries."""
    import random
    from array import array
    from fastdump._kerneltables import kallsyms_entries, kallsyms_find
    rnd = random.Random(13)
    tokens = [b""] + [bytes(rnd.choice(b"Ttdb_abcxyz") for _ in range(rnd.randint(1, 4)))
                      for _ in range(255)]
    entries = []
    for _ in range(3000):
        entries.append([rnd.randrange(1, 256) for _ in range(rnd.randint(1, 9))] + [0] * rnd.randint(0, 2))
    decoded = [b"".join(tokens[t] for t in e) for e in entries]
    keep = [i for i, d in enumerate(decoded) if len(d) >= 2]
    entries, decoded = [entries[i] for i in keep], [decoded[i] for i in keep]
    raw = b"".join(bytes([len(e)]) + bytes(e) for e in entries)
    starts = array("I", bytes(4 * len(entries)))
    assert kallsyms_entries(raw, len(entries), starts) == (len(entries), len(raw))
    names = [d[1:] for d in decoded]
    wanted = set(rnd.sample(names, 40))
    for n in list(wanted)[:20]:           # the same length, one letter off at either end
        wanted.add(b"#" + n[1:])
        wanted.add(n[:-1] + b"#")
        wanted.add(n[:-1])
    expect = {}
    for i, n in enumerate(names):
        if n in wanted and n not in expect:
            expect[n] = (i, chr(decoded[i][0]))
    assert kallsyms_find(raw, starts, tokens, wanted) == expect
