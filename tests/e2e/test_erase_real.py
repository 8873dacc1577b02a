"""--config on real Debian kernels (the harness's cached vmcores), against Debian's makedumpfile.

Per kernel (FASTDUMP_E2E_KERNELS): the same filter config (a member path, and an explicit
``size``) through fastdump and through makedumpfile 1.7.6 with the debug vmlinux.  Every page
both dumps hold is byte-identical (the erased page included, read by libkdumpfile), the
eraseinfo records are the same text, the erased bytes are 'X', and fastdump's dump differs from
its own dump without --config in exactly that page.  Without -x (Debian's BTF has no VAR for
init_uts_ns: its type is proven from the member path), the dump is the same, byte for byte.  The guest workload
plants no secret of its own (the nodename is the guest's "(none)"): the test erases it anyway.
"""

import os
import subprocess
import sys

import pytest
from support import kdumpfile_digests

import fastdump

from . import fixtures, kernels

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "[vmlinux]\nerase init_uts_ns.name.nodename\nerase init_uts_ns.name.domainname size 8\n"


@pytest.fixture(scope="module", params=fixtures.KEYS)
def real(request):
    return request.param, fixtures.fixture_dir(request.param)


def newest_makedumpfile():
    sys.path.insert(0, TOP)
    from bench.run import makedumpfile_builds
    builds = makedumpfile_builds(lambda text: None)
    found = [b for b in builds if b["name"] == "makedumpfile-deb13"]
    assert found, f"need Debian 13's makedumpfile (1.7.6: it reads 6.12), found {builds}"
    return found[0]["exe"]


def fastdump_run(*args):
    return subprocess.run([sys.executable, "-m", "fastdump", *args], capture_output=True, text=True, cwd=TOP,
                          timeout=1200)


def test_erase_matches_makedumpfile(real, tmp_path):
    key, outdir = real
    raw = os.path.join(outdir, "vmcore.raw")
    vmlinux = kernels.debug_vmlinux(key, log=lambda *a: None)
    conf = tmp_path / "erase.conf"
    conf.write_text(CONFIG)
    ours, plain, theirs, nox = (str(tmp_path / n) for n in ("ours", "plain", "theirs", "nox"))
    r = fastdump_run("-c", "-d", "31", "--config", str(conf), raw, nox)
    assert r.returncode == 0, r.stderr
    r = fastdump_run("-c", "-d", "31", "-x", vmlinux, "--config", str(conf), raw, ours)
    assert r.returncode == 0, r.stderr
    assert fastdump_run("-c", "-d", "31", raw, plain).returncode == 0
    m = subprocess.run([newest_makedumpfile(), "-c", "-d", "31", "-x", vmlinux, "--config", str(conf), raw, theirs],
                       capture_output=True, text=True, timeout=1200)
    assert m.returncode == 0, (m.stdout + m.stderr)[-2000:]
    with fastdump.open(raw) as d:
        max_pfn = d.max_pfn
    a, p, b, n = (kdumpfile_digests(f, max_pfn)[1] for f in (ours, plain, theirs, nox))
    assert n == a
    changed = sorted(pfn for pfn in a if a[pfn] != p.get(pfn))
    assert len(changed) == 1, changed[:8]                   # nodename and domainname share a page
    common = set(a) & set(b)
    assert changed[0] in common
    assert [pfn for pfn in common if a[pfn] != b[pfn]] == []
    with fastdump.open(ours) as o, fastdump.open(theirs) as t:
        info = o.read_at(o.offset_eraseinfo, o.size_eraseinfo)
        assert info == t.read_at(t.offset_eraseinfo, t.size_eraseinfo)
        assert info == b"erase init_uts_ns.name.nodename size 65\nerase init_uts_ns.name.domainname size 8\n"
        page = o.read_pfn(changed[0])
    with fastdump.open(raw) as d:
        pa = d.kernel.translate(d.kernel.symbol("init_uts_ns")) + d.kernel.offsetof("uts_namespace", "name")
    assert pa // 4096 == changed[0] and page[pa % 4096:pa % 4096 + 5] == b"Linux"
    assert page[pa % 4096 + 65:pa % 4096 + 130] == b"X" * 65
    r = fastdump_run("verify", ours, raw)
    assert r.returncode == 0 and "1 equal to it but for" in r.stdout, r.stdout + r.stderr
