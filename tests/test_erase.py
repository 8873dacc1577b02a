"""makedumpfile's filter config (--config) on a synthetic kernel with kallsyms and BTF in its
memory: exactly the named bytes change (to 'X', or 0 for nullify), in every format and codec,
judged by libkdumpfile / pyelftools against the source page by page; the eraseinfo record is
makedumpfile's; bad lines are one line and exit 2; what cannot be resolved writes no dump.
Real kernels against Debian's makedumpfile: tests/e2e/test_erase_real.py."""

import hashlib
import json
import os
import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import PAGE, elf_pages, kdumpfile_digests

import fastdump
from fastdump.testing.generator import SyntheticVmcore, VmcoreSpec
from fastdump.testing.kernel_types import BtfBuilder, kallsyms_tables

MiB = 1 << 20
TEXT_VA = SyntheticVmcore.KERNEL_VIRT          # phys 16 MiB (phys_base 0)
PHYS = 16 * MiB
DATA = TEXT_VA + 0x1200000                     # our variables, from here
TABLES = TEXT_VA + 0x1000000
BTF_AT = TEXT_VA + 0x1100000
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pa(va):
    return va - TEXT_VA + PHYS


class Secrets:
    """The made-up kernel's variables, their BTF, and the bytes a config below must erase."""

    def __init__(self, *, cyclic=False, global_vars=True, rivals=(), uts_size=400, uts_extent=448):
        """``global_vars=False``: BTF has VARs for per-CPU variables only (as Debian's); ``rivals``:
        (name, size, offset of ``name``) of more structs with member path name.nodename;
        ``uts_extent``: where the next symbol after init_uts_ns lies."""
        self.cyclic = cyclic               # the via-list loops back to its 2nd node, never to its head
        self.uts_extent = uts_extent
        b = self.btf = BtfBuilder()
        u8, u32, u64 = b.int("char", 1), b.int("unsigned int", 4), b.int("long unsigned int", 8)
        c100, c50, c16, c8, c65 = (b.array(u8, n, u32) for n in (100, 50, 16, 8, 65))
        uts_name = b.struct("new_utsname", 390, [(f, c65, 8 * 65 * i) for i, f in enumerate(
            ("sysname", "nodename", "release", "version", "machine", "domainname"))])
        uts = b.struct("uts_namespace", uts_size, [("kref", u32, 0), ("name", uts_name, 32)])
        for rival, size, at in rivals:
            b.struct(rival, size, [("name", uts_name, 8 * at)])
        void_p = b.ptr(0)
        s1 = b.struct("s1", 88, [("name", b.ptr(u8), 0), ("addr1", void_p, 64), ("addr2", void_p, 128),
                                 ("buffer", c50, 192), ("len", u64, 640)])
        item = b.struct("item", 24, [("key", u64, 0), ("name", c16, 64)])
        items = b.array(item, 4, u32)
        lh_p = b.ptr(b.count + 2)              # points to the struct defined next
        lh = b.struct("list_head", 16, [("next", lh_p, 0), ("prev", lh_p, 64)])
        b.struct("node", 24, [("data", c8, 0), ("link", lh, 64)])
        cnode_p = b.ptr(b.count + 2)
        cnode = b.struct("cnode", 16, [("data", c8, 0), ("next", cnode_p, 64)])
        assert b.count == cnode
        self.vars = {}                         # name: (va, type id)
        at = DATA + PAGE - 30                  # secret_buf crosses a page boundary
        for name, tid, size in (("secret_buf", c100, 100), ("secret_s1", s1, 88), ("secret_items", items, 96),
                                ("secret_head", lh, 16), ("secret_chain", cnode_p, 8), ("init_uts_ns", uts, 400),
                                ("lonely", void_p, 8)):
            self.vars[name] = (at if name != "init_uts_ns" else TEXT_VA + SyntheticVmcore.UTS_OFFSET, tid)
            at += (size + 63) & ~63
        self.vars["lonely"] = (DATA + 0x8000, void_p)     # the only non-zero bytes of its page
        if global_vars:
            b.datasec(".data", 4096, [(b.var(n, tid), 0, 8) for n, (_, tid) in self.vars.items()])
        b.datasec(".data..percpu", 4096, [(b.var("a_percpu_var", u64), 0x1000, 8)])
        self.writes, self.erased = [], []      # (va, bytes); (va, length, fill)
        self.more_symbols = []                 # (name, type, va) kallsyms lists besides the variables
        self._lay_out()

    def _put(self, va, data):
        self.writes.append((va, data))

    def _lay_out(self):
        v = {n: va for n, (va, _) in self.vars.items()}
        heap = DATA + 0x10000
        self._put(v["secret_buf"], b"SECRET-BUF-" * 9 + b"X")
        self.erased.append((v["secret_buf"], 100, ord("X")))
        name_va, a1, a2 = heap, heap + 0x100, heap + 0x1000 - 100    # addr2's data crosses a page
        self._put(name_va, b"Hello World\0")
        self._put(a1, b"A1DATA" * 10)
        self._put(a2, bytes(range(1, 201)))
        self._put(v["secret_s1"], struct.pack("<QQQ", name_va, a1, a2) + b"B" * 50 + bytes(6) + struct.pack("<Q", 200))
        self.erased += [(v["secret_s1"] + 24, 25, ord("X")), (name_va, 11, ord("X")),
                        (v["secret_s1"] + 8, 8, 0), (a2, 200, ord("X"))]
        for i in range(4):
            self._put(v["secret_items"] + 24 * i, struct.pack("<Q", 0x1111 * (i + 1)) + b"item-name-%d-....." % i)
            self.erased.append((v["secret_items"] + 24 * i + 8, 16, ord("X")))
        nodes = [heap + 0x2000 + 0x40 * i for i in range(3)]
        links = [n + 8 for n in nodes]
        ring = [v["secret_head"]] + links
        for i, at in enumerate(ring):
            self._put(at, struct.pack("<QQ", ring[(i + 1) % len(ring)], ring[i - 1]))
        for i, n in enumerate(nodes):
            self._put(n, b"node-%d.." % i)
            self.erased.append((n, 8, ord("X")))
        chain = [heap + 0x3000 + 0x40 * i for i in range(3)]
        self._put(v["secret_chain"], struct.pack("<Q", chain[0]))
        for i, c in enumerate(chain):
            last = chain[1] if self.cyclic else 0
            self._put(c, b"cnode-%d." % i + struct.pack("<Q", chain[i + 1] if i + 1 < len(chain) else last))
            self.erased.append((c, 4, ord("X")))
        self.erased.append((v["init_uts_ns"] + 4 + 65, 65, ord("X")))   # nodename (utsname at +4 here)
        self._put(v["lonely"], struct.pack("<Q", heap) + bytes(PAGE - 8))
        self.erased.append((v["lonely"], 8, 0))

    def symbols(self):
        syms = [("_stext", "T", TEXT_VA), ("init_top_pgt", "D", TEXT_VA + SyntheticVmcore.PGD_OFFSET),
                ("__start_BTF", "R", BTF_AT), ("__stop_BTF", "R", BTF_AT + len(self.btf.blob()))]
        syms += [(n, "D", va) for n, (va, _) in self.vars.items()]
        syms += [("uts_next", "D", self.vars["init_uts_ns"][0] + self.uts_extent)]
        syms += [("__per_cpu_start", "D", 0), ("a_percpu_var", "D", 0x1000)] + self.more_symbols
        return sorted(syms, key=lambda s: s[2])


