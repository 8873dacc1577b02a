"""Debian's kdump-tools saving dumps through fastdump, with the package's own kdump-config.

`fastdump setup kdump-tools --root ROOT` diverts makedumpfile in a scratch root that holds the
real makedumpfile binary and a dpkg database listing makedumpfile (this machine's entry) and
kdump-tools (the downloaded package's control data).  Then the real ``kdump-config savecore``
from the downloaded kdump-tools .deb runs under /bin/sh in a private mount namespace
(``unshare --mount``) where:

* /usr/bin is an overlay with the scratch root's /usr/bin on top: kdump-config's fixed PATH finds
  the shim as ``makedumpfile`` and the package's binary as ``makedumpfile.distrib``, and every
  other program is this machine's;
* /etc is an overlay whose only addition is /etc/default/kdump-tools, the package's conffile
  template with KDUMP_COREDIR (and MAKEDUMP_ARGS) set as a sysadmin sets them;
* /proc is a tmpfs holding a symlink to each entry of the real /proc plus ``vmcore``, a bind
  mount of a generated vmcore: the script and both collectors open /proc/vmcore by that name.

This runs the script itself, unchanged, with its own PATH, dash and pipe, rather than a chroot
of a Debian root (which would need fastdump built inside it).  What it does not reproduce is
the capture kernel: tests/e2e boots that.  The saved ``dump.<stamp>`` is a flattened stream,
as kdump-tools always writes; libkdumpfile 0.5 does not read that form, so it is rebuilt with
the distribution's ``makedumpfile -R`` (makedumpfile(8)'s way back from a flattened stream)
and then read page for page.
"""

import glob
import os
import re
import shutil
import subprocess

import pytest

from fastdump.testing.kernel_layout import MiB

from support import dmesg_without_caller_column, kdumpfile_digests, kernel_vmcore, need_tool

RAM = 64 * MiB
#: an option makedumpfile 1.7.2 accepts (and ignores on a vmcore that is not Xen's) and fastdump
#: refuses (Xen): if fastdump learns it, the fallback test fails (no fallback line) and needs another one
REJECTED = "--xen_phys_start 0x1000"


@pytest.fixture(scope="module")
def kdump_tools(tmp_path_factory):
    """The kdump-tools package of this machine's Debian release, unpacked (never installed)."""
    for tool in ("apt-get", "dpkg-deb", "dpkg-divert", "dpkg-query", "unshare"):
        need_tool(tool)
    assert os.geteuid() == 0, "these tests mount overlays in a private mount namespace: run them as root"
    d = tmp_path_factory.mktemp("kdump-tools")
    r = subprocess.run(["apt-get", "download", "kdump-tools"], cwd=d, capture_output=True, text=True, timeout=300)
    debs = glob.glob(str(d / "kdump-tools_*.deb"))
    assert r.returncode == 0 and debs, f"apt-get download kdump-tools failed: {r.stderr.strip()[-500:]}"
    subprocess.run(["dpkg-deb", "-x", debs[0], str(d / "x")], check=True)
    control = subprocess.run(["dpkg-deb", "-f", debs[0]], capture_output=True, text=True, check=True).stdout
    return {"root": d / "x", "control": control}


@pytest.fixture(scope="module")
def vmcore(tmp_path_factory):
    return kernel_vmcore(tmp_path_factory.mktemp("src") / "vmcore", RAM)


def scratch_root(path, kdump_tools):
    """A root holding the real makedumpfile and a dpkg database where both packages are installed."""
    real = need_tool("makedumpfile")
    assert real == "/usr/bin/makedumpfile", f"makedumpfile is at {real}, not where Debian 12 puts it"
    dpkg = path / "var/lib/dpkg"
    for d in (path / "usr/bin", dpkg / "info", dpkg / "updates"):
        d.mkdir(parents=True)
    shutil.copy2(real, path / "usr/bin/makedumpfile")
    shutil.copy2("/var/lib/dpkg/info/makedumpfile.list", dpkg / "info/makedumpfile.list")
    ours = subprocess.run(["dpkg-query", "-s", "makedumpfile"], capture_output=True, text=True, check=True).stdout
    theirs = re.sub(r"(?m)^Status:.*\n", "", kdump_tools["control"])
    (dpkg / "status").write_text(ours.rstrip("\n") + "\n\n" + theirs.rstrip("\n")
                                 + "\nStatus: install ok installed\n")
    return path


