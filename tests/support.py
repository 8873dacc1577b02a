"""Independent readers and real tools for checking fastdump's output.

Nothing here uses fastdump's own parsing: the source is read with pyelftools,
dumps with libkdumpfile (Debian's python3-libkdumpfile under /usr/bin/python3),
makedumpfile and gdb.  A missing tool fails the test with the reason.
"""

import contextlib
import hashlib
import os
import re
import signal
import shutil
import subprocess
import sys

from elftools.elf.elffile import ELFFile

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEM_PYTHON = "/usr/bin/python3"
PAGE = 4096


def need_tool(path_or_name):
    found = shutil.which(path_or_name) or (os.path.exists(path_or_name) and path_or_name)
    assert found, f"{path_or_name} is not installed: run `bash .ci/setup-host` (it installs every test tool)"
    return found


def elf_pages(path, *, zero_fill_partial=True):
    """{pfn: bytes} of every page any PT_LOAD stores (p_filesz), read with pyelftools."""
    pages = {}
    with open(path, "rb") as f:
        e = ELFFile(f)
        for seg in e.iter_segments():
            if seg["p_type"] != "PT_LOAD" or not seg["p_filesz"]:
                continue
            data = seg.data()
            start = seg["p_paddr"]
            pfn = start // PAGE
            while pfn * PAGE < start + len(data):
                lo, hi = max(start, pfn * PAGE), min(start + len(data), (pfn + 1) * PAGE)
                page = bytearray(pages.get(pfn, bytes(PAGE)))
                page[lo - pfn * PAGE:hi - pfn * PAGE] = data[lo - start:hi - start]
                pages[pfn] = bytes(page)
                pfn += 1
    return pages


def elf_segments(path):
    with open(path, "rb") as f:
        e = ELFFile(f)
        return e.header, [dict(s.header) for s in e.iter_segments()]


def digests(pages):
    return {pfn: hashlib.sha1(p).hexdigest() for pfn, p in pages.items()}


def kdumpfile_digests(path, max_pfn, *, zero_excluded=False, cut=False):
    """(format name, {pfn: sha1}) of every page libkdumpfile reads from ``path``.
    With ``cut`` (a dump cut short), pages it reports as corrupt are skipped, not
    fatal; a crash of the reader (SIGBUS) still fails."""
    need_tool(SYSTEM_PYTHON)
    cmd = [SYSTEM_PYTHON, os.path.join(HERE, "tools", "kdumpfile_pages.py"), path, str(max_pfn)]
    if zero_excluded or cut:
        cmd.append("zero" if zero_excluded else "cut")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"libkdumpfile could not read {path}: {r.stderr.strip()[-2000:]}"
    lines = r.stdout.splitlines()
    fmt = lines[0].split()[1]
    return fmt, {int(a): b for a, b in (line.split() for line in lines[1:] if line)}


def makedumpfile(*args, timeout=600):
    exe = need_tool("makedumpfile")
    r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"makedumpfile {' '.join(args)} failed: {(r.stdout + r.stderr).strip()[-2000:]}"
    return r


def makedumpfile_has_zstd():
    exe = need_tool("makedumpfile")
    r = subprocess.run([exe, "-v"], capture_output=True, text=True)
    return any(line.split()[:2] == ["zstd", "enabled"] for line in (r.stdout + r.stderr).splitlines())