CONFIG = """\
# the man page's example, on the made-up kernel's variables
[vmlinux]
erase secret_buf
erase secret_s1.buffer size 25
erase secret_s1.name
erase secret_s1.addr1 nullify
erase secret_s1.addr2 size secret_s1.len
erase init_uts_ns.name.nodename
for it in secret_items
    erase it.name
endfor
for n in secret_head within node:link
    erase n.data
endfor
for c in secret_chain via next
    erase c.data size 4
endfor
erase lonely nullify
"""


class EraseVmcore(SyntheticVmcore):
    def __init__(self, secrets, layout=None, **spec):
        self.secrets = secrets
        self.tables = kallsyms_tables(secrets.symbols(), base=TEXT_VA, table_va=TABLES, rule="absolute-percpu")
        super().__init__(VmcoreSpec(**spec), layout=layout)

    def kernel_image_lines(self):
        # utsname sits 4 bytes into init_uts_ns here, as OFFSET(uts_namespace.name)=4 says: BTF must agree
        return super().kernel_image_lines() + [f"SYMBOL({k})={va:x}" for k, (va, _) in self.tables.items()]

    def kernel_image_writes(self):
        writes = super().kernel_image_writes()
        writes += [(pa(va), data) for va, data in self.tables.values()]
        writes += [(pa(BTF_AT), self.secrets.btf.blob())]
        return writes + [(pa(va), data) for va, data in self.secrets.writes]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("erase")
    s = Secrets()
    path = str(d / "vmcore")
    EraseVmcore(s, ram_size=64 * MiB).write(path)
    conf = d / "erase.conf"
    conf.write_text(CONFIG)
    with fastdump.open(path) as src:
        pages = {}
        for va, n, fill in s.erased:
            for i in range(n):
                a = pa(va + i)
                page = pages.setdefault(a // PAGE, bytearray(src.read_phys(a // PAGE * PAGE, PAGE)))
                page[a % PAGE] = fill
    return {"V": path, "conf": str(conf), "dir": d, "secrets": s, "expect": pages}


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fastdump", *args], capture_output=True, text=True, cwd=cwd or TOP,
                          timeout=600)