def setup(root, *more):
    return subprocess.run(["python3", "-m", "fastdump", "setup", "kdump-tools", "--root", str(root), *more],
                          capture_output=True, text=True, timeout=120)


def savecore(tmp_path, root, kdump_tools, vmcore_path, makedump_args=None, *, dmesg=False):
    """Run the package's ``kdump-config savecore``; return (result, crash dir)."""
    need_tool("/lib/lsb/init-functions")   # kdump-config sources it (lsb-base / sysvinit-utils)
    crash, etc, proc = tmp_path / "crash", tmp_path / "etc", tmp_path / "realproc"
    for d in (crash, etc / "default", proc):
        d.mkdir(parents=True)
    conf = (kdump_tools["root"] / "usr/share/kdump-tools/kdump-tools.conf").read_text()
    conf = re.sub(r'(?m)^KDUMP_COREDIR=.*$', f'KDUMP_COREDIR="{crash}"', conf)
    conf += f"KDUMP_DUMP_DMESG={int(dmesg)}\n"
    if makedump_args is not None:
        conf += f'MAKEDUMP_ARGS="{makedump_args}"\n'
    (etc / "default/kdump-tools").write_text(conf)
    script = f"""set -e
mount -t overlay fastdump-usr-bin -o lowerdir={root}/usr/bin:/usr/bin /usr/bin
mount -t overlay fastdump-etc -o lowerdir={etc}:/etc /etc
mount --rbind /proc {proc}
mount -t tmpfs fastdump-proc /proc
for f in {proc}/*; do ln -s "$f" /proc/; done
: > /proc/vmcore
mount --bind {vmcore_path} /proc/vmcore
set +e
exec {kdump_tools["root"]}/usr/sbin/kdump-config savecore
"""
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script],
                       capture_output=True, text=True, timeout=600)
    assert "mount:" not in r.stderr, f"cannot build the namespace kdump-config runs in: {r.stderr[-1000:]}"
    return r, crash


def saved_dump(r, crash, *, dmesg=False):
    """The one dump.<stamp> kdump-config saved, with everything it says about it checked."""
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "saved vmcore in" in out, out[-2000:]
    (stampdir,) = glob.glob(str(crash / "2*"))
    stamp = os.path.basename(stampdir)
    want = [f"dmesg.{stamp}"] * dmesg + [f"dump.{stamp}"]
    assert sorted(os.listdir(stampdir)) == want, (os.listdir(stampdir), out[-2000:])
    dump = os.path.join(stampdir, f"dump.{stamp}")
    assert os.path.getsize(dump) > 0
    return dump


def read_rebuilt(dump, tmp_path, vmcore):
    """{pfn: sha1} libkdumpfile reads from the flattened ``dump`` rebuilt by makedumpfile -R."""
    rebuilt = str(tmp_path / "rebuilt")
    with open(dump, "rb") as f:
        r = subprocess.run([need_tool("makedumpfile"), "-R", rebuilt], stdin=f, capture_output=True, text=True,
                           timeout=600)
    assert r.returncode == 0, f"makedumpfile -R: {r.stderr[-1000:]}"
    fmt, pages = kdumpfile_digests(rebuilt, max(vmcore["pages"]) + 1)
    assert fmt == "diskdump", fmt
    wrong = [p for p, h in pages.items() if vmcore["pages"].get(p) != h]
    assert not wrong, f"{len(wrong)} pages differ from the source, e.g. pfn {wrong[:5]}"
    return pages


