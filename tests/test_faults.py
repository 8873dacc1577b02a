"""Faults and hostile surroundings: a full disk, planted symlinks, an old dump in
the way, a permissive umask, shell metacharacters in names, unreadable source
sectors.  Every failure must be one line and a non-zero exit status; a dump cut
short stays as ``NAME.incomplete``, flagged incomplete, readable up to the last
page written.  These tests mount tmpfs and set up loop devices: they run as root.
"""

import contextlib
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import time

import pytest

import fastdump
from fastdump.formats import elf
from fastdump.errors import FormatError
from fastdump.formats import kdump
from fastdump.sources.vmcore import ElfSource
from fastdump.testing.generator import MiB
from fastdump.commands.verify import verify
from support import digests, elf_pages, kdumpfile_digests, one_line_error

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts tmpfs and loop devices: needs root")


@pytest.fixture(scope="module")
def random_vmcore(generated_vmcore):
    """64 MiB of mostly incompressible RAM: the dump is as big as the memory."""
    return generated_vmcore(ram_size=64 * MiB, seed=9, mix={"random": 60, "text": 20, "zero": 20})


def run(*args, umask=None, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "fastdump", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
                          env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@contextlib.contextmanager
def tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"cannot mount tmpfs: {r.stderr}"
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill_when_started(proc, watch, filler, min_bytes=1 << 20):
    """Once ``watch`` holds ``min_bytes``, stop the writer, take every free byte of
    its filesystem, and let it go on.  Returns False if it finished first."""
    import signal
    while proc.poll() is None:
        try:
            if os.stat(watch).st_blocks * 512 >= min_bytes:
                break
        except FileNotFoundError:
            pass
        time.sleep(0.0005)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGSTOP)
    try:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for chunk in (1 << 20, 4096, 512):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, bytes(chunk))
        finally:
            os.close(fd)
    finally:
        proc.send_signal(signal.SIGCONT)
    return True


def header_flag_incomplete(path, fmt):
    with open(path, "rb") as f:
        head = f.read(kdump.HEADER.size)
    if fmt == "kdump":
        return bool(kdump.HEADER.unpack_named(head).status & kdump.STATUS_INCOMPLETE)
    return bool(struct.unpack_from("<I", head, 48)[0] & elf.ELF_INCOMPLETE_FLAG)


# -- ENOSPC -------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["kdump", "elf"])
def test_enospc_small_tmpfs(random_vmcore, tmp_path, fmt):
    """A 4 MiB filesystem for a 64 MiB dump: refused up front or cut short, never a traceback."""
    with tmpfs(tmp_path / "small", "4m") as mnt:
        out = os.path.join(mnt, "vmcore")
        r = run("-E" if fmt == "elf" else "-c", "-d", "1", random_vmcore, out)
        err = one_line_error(r)
        assert "space" in err or "free" in err
        assert not os.path.exists(out)
        if os.path.exists(out + ".incomplete"):
            assert header_flag_incomplete(out + ".incomplete", fmt)
            assert stat.S_IMODE(os.stat(out + ".incomplete").st_mode) == 0o600


@pytest.fixture(scope="module", params=["kdump", "elf", "kdump-direct-io", "elf-direct-io"])
def cut_short(request, random_vmcore, tmp_path_factory):
    """A dump that ran out of space half way (the filesystem filled up under it),
    copied out of the tmpfs: (format, path, stderr)."""
    fmt, _, direct = request.param.partition("-")
    base = tmp_path_factory.mktemp(f"enospc-{request.param}")
    for attempt in range(3):    # the dump may (rarely) finish before the disk is filled: again
        with tmpfs(base / f"mnt{attempt}", "160m") as mnt:
            out = os.path.join(mnt, "vmcore")
            args = [sys.executable, "-m", "fastdump", "--threads", "1", "-d", "1",
                    "-E" if fmt == "elf" else "-c", random_vmcore, out] + ["--direct-io"] * bool(direct)
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    preexec_fn=lambda: os.umask(0))
            filled = fill_when_started(proc, out + ".incomplete", os.path.join(mnt, "filler"))
            _, err = proc.communicate(timeout=300)
            if not filled and attempt < 2:
                continue
            r = subprocess.CompletedProcess(args, proc.returncode, "", err)
            assert not os.path.exists(out), "a failed dump must not have the final name"
            assert os.path.exists(out + ".incomplete"), err
            mode = stat.S_IMODE(os.stat(out + ".incomplete").st_mode)
            kept = str(base / "vmcore.incomplete")
            shutil.copyfile(out + ".incomplete", kept)
            return fmt, kept, r, mode


