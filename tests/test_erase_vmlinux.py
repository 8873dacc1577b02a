"""--config with -x VMLINUX for globals the kernel's BTF has no VAR for (all but per-CPU ones on
Debian): the vmlinux's debug info (gdb's ``whatis``) gives their type, also when it is no struct.
As makedumpfile: a ``char *`` global erases the string it points to (at most 1024 bytes), ``size
N`` that many bytes there, a pointer to a struct the struct, ``nullify`` the pointer itself; a
NULL pointer skips the command; a scalar global can be a ``size``.  Without -x such a global
that holds a kernel address is refused ("may be a pointer ... give -x VMLINUX"): with -x it was
refused too (gdb's ``char *`` was not taken), so ``erase saved_command_line`` could not be done.

A made-up kernel (tests/test_erase.py's, BTF without VARs) with a vmlinux gcc builds from a
few C declarations of its globals; Debian's real kernels (the e2e fixtures) with their debug
vmlinux, the erased page read by libkdumpfile and compared with Debian's makedumpfile 1.7.6.
"""

import hashlib
import os
import struct
import subprocess
import sys

import pytest
from support import PAGE, kdumpfile_digests, need_tool, newest_makedumpfile
from test_erase import DATA, MiB, EraseVmcore, Secrets, pa

import fastdump
from fastdump.kernel import erase

from tests.e2e import fixtures as e2e_fixtures

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# -- a made-up kernel ----------------------------------------------------------------------
SCL = DATA + 0x9000                    # char *saved_command_line
SCL_LEN = SCL + 8                      # unsigned int saved_command_line_len
NULL_STR = SCL + 16                    # char *null_str = NULL
HIDDEN = SCL + 24                      # a pointer the vmlinux does not declare
UCMD = SCL + 32                        # unsigned char *ucmd: the command line too
STRING_AT = DATA + 0x14000 - 10        # the command line crosses a page boundary
CMDLINE = b"root=/dev/vda1 secret=hunter2 quiet"
CHAIN = DATA + 0x13000                 # secret_chain's first node (tests/test_erase.py)
HEAP = DATA + 0x10000

# The made-up kernel's globals as C: gdb reads their types from this object's DWARF (the
# structs by name only: their layout comes from the dump's BTF).
VMLINUX_C = """
struct cnode { char data[8]; struct cnode *next; };
struct item { unsigned long key; char name[16]; };
struct list_head { struct list_head *next, *prev; };
struct cnode *secret_chain;
struct item secret_items[4];
struct list_head secret_head;
char secret_buf[100];
void *lonely;
char *saved_command_line;
unsigned int saved_command_line_len;
const char *null_str;
unsigned char *ucmd;
"""


def made_up_kernel(path):
    s = Secrets(global_vars=False)
    s.more_symbols += [("saved_command_line", "D", SCL), ("saved_command_line_len", "D", SCL_LEN),
                       ("null_str", "D", NULL_STR), ("hidden_ptr", "D", HIDDEN),
                       ("ucmd", "D", UCMD)]
    s._put(SCL, struct.pack("<QIIQQQ", STRING_AT, len(CMDLINE), 0, 0, HEAP, STRING_AT))
    s._put(STRING_AT, CMDLINE + b"\0tail")
    EraseVmcore(s, ram_size=64 * MiB).write(path)