@pytest.mark.parametrize("makedump_args", [None, "-z -d 31"], ids=["default", "zstd"])
def test_kdump_config_savecore_through_fastdump(tmp_path, kdump_tools, vmcore, makedump_args):
    """The default MAKEDUMP_ARGS (-F -c -d 31) and -z -d 31 (-F appended by kdump-config): the
    dump is fastdump's, page for page the source's pages that level 31 keeps."""
    root = scratch_root(tmp_path / "root", kdump_tools)
    s = setup(root)
    assert s.returncode == 0, s.stderr
    r, crash = savecore(tmp_path, root, kdump_tools, vmcore["path"], makedump_args)
    dump = saved_dump(r, crash)
    assert "fastdump: wrote -:" in r.stderr and "makedumpfile.distrib" not in r.stderr, r.stderr[-2000:]
    pages = read_rebuilt(dump, tmp_path, vmcore)
    assert set(pages) == vmcore["kept31"], (len(pages), len(vmcore["kept31"]))


@pytest.mark.parametrize("failure", ["rejected option", "interpreter gone"])
def test_fastdump_failing_at_start_still_saves_a_dump(tmp_path, kdump_tools, vmcore, failure):
    """kdump-config cannot see our exit status: when fastdump writes nothing (an option it
    rejects; its Python removed since setup), the shim runs makedumpfile.distrib instead."""
    root = scratch_root(tmp_path / "root", kdump_tools)
    assert setup(root).returncode == 0
    args = "-c -d 31"
    if failure == "rejected option":
        args += f" {REJECTED}"
    else:
        shim = root / "usr/bin/makedumpfile"
        text, n = re.subn(r"'/[^']*python[^']*' -m", "'/nonexistent/python3' -m", shim.read_text())
        assert n == 1
        shim.write_text(text)
    r, crash = savecore(tmp_path, root, kdump_tools, vmcore["path"], args)
    dump = saved_dump(r, crash)
    assert "before writing anything; running /usr/bin/makedumpfile.distrib" in r.stderr, r.stderr[-2000:]
    assert "fastdump: wrote" not in r.stderr
    if failure == "rejected option":   # makedumpfile's exit class for a usage error: 1, not fastdump's 2
        assert "fastdump failed (status 1)" in r.stderr
    assert read_rebuilt(dump, tmp_path, vmcore)


