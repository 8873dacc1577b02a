"""Readers and the commands that print what a dump holds, against hostile input: text from
the dump that would drive the terminal, and API arguments of the wrong type or sign."""

import json
import struct
import subprocess
import sys

import pytest

import fastdump
from fastdump.errors import EXIT_ERROR, FastdumpError, UsageError
from fastdump.formats.kdump import SUB_HEADER
from support import fastdump_cli, one_line_error

#: what a terminal would obey: ESC (OSC and CSI sequences), BEL, CR, DEL (the dump's text is ASCII)
HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\r\x7f"
#: and in any str: a C1 CSI, a bidi override
HOSTILE_UNICODE = HOSTILE + "\x9b31m\u202e"
#: an OSRELEASE (VMCOREINFO values lose their surrounding whitespace)
KERNEL = "6.1\x1b]0;PWNED\x07\x1b[2J\x7f-x"


def assert_printable(text):
    """Every character a terminal shows as it is (line ends apart)."""
    for line in text.split("\n"):
        assert line.isprintable(), repr(line)


@pytest.fixture(scope="module")
def kdump_file(vmcore, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("hostile") / "d.kdump")
    fastdump_cli("-z", "-d", "1", vmcore, out)
    return out


@pytest.fixture(scope="module")
def hostile_kernel_vmcore(generated_vmcore):
    """A vmcore whose VMCOREINFO OSRELEASE holds escape sequences."""
    return generated_vmcore(ram_size=64 << 20, seed=3, osrelease=KERNEL)


# -- 1. info / estimate print nothing from the dump unescaped ---------------------------

def test_printable_helper():
    from fastdump.errors import printable
    plain = "erase init_uts_ns.name.nodename size 64 ~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./"
    assert printable(plain) == plain
    assert printable("") == ""
    out = printable("a" + HOSTILE_UNICODE + "\n\tz")
    assert out.isprintable() and out.startswith("a") and out.endswith("z")
    assert "\\x1b]0;PWNED\\x07\\x1b[2J\\r\\x7f\\x9b31m\\u202e" in out and "\\n\\t" in out
    assert printable(None) == "None" and printable(12) == "12"


def test_info_escapes_eraseinfo(kdump_file, tmp_path):
    b = bytearray(open(kdump_file, "rb").read())
    p = ("erase x size 1\n" + HOSTILE + "\n").encode()
    struct.pack_into("<QQ", b, 4096 + SUB_HEADER.offset("offset_eraseinfo"), len(b), len(p))
    b += p
    esc = tmp_path / "esc.kdump"
    esc.write_bytes(bytes(b))
    r = fastdump_cli("info", str(esc))
    assert_printable(r.stdout)
    assert "erased:      erase x size 1\n" in r.stdout
    assert "  erased:      \\x1b]0;PWNED\\x07\\x1b[2J" in r.stdout and "\\x7f" in r.stdout
    info = json.loads(fastdump_cli("info", "--json", str(esc)).stdout)   # JSON keeps the text itself
    assert info["eraseinfo"][1].startswith("\x1b]0;PWNED\x07")


def test_info_escapes_kernel_release(hostile_kernel_vmcore, tmp_path):
    for path in (hostile_kernel_vmcore, str(tmp_path / "d")):
        if path != hostile_kernel_vmcore:
            fastdump_cli("-z", "-d", "1", hostile_kernel_vmcore, path)
        r = fastdump_cli("info", path)
        assert_printable(r.stdout)
        assert "  kernel:      6.1\\x1b]0;PWNED\\x07\\x1b[2J\\x7f-x\n" in r.stdout
        assert json.loads(fastdump_cli("info", "--json", path).stdout)["kernel"] == KERNEL


def test_info_plain_output_unchanged(kdump_file):
    r = fastdump_cli("info", kdump_file)
    assert "  kernel:      6.1.0-fastdump-synthetic\n" in r.stdout and "\\" not in r.stdout


def test_estimate_output_printable(hostile_kernel_vmcore):
    r = fastdump_cli("estimate", hostile_kernel_vmcore)
    assert_printable(r.stdout)
    assert_printable(r.stderr)


# -- 2. the reader API: bad arguments are UsageError, a closed reader says so -------------

BAD_PFNS = ["1", None, 1.0, True, b"\x01", [1]]


@pytest.fixture(params=["elf", "kdump"])
def reader(request, vmcore, kdump_file):
    d = fastdump.open(vmcore if request.param == "elf" else kdump_file)
    yield d
    d.close()


def first_pfn(d):
    return next(iter(d.pfns()))