@pytest.fixture(scope="module")
def made_up(tmp_path_factory):
    d = tmp_path_factory.mktemp("erase_vmlinux")
    vmcore, src, vmlinux = str(d / "vmcore"), d / "vmlinux.c", str(d / "vmlinux")
    made_up_kernel(vmcore)
    src.write_text(VMLINUX_C)
    r = subprocess.run([need_tool("gcc"), "-g", "-c", "-o", vmlinux, str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    need_tool("gdb")
    return vmcore, vmlinux


def run(*args):
    return subprocess.run([sys.executable, "-m", "fastdump", *args], capture_output=True, text=True, cwd=TOP,
                          timeout=1200)


def resolved(vmcore, text, vmlinux):
    """(va, length, fill) of each piece, and the eraseinfo, that ``text`` resolves to."""
    with fastdump.open(vmcore) as d:
        got = erase.resolve(erase.parse(text), d.kernel, vmlinux=vmlinux)
        t = got.table
        pieces = [(t[i] * PAGE + t[i + 1], t[i + 2], t[i + 3]) for i in range(0, len(t), 4)]
    return pieces, got.eraseinfo.decode()


X, ZERO = ord("X"), 0


def pieces_of(va, n, fill=X):
    """What erasing ``n`` bytes at ``va`` gives: one piece per page."""
    out = []
    while n:
        k = min(n, PAGE - va % PAGE)
        out.append((pa(va), k, fill))
        va, n = va + k, n - k
    return out


VARS = {n: va for n, (va, _) in Secrets(global_vars=False).vars.items()}
N = len(CMDLINE)


@pytest.mark.parametrize("line,want,info", [
    # a char *: its string (makedumpfile's strlen), or ``size`` bytes of it, or the pointer
    ("erase saved_command_line", pieces_of(STRING_AT, N), f"erase saved_command_line size {N}"),
    ("erase saved_command_line size 4", pieces_of(STRING_AT, 4), "erase saved_command_line size 4"),
    ("erase saved_command_line size saved_command_line_len", pieces_of(STRING_AT, N),
     f"erase saved_command_line size {N}"),
    ("erase saved_command_line nullify", pieces_of(SCL, 8, ZERO), "erase saved_command_line nullify"),
    # as makedumpfile: only a char * is a string; an unsigned char * points to one byte
    ("erase ucmd", pieces_of(STRING_AT, 1), "erase ucmd size 1"),
    # a struct cnode *: the struct it points to (16 bytes), ``size`` bytes of it, a member through it
    ("erase secret_chain", pieces_of(CHAIN, 16), "erase secret_chain size 16"),
    ("erase secret_chain size 4", pieces_of(CHAIN, 4), "erase secret_chain size 4"),
    ("erase secret_chain.data", pieces_of(CHAIN, 8), "erase secret_chain.data size 8"),
    ("erase secret_chain nullify", pieces_of(VARS["secret_chain"], 8, ZERO), "erase secret_chain nullify"),
    # a void *: only with a size; an array: all of it
    ("erase lonely size 6", pieces_of(HEAP, 6), "erase lonely size 6"),
    ("erase secret_buf", pieces_of(VARS["secret_buf"], 100), "erase secret_buf size 100"),
])
def test_vmlinux_types_a_global_btf_has_no_var_for(made_up, line, want, info):
    vmcore, vmlinux = made_up
    assert resolved(vmcore, line + "\n", vmlinux) == (want, info + "\n")


def test_a_null_char_pointer_skips_the_command(made_up):
    vmcore, vmlinux = made_up
    assert resolved(vmcore, "erase null_str\nerase null_str size 8\n", vmlinux) == ([], "")


def test_a_loop_over_an_array_without_a_var(made_up):
    """Without -x refused (tests/test_erase.py); the vmlinux says struct item [4]."""
    vmcore, vmlinux = made_up
    pieces, text = resolved(vmcore, "for it in secret_items\n    erase it.name\nendfor\n", vmlinux)
    items = VARS["secret_items"]
    assert pieces == [p for i in range(4) for p in pieces_of(items + 24 * i + 8, 16)]
    assert text == "erase it.name size 16\n" * 4


@pytest.mark.parametrize("line,says", [
    ("erase lonely", "lonely is a void *: give size N or nullify"),
    ("erase saved_command_line size secret_buf", "size secret_buf is not an integer"),
    ("erase saved_command_line.x", "saved_command_line.x: cannot take member x of a non-struct"),
    ("erase hidden_ptr size 8", "hidden_ptr may be a pointer (it holds kernel address 0x%x) and neither the "
                                "kernel's BTF nor VMLINUX gives its type (gdb knows no symbol hidden_ptr)" % HEAP),
])
def test_what_the_vmlinux_cannot_resolve_is_one_line(made_up, tmp_path, line, says):
    vmcore, vmlinux = made_up
    conf = tmp_path / "c.conf"
    conf.write_text(line + "\n")
    r = run("-d", "0", "-x", vmlinux, "--config", str(conf), vmcore, str(tmp_path / "out"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert says.replace("VMLINUX", vmlinux) in r.stderr and f"{conf}:1" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "out")


def test_the_dump_holds_x_where_the_command_line_was(made_up, tmp_path):
    """The CLI: without -x refused (a pointer), with -x the string's bytes are 'X' in the dump
    libkdumpfile reads, the rest of the page the source's; verify accounts for them."""
    vmcore, vmlinux = made_up
    conf, out, nox = tmp_path / "c.conf", str(tmp_path / "dump"), str(tmp_path / "nox")
    conf.write_text("[vmlinux]\nerase saved_command_line\n")
    r = run("-d", "0", "--config", str(conf), vmcore, nox)
    assert r.returncode == 1 and "saved_command_line may be a pointer" in r.stderr and "give -x VMLINUX" in r.stderr
    r = run("-c", "-d", "0", "-x", vmlinux, "--config", str(conf), vmcore, out)
    assert r.returncode == 0, r.stderr
    with fastdump.open(vmcore) as d:
        want = {}
        for a, n, _ in pieces_of(STRING_AT, len(CMDLINE)):
            page = want.setdefault(a // PAGE, bytearray(d.read_phys(a // PAGE * PAGE, PAGE)))
            assert bytes(page[a % PAGE:a % PAGE + n]) in CMDLINE
            page[a % PAGE:a % PAGE + n] = b"X" * n
    got = kdumpfile_digests(out, 64 * MiB // PAGE)[1]
    assert len(want) == 2 and all(got[pfn] == hashlib.sha1(page).hexdigest() for pfn, page in want.items())
    with fastdump.open(out) as o:
        assert o.read_at(o.offset_eraseinfo, o.size_eraseinfo) == b"erase saved_command_line size %d\n" % len(CMDLINE)
    r = run("verify", out, vmcore)
    assert r.returncode == 0 and "2 differ only in %d erase-fill bytes" % len(CMDLINE) in r.stdout, r.stdout


# -- Debian's kernels (the e2e fixtures: built on demand, never skipped) -------------------------
@pytest.fixture(scope="module", params=e2e_fixtures.KEYS)
def real_dir(request):
    try:
        return request.param, e2e_fixtures.fixture_dir(request.param)
    except RuntimeError as e:
        pytest.fail(str(e))


REAL_CONFIG = "[vmlinux]\nerase saved_command_line\nerase kernel_kobj\nerase saved_command_line nullify\n"


def test_saved_command_line_is_erased_as_makedumpfile_does(real_dir, tmp_path):
    """``erase saved_command_line`` (a char *), ``erase kernel_kobj`` (a struct kobject *) and
    ``nullify``: the command line's bytes are 'X' (found through the pointer in the source), the
    kobject's too, the pointer is 0, nothing else in those pages changed; the eraseinfo and
    every page both dumps hold are makedumpfile's with the same -x and config.  (Not a pointer
    to a struct only its own file defines, as system_wq: makedumpfile 1.7.6 then finds no size
    in the DWARF it reads on 6.1 and silently erases nothing.)"""
    from tests.e2e import kernels
    key, outdir = real_dir
    raw = os.path.join(outdir, "vmcore.raw")
    vmlinux = kernels.debug_vmlinux(key, log=lambda *a: None)
    need_tool("gdb")
    conf = tmp_path / "erase.conf"
    conf.write_text(REAL_CONFIG)
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    r = run("-c", "-d", "31", "-x", vmlinux, "--config", str(conf), raw, ours)
    assert r.returncode == 0, r.stderr
    with fastdump.open(raw) as d:
        k, max_pfn = d.kernel, d.max_pfn
        scl = k.symbol("saved_command_line")
        line_va = struct.unpack("<Q", k.read(scl, 8))[0]
        line = k.read(line_va, 1024).split(b"\0")[0]
        assert b"crashkernel=" in line             # the guest's command line (tests/e2e/run.py)
        kobj_va = struct.unpack("<Q", k.read(k.symbol("kernel_kobj"), 8))[0]
        kobj_size = k.sizeof("kobject")
        want = {}
        for va, n, fill in ((line_va, len(line), b"X"), (kobj_va, kobj_size, b"X"), (scl, 8, b"\0")):
            at = k.translate(va)
            assert at // PAGE == k.translate(va + n - 1) // PAGE   # each lies in one page here
            page = want.setdefault(at // PAGE, bytearray(d.read_phys(at // PAGE * PAGE, PAGE)))
            assert page[at % PAGE:at % PAGE + n] != fill * n
            page[at % PAGE:at % PAGE + n] = fill * n
    with fastdump.open(ours) as o:
        info = o.read_at(o.offset_eraseinfo, o.size_eraseinfo)
    assert info == (b"erase saved_command_line size %d\nerase kernel_kobj size %d\nerase saved_command_line nullify\n"
                    % (len(line), kobj_size))
    got = kdumpfile_digests(ours, max_pfn)[1]
    assert {pfn: got.get(pfn) for pfn in want} == {pfn: hashlib.sha1(p).hexdigest() for pfn, p in want.items()}
    r = run("verify", ours, raw)
    with fastdump.open(raw) as d:       # the pointer's own bytes may hold a 0 already
        n = sum(a != b for pfn, p in want.items() for a, b in zip(p, d.read_phys(pfn * PAGE, PAGE)))
    assert r.returncode == 0 and f"{len(want)} differ only in {n} erase-fill bytes" in r.stdout, r.stdout + r.stderr
    m = subprocess.run(newest_makedumpfile() + ["-c", "-d", "31", "-x", vmlinux, "--config", str(conf), raw, theirs],
                       capture_output=True, text=True, timeout=1200)
    assert m.returncode == 0, (m.stdout + m.stderr)[-2000:]
    with fastdump.open(theirs) as t:
        assert t.read_at(t.offset_eraseinfo, t.size_eraseinfo) == info
    theirs_pages = kdumpfile_digests(theirs, max_pfn)[1]
    assert set(want) <= set(theirs_pages)
    assert [pfn for pfn in set(got) & set(theirs_pages) if got[pfn] != theirs_pages[pfn]] == []