def test_failure_after_writing_does_not_start_over(tmp_path, kdump_tools, vmcore):
    """Once a byte went out, the stream cannot be restarted: exit 1 and a line, no fallback."""
    root = scratch_root(tmp_path / "root", kdump_tools)
    assert setup(root).returncode == 0
    p = subprocess.Popen([str(root / "usr/bin/makedumpfile"), "-F", "-c", "-d", "31", vmcore["path"]],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.read(1)
    p.stdout.close()                                      # the reader goes away: EPIPE
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 1
    assert "after writing: this dump is incomplete" in err and "running" not in err, err


def test_makedumpfile_spelling_without_target(tmp_path, vmcore):
    """No target, stdout not a terminal: the flattened stream to stdout, as makedumpfile; its
    tuning options are accepted with one note.  On a terminal: still "no target given"."""
    out = tmp_path / "stream"
    with open(out, "wb") as f:
        r = subprocess.run(["python3", "-m", "fastdump", "-c", "-d", "31", "-b", "8", "--cyclic-buffer", "4096",
                            "--non-cyclic", "--work-dir", str(tmp_path), "-D", vmcore["path"]],
                           stdout=f, stderr=subprocess.PIPE, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if "note:" in line]
    assert len(notes) == 1 and "--cyclic-buffer" in notes[0], r.stderr
    assert set(read_rebuilt(str(out), tmp_path, vmcore)) == vmcore["kept31"]
    leader, follower = os.openpty()
    try:
        r = subprocess.run(["python3", "-m", "fastdump", "-c", vmcore["path"]], stdout=follower,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(leader)
        os.close(follower)
    assert r.returncode == 2 and "no target given" in r.stderr, r.stderr


def test_setup_then_undo_restores_makedumpfile_exactly(tmp_path, kdump_tools):
    root = scratch_root(tmp_path / "root", kdump_tools)
    binary = root / "usr/bin/makedumpfile"
    before = (binary.read_bytes(), os.stat(binary))
    s = setup(root)
    assert s.returncode == 0, s.stderr
    assert (root / "usr/bin/makedumpfile.distrib").read_bytes() == before[0]
    shim = binary.read_text()
    assert shim.startswith("#!/bin/sh\n") and "'/usr/bin/makedumpfile.distrib'" in shim
    assert re.search(r"'/[^']*python[^']*' -m fastdump\.deploy\.makedumpfile", shim), shim
    assert "LOCAL" in subprocess.run(["dpkg-divert", f"--root={root}", "--listpackage", "/usr/bin/makedumpfile"],
                                     capture_output=True, text=True).stdout
    again = setup(root)                                   # a re-run keeps it set up
    assert again.returncode == 0 and "already set up" in again.stdout, again.stderr
    u = setup(root, "--undo")
    assert u.returncode == 0, u.stderr
    after = os.stat(binary)
    assert binary.read_bytes() == before[0] and not (root / "usr/bin/makedumpfile.distrib").exists()
    assert (after.st_mode, after.st_mtime_ns, after.st_uid) == (before[1].st_mode, before[1].st_mtime_ns,
                                                                 before[1].st_uid)
    assert subprocess.run(["dpkg-divert", f"--root={root}", "--list"], capture_output=True,
                          text=True).stdout.strip() == ""
    assert setup(root, "--undo").returncode == 0          # nothing to undo: said, not an error
    assert setup(root).returncode == 0                    # a shim someone deleted: undo still restores
    binary.unlink()
    u = setup(root, "--undo")
    assert u.returncode == 0 and binary.read_bytes() == before[0], u.stderr


def test_setup_refuses(tmp_path, kdump_tools):
    """Not installed, diverted by someone else: one line, non-zero, nothing changed."""
    empty = tmp_path / "empty"
    (empty / "var/lib/dpkg").mkdir(parents=True)
    (empty / "var/lib/dpkg/status").write_text("")
    r = setup(empty)
    assert r.returncode == 1 and "not installed" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    root = scratch_root(tmp_path / "root", kdump_tools)
    subprocess.run(["dpkg-divert", f"--root={root}", "--local", "--rename", "--divert",
                    "/usr/bin/makedumpfile.other", "--add", "/usr/bin/makedumpfile"], check=True, capture_output=True)
    for more in ((), ("--undo",)):
        r = setup(root, *more)
        assert r.returncode == 1 and "left alone" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert sorted(os.listdir(root / "usr/bin")) == ["makedumpfile.other"]


def test_setup_refuses_when_not_root(monkeypatch, capsys):
    from fastdump.commands.cli import main
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["setup", "kdump-tools", "--root", "/nonexistent"]) == 1
    assert "must be run as root" in capsys.readouterr().err


def test_kdump_config_dmesg_through_fastdump(tmp_path, kdump_tools, generated_kernel):
    """kdump-config's ``makedumpfile --dump-dmesg /proc/vmcore FILE``: fastdump writes what the
    distribution's makedumpfile writes for the same vmcore."""
    src, _ = generated_kernel(RAM, seed=7, printk="lockless")
    theirs = tmp_path / "theirs.txt"
    r = subprocess.run([need_tool("makedumpfile"), "--dump-dmesg", src, str(theirs)], capture_output=True, text=True)
    assert r.returncode == 0, f"makedumpfile --dump-dmesg: {r.stderr[-500:]}"
    root = scratch_root(tmp_path / "root", kdump_tools)
    assert setup(root).returncode == 0
    r, crash = savecore(tmp_path, root, kdump_tools, src, dmesg=True)
    dump = saved_dump(r, crash, dmesg=True)
    assert "saved dmesg content in" in r.stdout + r.stderr and "makedumpfile.distrib" not in r.stderr, r.stderr
    stamp = os.path.basename(os.path.dirname(dump))
    theirs_text = dmesg_without_caller_column(theirs.read_bytes())
    assert (crash / stamp / f"dmesg.{stamp}").read_bytes() == theirs_text
