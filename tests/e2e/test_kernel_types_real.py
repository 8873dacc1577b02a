"""fastdump.kernel.types on real Debian kernels: kallsyms from the dump against the debug
vmlinux's own symbol table, and BTF from the dump against VMCOREINFO and the kernel's data.

Per kernel (FASTDUMP_E2E_KERNELS): every kallsyms symbol that the debug vmlinux also names
once is at the vmlinux address plus KERNELOFFSET (per-CPU symbols: their per-CPU offset),
on the raw /proc/vmcore copy and on fastdump's -d 31 dump; `jiffies` reads the same; struct
sizes and member offsets from BTF are those the judge's VMCOREINFO gives.  Kernels older
than 6.0 export no kallsyms: they must say "not available", not answer.
"""

import collections
import os

import pytest
from elftools.elf.elffile import ELFFile
from support import kdumpfile_digests

import fastdump
from fastdump.kernel.types import NotAvailable

from . import fixtures, kernels


@pytest.fixture(scope="module", params=fixtures.KEYS)
def real(request):
    return request.param, fixtures.fixture_dir(request.param)


def vmlinux_symbols(path):
    """{name: address} of symbols the vmlinux names exactly once."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        seen = collections.Counter()
        addr = {}
        for sym in symtab.iter_symbols():
            if sym.name and sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE"):
                seen[sym.name] += 1
                addr[sym.name] = sym["st_value"]
    return {n: a for n, a in addr.items() if seen[n] == 1}


def test_kallsyms_and_btf_from_the_dump(real):
    key, outdir = real
    raw = os.path.join(outdir, "vmcore.raw")
    with fastdump.open(raw) as d:
        k = d.kernel
        release = d.vmcoreinfo.osrelease
        if int(release.split(".")[0]) < 6:
            with pytest.raises(NotAvailable, match="before 6.0"):
                k.symbol("jiffies")
            return
        offset = d.vmcoreinfo.kerneloffset or 0
        want = vmlinux_symbols(kernels.debug_vmlinux(key, log=lambda *a: None))
        checked = wrong = 0
        # x86_64 per-CPU symbols are offsets from 0 (not moved by KASLR) until 6.15 made the
        # section an ordinary one: 7.x links __per_cpu_start at a kernel address
        percpu_end = want.get("__per_cpu_end", 0) if want.get("__per_cpu_start") == 0 else -1
        present = k.symbols.find(list(want))          # one pass over the table
        for name in want:
            if present[name] is None:
                continue
            expect = want[name] if want[name] <= percpu_end else want[name] + offset
            checked += 1
            if k.symbol(name) != expect:
                wrong += 1
        assert checked > 20000 and wrong == 0, (checked, wrong)
        jiffies = k.read_u64(k.symbol("jiffies"))
        vi = d.vmcoreinfo
        assert k.sizeof("page") == vi.sizes["page"]
        assert k.offsetof("page", "flags") == vi.offsets["page.flags"]
        assert k.offsetof("zone", "free_area") == vi.offsets["zone.free_area"]
        assert 0 < k.sizeof("per_cpu_pages") < 4096
        assert k.offsetof("zone", "per_cpu_pageset") < k.sizeof("zone")
    dump = os.path.join(outdir, "fastdump-d31.kdump")
    with fastdump.open(dump) as d:
        assert d.kernel.read_u64(d.kernel.symbol("jiffies")) == jiffies
        assert d.kernel.sizeof("per_cpu_pages") == k.sizeof("per_cpu_pages")


def test_per_cpu_free_lists_check_out(real):
    """Every online CPU's lists of every populated zone check out, and the pages on them add
    up to the kernel's own per_cpu_pages.count; the compiled walk finds what the reading one does."""
    from fastdump.kernel.judge import make_judge
    from fastdump.kernel.pcp import find_pcp_free
    key, outdir = real
    with fastdump.open(os.path.join(outdir, "vmcore.raw")) as d:
        if int(d.vmcoreinfo.osrelease.split(".")[0]) < 6:
            return                                  # no kallsyms: nothing to walk (see above)
        judge = make_judge(d, 16, warn=lambda m: None)
        r = find_pcp_free(d.kernel, judge.memmap)
        compiled = find_pcp_free(d.kernel, judge.memmap, judge._list_follower())   # as the judge walks
    print(f"{key}: {r.stats()}")
    assert compiled.runs == r.runs and compiled.stats() == r.stats()
    assert r.lists_ok >= 2 and r.lists_rejected == 0, r.stats()
    assert r.pages == r.counted > 0


def test_a_struct_page_layout_the_btf_contradicts_drops_nothing_by_it(real, tmp_path):
    """VMCOREINFO saying OFFSET(page.flags)=8 where the kernel's BTF says 0 (one of them is
    damaged): struct pages read by that layout classify garbage (some 5,000 pages of this
    dump dropped as hwpoisoned, free or cache).  fastdump must say so and drop no page by
    its struct page; the pages of the honest run must all be there."""
    import subprocess
    import sys
    key, outdir = real
    dump = os.path.join(outdir, "fastdump-d31.kdump")
    with fastdump.open(dump) as d:
        if int(d.vmcoreinfo.osrelease.split(".")[0]) < 6:
            return                                  # no kallsyms, no BTF to contradict anything
        want = d.vmcoreinfo.offsets["page.flags"]
    data = bytearray(open(dump, "rb").read())
    line = b"OFFSET(page.flags)=%d\n" % want
    at = data.find(line)
    assert at > 0 and data.find(line, at + 1) < 0
    data[at:at + len(line)] = b"OFFSET(page.flags)=%d\n" % (want + 8)
    bad = tmp_path / "bad.kdump"
    bad.write_bytes(data)
    for level in ("31", "1"):      # -d 31: the per-CPU walk finds it; -d 1: the hwpoisoned pages it makes
        outs = {}
        for name, src in (("honest", dump), ("lied", str(bad))):
            outs[name] = str(tmp_path / f"{name}{level}")
            r = subprocess.run([sys.executable, "-m", "fastdump", "convert", "-z", "-d", level, src, outs[name]],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            if name == "lied":
                assert "contradict VMCOREINFO's struct page layout" in r.stdout + r.stderr, r.stdout + r.stderr
        with fastdump.open(dump) as d:
            max_pfn = d.max_mapnr
        _, honest = kdumpfile_digests(outs["honest"], max_pfn)      # libkdumpfile reads both
        _, lied = kdumpfile_digests(outs["lied"], max_pfn)
        assert set(honest) <= set(lied) and all(lied[p] == h for p, h in honest.items()), level