def test_enospc_one_line_and_incomplete_name(cut_short):
    fmt, path, r, mode = cut_short
    err = one_line_error(r)
    assert "no space left on device" in err and "incomplete" in err
    assert mode == 0o600                                   # umask 000 did not widen it
    assert header_flag_incomplete(path, fmt)


def test_enospc_dump_reads_up_to_the_last_page_written(cut_short, random_vmcore):
    fmt, path, _, _ = cut_short
    with ElfSource(random_vmcore) as src, fastdump.open(path) as d:
        assert d.incomplete
        read, lost = [], []
        for pfn in d.pfns():
            try:
                page = d.read_pfn(pfn)
            except FormatError as e:
                assert "not written" in str(e)
                lost.append(pfn)
                continue
            assert page == src.read_pfn(pfn), f"pfn {pfn:#x}"
            read.append(pfn)
        assert len(read) > 100
        if lost:   # pages are written in pfn order: what is there is a prefix
            assert max(read) < min(lost)
    r = verify(path, random_vmcore)
    assert r["incomplete"] and r["problem_count"] == 0 and r["verdict"].startswith("FAILED: ")
    assert "incomplete" in r["verdict"]


def test_enospc_kdump_readable_by_libkdumpfile(cut_short, random_vmcore):
    """Pages never written are taken out of the 2nd bitmap, so libkdumpfile reads
    every page that is there and reports the rest as not dumped."""
    fmt, path, _, _ = cut_short
    with ElfSource(random_vmcore) as src:
        want = {pfn: src.read_pfn(pfn) for pfn in src.pfns()}
        max_pfn = src.max_pfn
    _, got = kdumpfile_digests(path, max_pfn)
    want = digests(want)
    zero = digests({0: bytes(4096)})[0]
    starts = set()
    if fmt == "elf":   # libkdumpfile 0.5.1 returns zeros for the page just below a PT_LOAD start
        from support import elf_segments
        starts = {s["p_paddr"] // 4096 for s in elf_segments(path)[1] if s["p_type"] == "PT_LOAD"}
    assert len(got) > 100
    assert all(got[p] == want[p] or (got[p] == zero and p + 1 in starts) for p in got)


# -- targets: permissions, existing files, symlinks, names ---------------------

@pytest.mark.parametrize("fmt", ["kdump", "elf"])
def test_mode_0600_whatever_the_umask(random_vmcore, tmp_path, fmt):
    out = str(tmp_path / "vmcore")
    stats = str(tmp_path / "stats.json")
    r = run("-E" if fmt == "elf" else "-z", "-d", "1", "--stats-json", stats, random_vmcore, out, umask=0)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert not os.path.exists(out + ".incomplete")
    assert json.load(open(stats))["format"] == fmt


@pytest.mark.parametrize("which", ["final", "temp"])
def test_existing_file_not_overwritten_without_force(random_vmcore, tmp_path, which):
    out = tmp_path / "vmcore"
    victim = tmp_path / ("vmcore" if which == "final" else "vmcore.incomplete")
    victim.write_bytes(b"an earlier dump")
    err = one_line_error(run("-z", "-d", "1", random_vmcore, str(out)))
    assert "exists" in err and "--force" in err
    assert victim.read_bytes() == b"an earlier dump"
    r = run("-f", "-z", "-d", "1", random_vmcore, str(out))
    assert r.returncode == 0, r.stderr
    assert verify(str(out))["ok"] and not (tmp_path / "vmcore.incomplete").exists()


@pytest.mark.parametrize("which", ["final", "temp"])
@pytest.mark.parametrize("dangling", [False, True])
def test_planted_symlink_not_followed(random_vmcore, tmp_path, which, dangling):
    out = tmp_path / "vmcore"
    link = tmp_path / ("vmcore" if which == "final" else "vmcore.incomplete")
    victim = tmp_path / "etc-shadow"
    if not dangling:
        victim.write_bytes(b"root:secret")
    link.symlink_to(victim)
    err = one_line_error(run("-z", "-d", "1", random_vmcore, str(out)))
    assert "exists" in err
    r = run("-f", "-z", "-d", "1", random_vmcore, str(out))
    assert r.returncode == 0, r.stderr
    if dangling:
        assert not victim.exists(), "the symlink's target was created"
    else:
        assert victim.read_bytes() == b"root:secret"
    assert not out.is_symlink() and out.is_file()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["$(touch PWNED)", "`touch PWNED`", "a; touch PWNED", "a && touch PWNED #",
                                  "a|touch PWNED", "line\nbreak", "quote'd \"name\"", "star*?[x]", " space "])