@pytest.fixture(scope="module")
def source(world):
    """The same dump without --config, as libkdumpfile reads it."""
    out = str(world["dir"] / "plain")
    r = run("-c", "-d", "0", world["V"], out)
    assert r.returncode == 0, r.stderr
    return kdumpfile_digests(out, 64 * MiB // PAGE)[1]


def check_pages(world, source, got, *, level=0):
    """Every page the dump holds is the source's, except the erased ones: the source's with
    exactly the named bytes set to the fill."""
    expect = {pfn: hashlib.sha1(bytes(p)).hexdigest() for pfn, p in world["expect"].items()}
    assert set(expect) <= set(got)
    changed = {pfn for pfn in got if got[pfn] != source[pfn]}
    assert changed == set(expect)
    for pfn in expect:
        assert got[pfn] == expect[pfn], f"pfn {pfn:#x}"
    assert len(got) > 1000 if level == 0 else True


@pytest.mark.parametrize("codec", ["none", "zlib", "lzo", "snappy", "zstd"])
def test_kdump_erases_exactly_the_named_bytes(world, source, tmp_path, codec):
    out = str(tmp_path / "dump")
    r = run("--compress", codec, "-d", "0", "--config", world["conf"], world["V"], out)
    assert r.returncode == 0, r.stderr
    check_pages(world, source, kdumpfile_digests(out, 64 * MiB // PAGE)[1])
    with fastdump.open(out) as d:
        info = d.read_at(d.offset_eraseinfo, d.size_eraseinfo).decode()
    lines = info.splitlines()
    assert lines[:6] == ["erase secret_buf size 100", "erase secret_s1.buffer size 25", "erase secret_s1.name size 11",
                         "erase secret_s1.addr1 nullify", "erase secret_s1.addr2 size 200",
                         "erase init_uts_ns.name.nodename size 65"]
    assert lines[6:] == (["erase it.name size 16"] * 4 + ["erase n.data size 8"] * 3 + ["erase c.data size 4"] * 3
                         + ["erase lonely nullify"])
    r = run("verify", out)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run("info", out)
    assert "  erased:      erase init_uts_ns.name.nodename size 65\n" in r.stdout, r.stdout


@pytest.mark.parametrize("read", ["--mmap", "--non-mmap"])
def test_pages_read_through_a_mapping_are_erased_in_a_copy(world, source, tmp_path, read):
    """--mmap compresses pages straight from the mapping (/proc/vmcore's default): an erased
    page is copied out first, and the source file is left as it was."""
    out = str(tmp_path / "dump")
    with open(world["V"], "rb") as f:
        before = hashlib.sha1(f.read()).hexdigest()
    assert run(read, "-z", "-d", "0", "--config", world["conf"], world["V"], out).returncode == 0
    check_pages(world, source, kdumpfile_digests(out, 64 * MiB // PAGE)[1])
    with open(world["V"], "rb") as f:
        assert hashlib.sha1(f.read()).hexdigest() == before


def test_zero_detection_sees_the_erased_page(world, source, tmp_path):
    """The page that is zero only after ``nullify`` is stored as a zero page at -d 1, as
    makedumpfile tests for zeros after filtering."""
    out = str(tmp_path / "dump")
    assert run("-z", "-d", "1", "--config", world["conf"], world["V"], out).returncode == 0
    got = kdumpfile_digests(out, 64 * MiB // PAGE)[1]
    check_pages(world, source, got, level=1)
    pfn = pa(world["secrets"].vars["lonely"][0]) // PAGE
    with fastdump.open(out) as d:
        assert d.descriptor(pfn).offset == d.zero_page_offset()


def test_elf_flat_and_split_erase_the_same(world, source, tmp_path):
    elf = str(tmp_path / "elf")
    assert run("-E", "-d", "0", "--config", world["conf"], world["V"], elf).returncode == 0
    pages = elf_pages(elf)
    check_pages(world, source, {p: hashlib.sha1(b).hexdigest() for p, b in pages.items() if p < 64 * MiB // PAGE})
    flat = tmp_path / "flat"
    with open(flat, "wb") as f:
        r = subprocess.run([sys.executable, "-m", "fastdump", "-F", "-c", "-d", "0", "--config", world["conf"],
                            world["V"]], stdout=f, stderr=subprocess.PIPE, cwd=TOP, timeout=600)
    assert r.returncode == 0, r.stderr
    with open(flat, "rb") as f:
        assert subprocess.run([sys.executable, "-m", "fastdump", "-R", str(tmp_path / "rebuilt")], stdin=f,
                              cwd=TOP, timeout=600).returncode == 0
    check_pages(world, source, kdumpfile_digests(str(tmp_path / "rebuilt"), 64 * MiB // PAGE)[1])
    parts = [str(tmp_path / "p1"), str(tmp_path / "p2")]
    assert run("--split", "-c", "-d", "0", "--config", world["conf"], world["V"], *parts).returncode == 0
    joined = str(tmp_path / "joined")
    assert run("--reassemble", *parts, joined).returncode == 0
    check_pages(world, source, kdumpfile_digests(joined, 64 * MiB // PAGE)[1])
    same_eraseinfo_as_makedumpfile_sees(joined, tmp_path)     # written after the data, named by the header
    assert "  erased:      erase lonely nullify\n" in run("info", joined).stdout
    r = run("verify", joined, world["V"])
    assert r.returncode == 0, r.stdout + r.stderr


def same_eraseinfo_as_makedumpfile_sees(path, tmp_path):
    """``path``'s eraseinfo is the config's record, and makedumpfile re-filtering it copies it."""
    from support import makedumpfile
    again = str(tmp_path / "again")
    r = makedumpfile("-c", "-d", "1", path, again)
    assert r.returncode == 0, r.stdout + r.stderr
    with fastdump.open(path) as a, fastdump.open(again) as b:
        info = a.read_at(a.offset_eraseinfo, a.size_eraseinfo)
        assert info == b.read_at(b.offset_eraseinfo, b.size_eraseinfo)
    assert info.startswith(b"erase secret_buf size 100\n") and info.endswith(b"erase lonely nullify\n")
    return again


@pytest.mark.parametrize("line,says", [
    ("erase", "erase needs a symbol"),
    ("erase a..b", "bad symbol"),
    ("erase a size", "size N[K|M]"),
    ("erase a size 0", "out of range"),
    ("erase a nullify now", "size N[K|M]"),
    ("remove a", "expected erase, for or endfor"),
    ("for x in", "for ID in LIST"),
    ("for x in a via", "for ID in LIST"),
    ("for x in a within node", "via NEXT or within STRUCT:MEMBER"),
    ("endfor", "endfor without for"),
    ("for x in a\nerase x", "for without endfor"),
    ("for x in a\nendfor", "empty for loop"),
    ("[mymodule]\nerase a", "module section [mymodule] is not supported"),
])
def test_bad_lines_are_one_line_naming_file_and_line(world, tmp_path, line, says):
    refused(world, tmp_path, "[vmlinux]\n" + line + "\n", status=2, says=says, where=":")


def test_a_config_longer_than_a_mib_is_refused_not_cut(world, tmp_path):
    """Past 1 MiB the commands would be lost: the file is refused whole."""
    refused(world, tmp_path, "#" * (1 << 20) + "\nerase secret_buf\n", status=2, says="longer than 1048576 bytes",
            where="")


def refused(world, tmp_path, config, *, status, says, where):
    """A run with ``config`` fails with ``status`` and one line holding ``says`` and the config's
    ``FILE{where}``, and leaves no file at all beside the config (no dump, temporary or part)."""
    conf = tmp_path / "bad.conf"
    conf.write_text(config)
    r = run("-d", "0", "--config", str(conf), world["V"], str(tmp_path / "out"))
    assert r.returncode == status and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert says in r.stderr and f"{conf}{where}" in r.stderr, r.stderr
    assert os.listdir(tmp_path) == ["bad.conf"]


@pytest.mark.parametrize("line,says", [
    ("erase no_such_symbol", "no_such_symbol"),
    ("erase secret_s1.nope", "no member 'nope'"),
    ("erase _stext.x", "no struct type with member path x fits _stext"),
    ("erase secret_s1.addr1", "void *: give size N or nullify"),
    ("erase secret_buf nullify", "not a pointer"),
    ("erase secret_buf size secret_items", "is not an integer"),
    ("erase a_percpu_var size 8", "per-CPU variable"),
])
def test_what_cannot_be_resolved_writes_no_dump(world, tmp_path, line, says):
    refused(world, tmp_path, line + "\n", status=1, says=says, where=":1")


def test_a_null_pointer_on_the_way_skips_the_command(world, tmp_path):
    """secret_chain's third node ends the list (next is NULL): nothing lies behind it, so the
    commands (and the loop) through it are skipped and recorded nowhere, as makedumpfile does,
    and the rest is erased."""
    end = "secret_chain.next.next.next"
    text = f"erase {end}.data\nerase {end}\nerase {end}.data nullify\nfor c in {end} via next\n" \
           "    erase c.data\nendfor\nerase secret_buf\n"
    got = resolve_in(world["V"], text)
    assert got.eraseinfo == b"erase secret_buf size 100\n" and got.nbytes == 100
    conf = tmp_path / "c.conf"
    conf.write_text(text)
    r = run("-d", "0", "--config", str(conf), world["V"], str(tmp_path / "out"))
    assert r.returncode == 0 and os.path.exists(tmp_path / "out"), r.stderr


def test_the_kernel_log_beside_the_dump_is_erased_too(tmp_path):
    """A secret a config erases that lies in the kernel log: vmcore-dmesg.txt beside a directory
    target's dump reads the log as the dump holds it (the dump's own log shows 'X' there too)."""
    from fastdump.testing.printk_layout import Msg, PrintkLayout

    def kernel_log():
        return PrintkLayout(None, kind="plain", messages=[Msg(b"hello", 1000), Msg(b"the password is hunter2", 2000)])
    probe = kernel_log()
    SyntheticVmcore(VmcoreSpec(ram_size=64 * MiB), layout=probe)     # bound to the same memory: the log's place
    probe._build()
    at, buf = probe.buffers["log_buf"]
    s = Secrets()
    s.more_symbols.append(("log_secret", "D", TEXT_VA + at + bytes(buf).index(b"hunter2") - PHYS))
    path, conf, crash = str(tmp_path / "vmcore"), tmp_path / "c.conf", tmp_path / "crash"
    EraseVmcore(s, layout=kernel_log(), ram_size=64 * MiB).write(path)
    conf.write_text("erase log_secret size 7\n")
    crash.mkdir()
    r = run("-d", "0", "--config", str(conf), path, str(crash) + "/")
    assert r.returncode == 0, r.stderr
    (sub,) = crash.iterdir()
    log = (sub / "vmcore-dmesg.txt").read_text()
    assert "the password is XXXXXXX" in log and "hunter2" not in log, log
    assert run("dmesg", str(sub / "vmcore")).stdout == log
    # the log alone, with the same config (makedumpfile --dump-dmesg ignores --config): erased too
    for how in (["--dump-dmesg", "--config", str(conf), path], ["dmesg", "--config", str(conf), path]):
        r = run(*how)
        assert r.returncode == 0 and r.stdout == log, how + [r.stderr]


def test_a_directory_target_names_no_erased_nodename(world, tmp_path):
    """The dump's directory is named after the host: not 'XXXX...' nor the secret when the config
    erases the nodename, but "host"."""
    names = []
    for config in ([], ["--config", world["conf"]]):
        crash = tmp_path / str(len(names))
        crash.mkdir()
        r = run("-d", "31", *config, world["V"], str(crash) + "/")
        assert r.returncode == 0, r.stderr
        names += [p.name.rsplit("-", 4)[0] for p in crash.iterdir()]    # HOST-YYYY-MM-DD-HH:MM:SS
    assert names == ["fastdump-synthetic", "host"]


def test_a_kernel_without_kallsyms_is_one_line(tmp_path):
    path = str(tmp_path / "vmcore")
    SyntheticVmcore(VmcoreSpec(ram_size=64 * MiB)).write(path)
    conf = tmp_path / "c.conf"
    conf.write_text("erase init_uts_ns size 8\n")
    r = run("-d", "0", "--config", str(conf), path, str(tmp_path / "out"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "kallsyms" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "out")


def test_verify_counts_erased_pages_and_holds_them_to_the_eraseinfo(world, tmp_path):
    """verify against the source: the erased pages are not "equal to the source" and not
    corrupt; a dump whose eraseinfo records fewer bytes than differ fails."""
    from fastdump.commands.verify import verify
    for fmt, left_out in (("kdump", 0), ("elf", 1)):     # -E -d 1 may leave the nullified (zero) page out
        out = str(tmp_path / fmt)
        assert run("--format", fmt, "-d", "1", "--config", world["conf"], world["V"], out).returncode == 0
        r = verify(out, world["V"])
        assert r["ok"], r["verdict"]
        assert len(world["expect"]) - left_out <= r["pages_erased"] <= len(world["expect"])
        assert "erase-fill bytes, within what the eraseinfo records; their positions are not checked" in r["verdict"]
    with fastdump.open(str(tmp_path / "kdump")) as d:
        at, size = d.offset_eraseinfo, d.size_eraseinfo
    with open(tmp_path / "kdump", "r+b") as f:          # one record says less than was erased
        f.seek(at)
        text = f.read(size).replace(b"size 100", b"size 001")
        f.seek(at)
        f.write(text)
    r = verify(str(tmp_path / "kdump"), world["V"])
    assert not r["ok"] and any("eraseinfo records only" in p for p in r["problems"]), r["problems"]


def test_verify_excuses_zeros_only_for_nullify_lines(world, tmp_path):
    """A page the dump holds as zeros where the source has data is no erasure when the eraseinfo
    has no nullify line, however much of its 'X' allowance is unused (here: all of it, as the
    source already holds 'X' where secret_buf is erased)."""
    from fastdump.commands.verify import verify
    s = Secrets()
    s._put(s.vars["secret_buf"][0], b"X" * 100)
    s._put(DATA + 0x8800, b"Q" * 50)                  # in the page of lonely: zeros in world's vmcore
    other = str(tmp_path / "other")
    EraseVmcore(s, ram_size=64 * MiB).write(other)
    conf, out = tmp_path / "c.conf", str(tmp_path / "dump")
    conf.write_text("erase secret_buf\n")
    assert run("-d", "0", "--config", str(conf), world["V"], out).returncode == 0
    r = verify(out, other)
    says = "50 bytes differ from the source as 0 (nullify) erase fill, but the eraseinfo records only 0"
    assert not r["ok"] and says in r["problems"], r["problems"]


def test_elf_dump_carries_the_eraseinfo_note(world, tmp_path):
    out = str(tmp_path / "elf")
    assert run("-E", "-d", "0", "--config", world["conf"], world["V"], out).returncode == 0
    with fastdump.open(out) as d:
        notes = [n for n in d.notes if n.name == b"ERASEINFO"]
    assert len(notes) == 1 and notes[0].type == 0
    assert notes[0].desc.decode().startswith("erase secret_buf size 100\nerase secret_s1.buffer size 25\n")
    assert "  erased:      erase lonely nullify\n" in run("info", out).stdout


def test_makedumpfile_refilters_and_keeps_the_eraseinfo(world, source, tmp_path):
    """makedumpfile reads the erased dump and copies its eraseinfo into its own output."""
    out = str(tmp_path / "dump")
    assert run("-c", "-d", "0", "--config", world["conf"], world["V"], out).returncode == 0
    got = kdumpfile_digests(same_eraseinfo_as_makedumpfile_sees(out, tmp_path), 64 * MiB // PAGE)[1]
    check_pages(world, source, got, level=1)


@pytest.mark.parametrize("fmt", [[], ["-E"]])
def test_an_erased_secret_is_nowhere_in_the_dump_and_counted(world, source, tmp_path, fmt):
    """The kdump header's utsname is read through the same erase as the pages: the erased nodename
    is in no byte of the file (makedumpfile leaves it in the header); the statistics count it."""
    secret = b"\0fastdump-synthetic\0"         # the nodename (the release ends in it too)
    plain, out, js = (str(tmp_path / n) for n in ("plain", "dump", "stats.json"))
    assert run(*fmt, "--compress", "none", "-d", "0", world["V"], plain).returncode == 0
    with open(plain, "rb") as f:
        assert secret in f.read()                  # the test can fail: the secret is in the unerased dump
    r = run(*fmt, "--compress", "none", "-d", "0", "--config", world["conf"], "--stats-json", js, world["V"], out)
    assert r.returncode == 0, r.stderr
    with open(out, "rb") as f:
        assert secret not in f.read()
    with open(js) as f:
        stats = json.load(f)
    nbytes = sum(n for _, n, _ in world["secrets"].erased)
    pieces = sum(len({pa(va + i) // PAGE for i in range(n)}) for va, n, _ in world["secrets"].erased)
    assert (stats["erased_bytes"], stats["erased_pieces"]) == (nbytes, pieces)
    if not fmt:
        check_pages(world, source, kdumpfile_digests(out, 64 * MiB // PAGE)[1])


def without_vars(tmp_path, **kw):
    """A made-up kernel whose BTF, as Debian's, has no VAR for ordinary globals."""
    path = str(tmp_path / "vmcore")
    EraseVmcore(Secrets(global_vars=False, **kw), ram_size=64 * MiB).write(path)
    return path


def resolve_in(path, text):
    from fastdump.kernel import erase
    with fastdump.open(path) as d:
        return erase.resolve(erase.parse(text), d.kernel)


@pytest.mark.parametrize("rivals", [(), [("same_layout", 400, 4)], [("too_big", 4096, 64)]])
def test_a_globals_type_is_proven_by_its_member_path(world, tmp_path, rivals):
    """No VAR: the one struct with path name.nodename (or all that lay it out alike, or all that fit
    before the next symbol) gives the type; the erase is the one the VAR gives.  A list head
    whose pointers the within-loop follows needs only its address."""
    text = ("erase init_uts_ns.name.nodename\nerase init_uts_ns.name.domainname size 8\n"
            "for n in secret_head within node:link\n    erase n.data\nendfor\n")
    got = resolve_in(without_vars(tmp_path, rivals=rivals), text)
    want = resolve_in(world["V"], text)
    assert list(got.table) == list(want.table) and got.eraseinfo == want.eraseinfo
    assert got.nbytes == 65 + 8 + 3 * 8


POINTER = "secret_chain may be a pointer (it holds kernel address 0x%x) and the kernel's BTF does not give its " \
          "type (no VAR for it): give -x VMLINUX" % (DATA + 0x13000)


@pytest.mark.parametrize("kw,line,says", [
    ({"rivals": [("other_ns", 400, 64)]}, "erase init_uts_ns.name.nodename",
     "init_uts_ns.name.nodename is ambiguous without -x: 2 struct types "
     "have member path name.nodename laid out differently; give -x VMLINUX"),
    ({"uts_extent": 392}, "erase init_uts_ns.name.nodename",
     "no struct type with member path name.nodename fits init_uts_ns (1 larger than its 392 bytes); give -x VMLINUX"),
    # secret_chain is a struct cnode *: makedumpfile erases what it points to, not its own 8 bytes
    ({}, "erase secret_chain size 4", POINTER),
    ({}, "erase secret_chain.data", POINTER),
])
def test_an_unproven_type_is_refused_in_one_line(tmp_path, kw, line, says):
    path = without_vars(tmp_path, **kw)
    conf = tmp_path / "c.conf"
    conf.write_text(line + "\n")
    r = run("-d", "0", "--config", str(conf), path, str(tmp_path / "out"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert says in r.stderr and f"{conf}:1" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "out")


def test_a_loop_over_a_global_without_a_var_is_one_line(tmp_path):
    path = without_vars(tmp_path)
    conf = tmp_path / "c.conf"
    conf.write_text("for it in secret_items\n    erase it.name\nendfor\n")
    r = run("-d", "0", "--config", str(conf), path, str(tmp_path / "out"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "does not give the type of secret_items" in r.stderr and f"{conf}:1" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "out")


def test_a_list_that_loops_short_of_its_head_is_an_error(tmp_path):
    path = str(tmp_path / "vmcore")
    EraseVmcore(Secrets(cyclic=True), ram_size=64 * MiB).write(path)
    conf = tmp_path / "c.conf"
    conf.write_text("for c in secret_chain via next\n    erase c.data\nendfor\n")
    r = run("-d", "0", "--config", str(conf), path, str(tmp_path / "out"))
    assert r.returncode == 1 and f"{conf}:1" in r.stderr and "loops" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "out")


WORDS = ["erase", "size", "nullify", "for", "in", "via", "within", "endfor", "[vmlinux]", "[mod]", "a", "a.b",
         "x:y", "12", "1K", "0", "2M", "#", ".", "..", "\x00", "é", "[", "]"]


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(st.lists(st.lists(st.sampled_from(WORDS) | st.text(max_size=8), max_size=6).map(" ".join), max_size=12))
def test_any_text_parses_or_is_one_config_error(lines):
    from fastdump.kernel.erase import ConfigError, parse
    try:
        parse("\n".join(lines), "f")
    except ConfigError as e:
        assert str(e).startswith("f:") and "\n" not in str(e)


@pytest.mark.parametrize("start,to", [("kdump", "kdump"), ("kdump", "elf"), ("elf", "kdump"), ("elf", "elf")])
def test_convert_carries_the_eraseinfo(world, tmp_path, start, to):
    """A dump made from an erased dump records the erasure too (makedumpfile copies it when
    re-filtering), once, and verifies against the source."""
    first, out = str(tmp_path / "first"), str(tmp_path / "out")
    assert run("--format", start, "-d", "0", "--config", world["conf"], world["V"], first).returncode == 0
    r = run("convert", "-d", "1", "--format", to, first, out)
    assert r.returncode == 0, r.stderr
    lines = run("info", out).stdout.count("  erased:      ")
    assert lines == CONFIG.count("erase") + 3 + 2 + 2       # the loop bodies ran 4, 3 and 3 times
    r = run("verify", out, world["V"])
    assert r.returncode == 0 and "their positions are not checked" in r.stdout, r.stdout + r.stderr


def test_elf_to_kdump_to_elf_records_the_erasure_once(world, tmp_path):
    """The kdump step keeps the ELF's notes (its ERASEINFO note among them) beside its eraseinfo:
    the ELF made from it holds one ERASEINFO note, not that one and the eraseinfo's too."""
    first, mid, out = (str(tmp_path / n) for n in ("first", "mid", "out"))
    assert run("-E", "-d", "0", "--config", world["conf"], world["V"], first).returncode == 0
    assert run("convert", "-d", "0", "--format", "kdump", first, mid).returncode == 0
    r = run("convert", "-d", "0", "--format", "elf", mid, out)
    assert r.returncode == 0, r.stderr
    with fastdump.open(first) as a, fastdump.open(out) as b:
        want = [n.desc for n in a.notes if n.name == b"ERASEINFO"]
        assert [n.desc for n in b.notes if n.name == b"ERASEINFO"] == want and len(want) == 1


def test_verify_holds_both_copies_of_a_page_to_the_eraseinfo():
    """An ELF dump stores the kernel text twice: a page whose two copies were erased
    differently (4000 'X' in one, 10 in the other) was counted by whichever copy came
    last, and 10 bytes passed a budget of 10.  Now the larger count is held to the budget
    and the disagreement is a problem of its own."""
    from fastdump.commands.verify import _Erased
    want = bytes(4096)
    once, more = b"X" * 10 + bytes(4086), b"X" * 4000 + bytes(96)
    for order in ((more, once), (once, more)):
        erased = _Erased({ord("X"): 10, 0: 0}, source="vmcore")
        assert all(erased.accounts_for(0x1003, got, want) for got in order)
        result, problems = {}, set()
        erased.report(result, problems)
        assert result["bytes_erased"] == 4000
        assert any("erased differently in their two copies (pfn 0x1003)" in p for p in problems), problems
        assert any("4000 bytes differ from the source as X erase fill" in p for p in problems), problems