def fastdump_cli(*args, check=True, env=None, timeout=600):
    r = subprocess.run([sys.executable, "-m", "fastdump", *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check:
        assert r.returncode == 0, f"fastdump {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}"
    return r


def gdb_read(core, vaddr, size):
    """Bytes at ``vaddr`` of an ELF core, as gdb reads them."""
    exe = need_tool("gdb")
    r = subprocess.run([exe, "-nx", "-batch", "-ex", f"core-file {core}",
                        "-ex", f"x/{size}xb {vaddr:#x}"], capture_output=True, text=True, timeout=120)
    out = bytearray()
    for line in r.stdout.splitlines():
        if ":" in line and line.strip().startswith("0x"):
            out += bytes(int(x, 16) for x in line.split(":", 1)[1].split())
    assert len(out) == size, f"gdb could not read {vaddr:#x} from {core}: {r.stdout[-500:]} {r.stderr[-500:]}"
    return bytes(out)


@contextlib.contextmanager
def time_limit(seconds, what="the call"):
    """Fail instead of hanging: a TimeoutError after ``seconds`` (SIGALRM, main thread)."""
    def alarm(signum, frame):
        raise TimeoutError(f"{what} did not finish within {seconds} s (hang)")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def dmesg_without_caller_column(text):
    """makedumpfile --dump-dmesg's bytes in the form fastdump's makedumpfile face writes them
    (like 1.7.2, Debian 12): makedumpfile prints bytes >= 0x80 through a signed char
    (\\xffffffc3 for \\xc3), and from 1.7.5 on (Debian 13) adds a caller column "[    T1] "
    that also indents continuation lines; the log itself must be the same."""
    text = re.sub(rb"\\xffffff([0-9a-f]{2})", rb"\\x\1", text)
    column = re.compile(rb"(?m)^(\[\s*\d+\.\d{6}\] )\[\s*[TC]\d+\] ")
    m = column.search(text)
    if m:
        text = column.sub(rb"\1", text)
        text = re.sub(rb"(?m)^" + b" " * (m.end() - m.end(1)) + rb"(?= )", b"", text)
    return text


def write_kernel_vmcore(path, ram_size, *, printk=None, sparse=False, **layout_kw):
    """Write a synthetic vmcore of a kernel to ``path`` (``KernelLayout`` keywords: encoding,
    seed, ...; ``printk`` a kernel-log kind); returns its layout, the truth a dump is judged by."""
    from fastdump.testing.generator import SyntheticVmcore, VmcoreSpec, default_ram_ranges
    from fastdump.testing.kernel_layout import KernelLayout
    from fastdump.testing.printk_layout import PrintkLayout

    layout = KernelLayout(default_ram_ranges(ram_size), **layout_kw)
    if printk:
        layout = PrintkLayout(layout, kind=printk)
    SyntheticVmcore(VmcoreSpec(ram_size=ram_size, sparse=sparse), layout=layout).write(str(path))
    return layout


def kernel_vmcore(path, ram_size, *, seed=7):
    """A synthetic kernel's vmcore, written to ``path``: what the deployment tests feed a
    collector and judge its dump against (page digests, and the pages -d 31 keeps)."""
    layout = write_kernel_vmcore(path, ram_size, seed=seed)
    pages = elf_pages(str(path))
    return {"path": str(path), "pages": digests(pages), "kept31": set(pages) - layout.dropped_pfns(31)}


def stop_process(proc, timeout=20):
    """SIGTERM, then SIGKILL if it is still there after ``timeout`` s: the test servers'
    (radosgw, nfs-ganesha, sshd, udhcpd) way out, reaped either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def one_line_error(r):
    """The one ``fastdump: error:`` line a failed run ends with (no traceback, no second error)."""
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode not in (0, None), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert lines and lines[-1].startswith("fastdump: error: "), r.stderr
    assert sum(1 for x in lines if x.startswith("fastdump: error")) == 1, r.stderr
    return lines[-1]


def newest_makedumpfile():
    """argv of Debian 13's makedumpfile (1.7.6, which reads 6.12), as the bench builds it."""
    top = os.path.dirname(HERE)
    if top not in sys.path:
        sys.path.insert(0, top)
    from bench.run import makedumpfile_builds
    builds = makedumpfile_builds(lambda text: None, with_sid=False)
    found = [b for b in builds if b["name"] == "makedumpfile-deb13"]
    assert found, f"need Debian 13's makedumpfile (1.7.6: it reads 6.12), found {builds}"
    return found[0]["argv"]