def test_names_never_reach_a_shell(random_vmcore, tmp_path, name):
    work = tmp_path / "w"
    work.mkdir()
    src = work / (name + ".src")
    shutil.copyfile(random_vmcore, src)
    r = run("-z", "-d", "1", "--stats-json", name + ".json", src.name, name, cwd=str(work))
    assert r.returncode == 0, r.stderr
    assert (work / name).is_file() and (work / (name + ".json")).is_file()
    assert not any(p.name == "PWNED" for p in tmp_path.rglob("*"))
    assert verify(str(work / name), str(src))["ok"]
    r = run("info", name, cwd=str(work))
    assert r.returncode == 0 and not any(p.name == "PWNED" for p in tmp_path.rglob("*"))


# -- unreadable source sectors (EIO): tests/test_unreadable.py injects them with an
# LD_PRELOAD shim (this kernel has no device-mapper for an `error` target).


# -- killed runs: the header, notes and bitmaps are on disk before any page data --------------

def kill_when_written(args, watch, min_bytes):
    """Run fastdump, SIGKILL it once ``watch`` holds ``min_bytes`` on disk; False if it ended first."""
    import signal
    proc = subprocess.Popen([sys.executable, "-m", "fastdump", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        while proc.poll() is None:
            try:
                if os.stat(watch).st_blocks * 512 >= min_bytes:
                    proc.send_signal(signal.SIGKILL)
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.0005)
        proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode == -signal.SIGKILL


def check_leftover(path, fmt, random_vmcore, min_pages=0):
    """A leftover opens as an incomplete dump in fastdump and libkdumpfile, and every
    page either reads back right or is reported missing."""
    if not header_flag_incomplete(path, fmt):   # killed between the final header and the rename
        r = verify(path, random_vmcore)
        assert r["ok"], f"the header on disk is not flagged incomplete: {r}"
        return
    r = run("info", path)
    assert r.returncode == 0 and "INCOMPLETE" in r.stdout, r.stdout + r.stderr
    with ElfSource(random_vmcore) as src:
        want = digests({pfn: src.read_pfn(pfn) for pfn in src.pfns()})
        max_pfn = src.max_pfn
    _, got = kdumpfile_digests(path, max_pfn, cut=True)
    zero = digests({0: bytes(4096)})[0]
    wrong = [p for p in got if got[p] != want.get(p, zero)]
    if fmt == "elf":   # the file's length is laid out up front: what was not written reads as zeros
        wrong = [p for p in wrong if got[p] != zero][1:]   # and one page may straddle the cut
    assert not wrong, f"{len(wrong)} wrong pages"
    assert len(got) >= min_pages


@pytest.mark.parametrize("fmt", ["kdump", "elf", "split"])
@pytest.mark.parametrize("direct", [True, False], ids=["direct-io", "buffered"])
def test_sigkill_leaves_a_readable_flagged_dump(random_vmcore, tmp_path, fmt, direct):
    """SIGKILL (an OOM kill in the capture kernel) at several points of the copy
    (for --split, of the first part)."""
    killed = 0
    for i, at in enumerate((64 << 10, 2 << 20, 12 << 20, 40 << 20)):
        out = str(tmp_path / f"vmcore{i}")
        args = ["--threads", "1", "-d", "1", "-E" if fmt == "elf" else "-c", random_vmcore, out]
        if fmt == "split":
            args = ["--split", "--splitblock-size", "4096"] + args + [out + "-part2"]
        if kill_when_written(args + ["--direct-io"] * direct, out + ".incomplete", at):
            killed += 1
            check_leftover(out + ".incomplete", "elf" if fmt == "elf" else "kdump", random_vmcore)
    assert killed >= 2


# -- -R and --reassemble: the same fault handling as the main writer ------------------------

@pytest.fixture(scope="module")
def streams_and_parts(random_vmcore, tmp_path_factory):
    """A flattened stream from fastdump and one from makedumpfile, and split parts."""
    base = tmp_path_factory.mktemp("rebuild")
    ours, theirs = str(base / "ours.flat"), str(base / "theirs.flat")
    with open(ours, "wb") as f:
        subprocess.run([sys.executable, "-m", "fastdump", "-F", "-c", "-d", "1", random_vmcore], stdout=f, check=True)
    from support import need_tool
    with open(theirs, "wb") as f:
        subprocess.run([need_tool("makedumpfile"), "-F", "-c", "-d", "1", random_vmcore], stdout=f, check=True,
                       stderr=subprocess.DEVNULL)
    parts = [str(base / f"part{i}") for i in range(3)]
    r = run("--split", "--splitblock-size", "4096", "-c", "-d", "1", random_vmcore, *parts)
    assert r.returncode == 0, r.stderr
    return {"ours": ours, "makedumpfile": theirs, "parts": parts}


@pytest.mark.parametrize("how", ["R-ours", "R-makedumpfile", "reassemble"])
def test_rebuild_on_a_full_disk_leaves_a_readable_flagged_dump(streams_and_parts, random_vmcore, tmp_path, how):
    with tmpfs(tmp_path / "small", "12m") as mnt:
        out = os.path.join(mnt, "vmcore")
        if how == "reassemble":
            r = run("--reassemble", *streams_and_parts["parts"], out)
        else:
            r = run("-R", "--from-device", streams_and_parts[how.split("-", 1)[1]], out)
        err = one_line_error(r)
        assert "space" in err and "incomplete" in err, err
        assert not os.path.exists(out)
        kept = str(tmp_path / "vmcore.incomplete")
        shutil.copyfile(out + ".incomplete", kept)
    check_leftover(kept, "kdump", random_vmcore, min_pages=100)


@pytest.mark.parametrize("how", ["R-ours", "reassemble"])
def test_rebuild_killed_leaves_a_readable_flagged_dump(streams_and_parts, random_vmcore, tmp_path, how):
    """(makedumpfile's streams send some descriptors before their page data: a -R
    killed between the two leaves descriptors past the end, which only a run that
    can still react, on a full disk or SIGTERM/SIGHUP, takes out.)"""
    killed = 0
    for i, at in enumerate((64 << 10, 2 << 20, 12 << 20, 30 << 20)):
        out = str(tmp_path / f"vmcore{i}")
        args = (["--reassemble", *streams_and_parts["parts"], out] if how == "reassemble"
                else ["-R", "--from-device", streams_and_parts[how.split("-", 1)[1]], out])
        if kill_when_written(args, out + ".incomplete", at):
            killed += 1
            check_leftover(out + ".incomplete", "kdump", random_vmcore)
    assert killed >= 2


# -- side failures must not fail (or litter around) a good dump ------------------------------

def signal_when_written(args, watch_dir, prefix, min_bytes, sig):
    """Run fastdump; send ``sig`` once a file under ``watch_dir/prefix*`` holds ``min_bytes``."""
    import signal
    # a shell runs background jobs (CI, .ci/fresh-machine) with SIGINT ignored, and a child
    # keeps that: give it the disposition a terminal user's Ctrl-C meets
    proc = subprocess.Popen([sys.executable, "-m", "fastdump", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        while proc.poll() is None:
            used = 0
            for name in os.listdir(watch_dir):
                if name.startswith(prefix):
                    p = os.path.join(watch_dir, name)
                    for root, _, files in os.walk(p) if os.path.isdir(p) else [(watch_dir, [], [name])]:
                        for f in files:
                            with contextlib.suppress(OSError):
                                used += os.lstat(os.path.join(root, f)).st_blocks * 512
            if used >= min_bytes:
                proc.send_signal(sig)
                break
            time.sleep(0.001)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGTERM"])
def test_sighup_like_sigterm_dump_left_readable(random_vmcore, tmp_path, sig):
    """A dropped ssh session (SIGHUP) interrupts like SIGTERM: exit 130, the dump
    stays as NAME.incomplete, flagged and readable."""
    import signal
    out = str(tmp_path / "vmcore")
    rc, err = signal_when_written(["--threads", "1", "-c", "-d", "1", random_vmcore, out], str(tmp_path),
                                  "vmcore.incomplete", 2 << 20, getattr(signal, sig))
    assert rc == 130, err
    assert "interrupted" in err and "Traceback" not in err
    check_leftover(out + ".incomplete", "kdump", random_vmcore, min_pages=100)


@pytest.fixture(scope="module")
def kdump_input(random_vmcore, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("conv") / "in.kdump")
    r = run("-c", "-d", "1", random_vmcore, path)
    assert r.returncode == 0, r.stderr
    return path


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_interrupted_convert_leaves_no_temporaries(kdump_input, tmp_path, sig):
    import signal
    rc, err = signal_when_written(["convert", "-z", kdump_input, str(tmp_path / "out")], str(tmp_path),
                                  ".fastdump-tmp-", 4 << 20, getattr(signal, sig))
    assert rc == 130, err
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".fastdump")], os.listdir(tmp_path)


def test_killed_convert_temporaries_removed_by_the_next_run(kdump_input, tmp_path):
    import signal
    rc, _ = signal_when_written(["convert", "-z", kdump_input, str(tmp_path / "out")], str(tmp_path),
                                ".fastdump-tmp-", 4 << 20, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    left = [n for n in os.listdir(tmp_path) if n.startswith(".fastdump-tmp-")]
    assert left
    for n in left:   # killed a while ago
        os.utime(tmp_path / n, (time.time() - 3600,) * 2)
    r = run("convert", "-z", kdump_input, str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".fastdump-tmp-")]


def test_reassemble_takes_a_part_cut_short_by_a_full_disk(random_vmcore, tmp_path):
    """--split with the last part's disk filling up: the other parts are whole, that one is
    flagged incomplete (its header differs from theirs only there).  --reassemble joins them
    (makedumpfile 1.7 refuses such a part) into a dump flagged incomplete, exit status 3 and
    one line naming the part, in which every page that reached a part reads as the source."""
    parts = [str(tmp_path / "part0"), str(tmp_path / "part1")]
    for attempt in range(3):    # the part may (rarely) finish before its disk is filled: again
        with tmpfs(tmp_path / f"mnt{attempt}", "160m") as mnt:
            last = os.path.join(mnt, "part2")
            proc = subprocess.Popen([sys.executable, "-m", "fastdump", "--threads", "1", "--split",
                                     "--splitblock-size", "4096", "-z", "-d", "1", random_vmcore, *parts, last],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            filled = fill_when_started(proc, last + ".incomplete", os.path.join(mnt, "filler"))
            _, err = proc.communicate(timeout=300)
            if not filled:
                continue
            assert proc.returncode == 1 and "no space" in err, err
            cut = str(tmp_path / "part2.incomplete")
            shutil.copyfile(last + ".incomplete", cut)
            break
    else:
        pytest.fail("the last part finished before its disk was full, three times")
    assert all(not header_flag_incomplete(p, "kdump") for p in parts) and header_flag_incomplete(cut, "kdump")
    with fastdump.open(cut) as d:
        written = [p for p in d.pfns() if d.descriptor(p)[0]]
        assert written and d.start_pfn < written[-1] + 1 < d.end_pfn     # cut in its middle
    out = str(tmp_path / "joined")
    r = run("--reassemble", *parts, cut, out)
    assert r.returncode == 3, r.stderr
    assert one_line_error(r) == (f"fastdump: error: reassembled but partial: {cut} was flagged incomplete, "
                                 f"and the pages never written there are missing; {out} is flagged incomplete")
    assert header_flag_incomplete(out, "kdump")
    got = verify(out, random_vmcore)
    source = elf_pages(random_vmcore)
    _, theirs = kdumpfile_digests(out, max(source) + 1, cut=True)
    want = digests(source)
    with fastdump.open(parts[0]) as a, fastdump.open(parts[1]) as b:
        whole = list(a.pfns()) + list(b.pfns())
        planned = a.n_descriptors(all_parts=True)          # a whole part's table: every part's pages
    # the pages the cut part never wrote are counted as never written (their slots are empty)
    assert got["incomplete"] and got["problem_count"] == 0, got["verdict"]
    assert got["pages_checked"] == len(set(whole) | set(written)), got["verdict"]
    assert got["pages_unwritten"] == planned - got["pages_checked"] > 0, got["verdict"]
    assert set(whole) | set(written) == set(theirs)        # every page that reached a part, no more
    assert all(theirs[p] == want[p] for p in theirs)


def test_unwritable_stats_json_is_a_warning(random_vmcore, tmp_path):
    out = str(tmp_path / "vmcore")
    r = run("-c", "-d", "31", "--stats-json", str(tmp_path / "no" / "such" / "dir" / "s.json"), random_vmcore, out)
    assert r.returncode == 0, r.stderr
    assert "statistics not written" in r.stderr
    assert verify(out, random_vmcore)["ok"]


def test_directory_fsynced_after_every_final_rename(random_vmcore, streams_and_parts, kdump_input, tmp_path,
                                                    monkeypatch):
    """kdump reboots right after the collector: every new name (dump, parts, rebuilt and
    joined dumps, converted dumps, the <host>-<date> directory, statistics) is made durable by
    an fsync of its directory once the name is there."""
    from fastdump.commands.convert import convert
    from fastdump.formats.flat import rearrange
    from fastdump.formats.split import reassemble
    synced = []     # (directory, names in it at that moment)
    real_fsync = os.fsync

    def fsync(fd):
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            d = os.readlink(f"/proc/self/fd/{fd}")
            synced.append((d, set(os.listdir(d))))
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)

    def durable(path):
        d, name = os.path.split(os.path.abspath(path))
        assert os.path.exists(path)
        return any(sd == d and name in names for sd, names in synced)

    made = {}
    made["dump"] = str(tmp_path / "vmcore")
    fastdump.dump(random_vmcore, made["dump"], level=31, compress="zlib")
    os.mkdir(tmp_path / "crash")
    st = fastdump.dump(random_vmcore, str(tmp_path / "crash") + "/", level=31, compress="zlib")
    made["dir target dump"] = st.dump_path
    made["dir target subdirectory"] = os.path.dirname(st.dump_path)
    parts = [str(tmp_path / f"part{i}") for i in range(2)]
    fastdump.dump(random_vmcore, level=31, compress="zlib", split=parts)
    made.update({f"split part {i}": p for i, p in enumerate(parts)})
    made["rebuilt"] = str(tmp_path / "rebuilt")
    with open(streams_and_parts["ours"], "rb") as f:
        rearrange(f, made["rebuilt"])
    made["joined"] = str(tmp_path / "joined")
    reassemble(streams_and_parts["parts"], made["joined"])
    made["converted"] = str(tmp_path / "converted")
    convert(kdump_input, made["converted"], level=31)
    made["stats"] = str(tmp_path / "stats.json")
    fastdump.dump(random_vmcore, str(tmp_path / "vmcore2"), level=31, stats_json=made["stats"])
    missing = [what for what, path in made.items() if not durable(path)]
    assert not missing, f"no directory fsync after: {missing}"


# -- never save nothing ----------------------------------------------------------------------

def _size_on_tmpfs(nbytes):
    """A tmpfs size that holds a file of ``nbytes`` and little more."""
    return (-(-nbytes // 4096) + 8) * 4096


@pytest.mark.parametrize("args", [["-z"], ["-l"], ["--compress", "lz4"], ["-c"], ["--compress", "none"], ["-E"]])
def test_room_check_never_refuses_a_target_that_holds_the_dump(random_vmcore, tmp_path, args):
    """A file system just above the real dump's size takes the dump at the level asked."""
    real = str(tmp_path / "real")
    r = run(*args, "-d", "1", random_vmcore, real)
    assert r.returncode == 0, r.stderr
    with tmpfs(tmp_path / "fit", str(_size_on_tmpfs(os.path.getsize(real)))) as mnt:
        out = os.path.join(mnt, "vmcore")
        r = run(*args, "-d", "1", random_vmcore, out)
        assert r.returncode == 0, r.stderr
        assert "warning" not in r.stderr, r.stderr
        with fastdump.open(out) as d:
            assert not d.incomplete and (d.format == "elf" or d.dump_level == 1)
        assert verify(out, random_vmcore)["ok"]


@pytest.fixture(scope="module")
def logged_vmcore(tmp_path_factory):
    """64 MiB with a kernel log (5.10+ lockless ring) and no page classes."""
    from fastdump.testing.generator import SyntheticVmcore, VmcoreSpec
    from fastdump.testing.printk_layout import PrintkLayout
    layout = PrintkLayout(None, kind="lockless")
    path = str(tmp_path_factory.mktemp("logged") / "vmcore")
    SyntheticVmcore(VmcoreSpec(ram_size=64 * MiB, seed=3, mix={"random": 70, "text": 30}), layout=layout).write(path)
    return path, layout.expected_dmesg()


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_no_room_anywhere_saves_the_log_then_what_fits(logged_vmcore, tmp_path, kind):
    """Far too small a target: the kernel log, then the dump at level 31, and as that does
    not fit either, a readable dump flagged incomplete; exit non-zero."""
    vmcore, log = logged_vmcore
    with tmpfs(tmp_path / "small", "6m") as mnt:
        target = os.path.join(mnt, "vmcore") if kind == "file" else mnt + "/"
        r = run("-z", "-d", "1", vmcore, target)
        err = one_line_error(r)
        assert "space" in err and "incomplete" in err, r.stderr
        assert "dump level 31" in r.stderr and "kernel log saved" in r.stderr
        where = mnt if kind == "file" else os.path.join(mnt, os.listdir(mnt)[0])
        with open(os.path.join(where, "vmcore-dmesg.txt")) as f:
            assert f.read() == log
        left = os.path.join(where, "vmcore.incomplete" if kind == "file" else "vmcore-incomplete")
        kept = str(tmp_path / "kept")
        shutil.copyfile(left, kept)
        with fastdump.open(kept) as d:
            assert d.dump_level == 31
    check_leftover(kept, "kdump", vmcore, min_pages=100)


def test_no_room_for_the_level_asked_falls_back_to_31(tmp_path_factory, tmp_path, generated_kernel):
    """Room for level 31 but not for the level asked: a complete dump at level 31, exit 0."""
    vmcore, _ = generated_kernel(96 * MiB, seed=11)
    small = str(tmp_path / "at31")
    assert run("-z", "-d", "31", vmcore, small).returncode == 0
    full = str(tmp_path / "at0")
    assert run("-z", "-d", "0", vmcore, full).returncode == 0
    assert os.path.getsize(full) > 2 * os.path.getsize(small)
    size = os.path.getsize(small) * 3 // 2 + (1 << 20)
    with tmpfs(tmp_path / "mid", str(_size_on_tmpfs(size))) as mnt:
        out = os.path.join(mnt, "vmcore")
        r = run("-z", "-d", "0", vmcore, out)
        assert r.returncode == 0, r.stderr
        assert "dump level 31" in r.stderr
        with fastdump.open(out) as d:
            assert not d.incomplete and d.dump_level == 31


def test_no_room_even_for_the_descriptors_leaves_a_readable_empty_dump(logged_vmcore, tmp_path):
    vmcore, log = logged_vmcore
    with tmpfs(tmp_path / "tiny", "128k") as mnt:
        out = os.path.join(mnt, "vmcore")
        err = one_line_error(run("-z", "-d", "1", vmcore, out))
        assert "space" in err
        with open(out + "-dmesg.txt") as f:
            assert f.read() == log
        kept = str(tmp_path / "kept")
        shutil.copyfile(out + ".incomplete", kept)
    check_leftover(kept, "kdump", vmcore)