@pytest.mark.parametrize("bad", BAD_PFNS, ids=repr)
def test_read_pfn_bad_type(reader, bad):
    with pytest.raises(UsageError, match="pfn") as e:
        reader.read_pfn(bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bad", [-1, -(1 << 70)])
def test_read_pfn_negative(reader, bad):
    with pytest.raises(UsageError, match="pfn") as e:
        reader.read_pfn(bad)
    assert "0x1000" not in str(e.value)


@pytest.mark.parametrize("args,kwargs,what", [
    (("0", 16), {}, "address"), ((None, 16), {}, "address"), ((0.0, 16), {}, "address"),
    ((False, 16), {}, "address"), ((-1, 16), {}, "address"), ((-4096, 4096), {}, "address"),
    ((0, "16"), {}, "size"), ((0, 16.0), {}, "size"), ((0, None), {}, "size"), ((0, True), {}, "size"),
    ((0, -1), {}, "size"), ((1 << 64, 16), {}, "address"), (((1 << 64) - 8, 16), {}, "size"),
    ((0, 16), {"zero_fill": "yes"}, "zero_fill"), ((0, 16), {"zero_fill": 1}, "zero_fill"),
])
def test_read_phys_bad_arguments(reader, args, kwargs, what):
    with pytest.raises(UsageError, match=what):
        reader.read_phys(*args, **kwargs)


def test_good_reads_still_work(reader):
    pfn = first_pfn(reader)
    page = reader.read_pfn(pfn)
    assert len(page) == reader.page_size
    assert reader.read_phys(pfn * reader.page_size, 16) == page[:16]
    assert reader.read_phys(pfn * reader.page_size, 0) == b""
    assert reader.read_phys(pfn * reader.page_size, 16, zero_fill=True) == page[:16]
    with pytest.raises(FastdumpError) as e:      # not dumped: not a usage error
        reader.read_pfn(1 << 50)
    assert not isinstance(e.value, UsageError)


def test_read_after_close(reader):
    pfn = first_pfn(reader)
    reader.close()
    for call in (lambda: reader.read_pfn(pfn), lambda: reader.read_phys(pfn * reader.page_size, 16),
                 lambda: reader.read_phys(0, 16, zero_fill=True), lambda: reader.read_pfn(1 << 40)):
        with pytest.raises(FastdumpError, match="closed") as e:
            call()
        assert "Bad file descriptor" not in str(e.value) and "\n" not in str(e.value)


def test_read_after_with_block(vmcore, kdump_file):
    for path in (vmcore, kdump_file):
        with fastdump.open(path) as d:
            pfn = first_pfn(d)
        with pytest.raises(FastdumpError, match="closed"):
            d.read_pfn(pfn)


# -- 3. estimate names the file and what it is when it is not an ELF vmcore --------------

def test_estimate_on_kdump(kdump_file):
    r = fastdump_cli("estimate", kdump_file, check=False)
    err = one_line_error(r)
    assert r.returncode == EXIT_ERROR
    assert kdump_file in err and "kdump-compressed" in err and "ELF vmcore" in err and "/proc/vmcore" in err


def test_estimate_on_flattened(tmp_path):
    flat = tmp_path / "flat"
    flat.write_bytes(b"makedumpfile\0" + bytes(4096))
    r = fastdump_cli("estimate", str(flat), check=False)
    err = one_line_error(r)
    assert r.returncode == EXIT_ERROR and str(flat) in err and "flattened" in err and "ELF vmcore" in err


@pytest.mark.parametrize("content", [b"this is not a vmcore" * 10, b""], ids=["text", "empty"])
def test_estimate_on_other_file(tmp_path, content):
    junk = tmp_path / "junk"
    junk.write_bytes(content)
    r = fastdump_cli("estimate", str(junk), check=False)
    err = one_line_error(r)
    assert r.returncode == EXIT_ERROR and str(junk) in err and "ELF vmcore" in err


def test_estimate_missing_file(tmp_path):
    r = fastdump_cli("estimate", str(tmp_path / "nothing"), check=False)
    assert "cannot open" in one_line_error(r) and r.returncode == EXIT_ERROR


# -- 4. estimate without VMCOREINFO: a message about estimate, not about a dump level -----

def test_estimate_without_vmcoreinfo(vmcore, tmp_path):
    data = open(vmcore, "rb").read()
    at = data.index(b"VMCOREINFO\0")
    bare = tmp_path / "bare"
    bare.write_bytes(data[:at] + b"VMCOREINFX" + data[at + 10:])
    with fastdump.open(str(bare)) as d:
        assert d.vmcoreinfo is None
    for argv in (["estimate", str(bare)], ["estimate", "--json", str(bare)], ["--mem-usage", str(bare)]):
        r = fastdump_cli(*argv, check=False)
        err = one_line_error(r)
        assert r.returncode == EXIT_ERROR
        assert "dump level" not in err and "VMCOREINFO" in err and str(bare) in err


def test_an_error_line_shows_no_escape_sequence(tmp_path):
    """An error quoting what it was given (here a file name; elsewhere text from a dump)
    reaches the console escaped: one line, no terminal control."""
    name = str(tmp_path / "no\x1b]0;PWNED\x07such")
    r = subprocess.run([sys.executable, "-m", "fastdump", "-z", "-d", "1", name, str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "\x1b" not in r.stderr and "\\x1b]0;PWNED\\x07" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_dump_given_as_the_source_of_a_dump_is_named(tmp_path):
    """`fastdump -d 31 DUMP OUT` with a dump file (not a vmcore): one line naming the file and
    what it is, and `convert`, which reads it (it said only "not an ELF file (bad magic)")."""
    from fastdump.testing.generator import make_vmcore
    vm, kd = str(tmp_path / "vm"), str(tmp_path / "d.kdump")
    make_vmcore(vm, ram_size=16 << 20, seed=3)
    fastdump.dump(vm, kd, level=1, compress="zlib")
    for given, says in ((kd, "is a kdump-compressed dump, not a vmcore"),
                        (str(tmp_path / "junk"), "not an ELF file")):
        if given.endswith("junk"):
            open(given, "wb").write(b"hello world, not a vmcore" * 10)
        r = subprocess.run([sys.executable, "-m", "fastdump", "-z", "-d", "31", given, str(tmp_path / "out")],
                           capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and given in r.stderr and says in r.stderr, r.stderr
    assert "fastdump convert" in subprocess.run([sys.executable, "-m", "fastdump", "-d", "31", kd,
                                                 str(tmp_path / "out")], capture_output=True, text=True).stderr
