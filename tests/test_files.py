"""Every file fastdump creates, whatever creates it: no symlink followed, nothing
existing replaced without -f, private modes; device targets only when explicit
and never over a file system (issue 10, classes 1 and 4).

The writers are a table: each row says how to make one fastdump command write
one name.  Every row goes through the same hostile situations, so a new writer
is checked by adding a row, not a new test."""

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

import fastdump
from fastdump.testing.generator import MiB, SyntheticVmcore, VmcoreSpec
from support import digests, elf_pages, fastdump_cli, kdumpfile_digests

VICTIM = b"precious data that is not fastdump's\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, generated_kernel):
    """A small vmcore with a kernel log, and the dumps the other writers start from."""
    d = tmp_path_factory.mktemp("inputs")
    src, _ = generated_kernel(64 * MiB, encoding="6.12", seed=3, printk="lockless")
    kdump_file, flat = str(d / "dump"), str(d / "flat")
    fastdump_cli("-z", "-d", "31", src, kdump_file)
    with open(flat, "wb") as f:
        subprocess.run([sys.executable, "-m", "fastdump", "-F", "-d", "31", src, "-"], stdout=f, check=True)
    parts = [str(d / "part1"), str(d / "part2")]
    fastdump_cli("--split", "-d", "31", "--splitblock-size", "1024", src, *parts)
    return {"src": src, "kdump": kdump_file, "flat": flat, "parts": parts, "dir": d}


# writer name -> (argv for the command that writes NAME, exit status when NAME may not be written)
WRITERS = {
    "kdump dump": (lambda i, name: ["-z", "-d", "31", i["src"], name], "fail"),
    "ELF dump": (lambda i, name: ["-E", "-d", "31", i["src"], name], "fail"),
    "--split part": (lambda i, name: ["--split", "-d", "31", i["src"], name, name + "-2"], "fail"),
    "-R": (lambda i, name: ["-R", "--from-device", i["flat"], name], "fail"),
    "--reassemble": (lambda i, name: ["--reassemble", *i["parts"], name], "fail"),
    "convert": (lambda i, name: ["convert", "-d", "31", i["kdump"], name], "fail"),
    "dmesg": (lambda i, name: ["dmesg", i["src"], name], "fail"),
    "--dump-dmesg": (lambda i, name: ["--dump-dmesg", i["src"], name], "fail"),
    # statistics are a side product: refusing them must not fail the saved dump
    "--stats-json": (lambda i, name: ["-d", "31", "--stats-json", name, i["src"], name + "-dump"], "ok"),
}


def _run(argv, force):
    """fastdump with umask 0, so only fastdump itself can make its files private."""
    r = subprocess.run([sys.executable, "-m", "fastdump", *argv, *(["-f"] if force else [])],
                       capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.umask(0))
    assert "Traceback" not in r.stderr, r.stderr
    return r


def _victim(tmp_path):
    v = tmp_path / "victim"
    v.write_bytes(VICTIM)
    v.chmod(0o644)
    return v


def _untouched(victim):
    assert victim.read_bytes() == VICTIM and stat.S_IMODE(victim.stat().st_mode) == 0o644


def _private_file(path):
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, f"{path}: {st}"


def _refused(r, expect):
    if expect == "ok":
        assert r.returncode == 0 and "warning" in r.stderr, r.stderr
    else:
        assert r.returncode != 0, r.stderr
        assert len([line for line in r.stderr.splitlines() if "error" in line]) == 1, r.stderr


# writer name -> the key of ``inputs`` it reads
READS = {"kdump dump": "src", "ELF dump": "src", "--split part": "src", "-R": "flat", "--reassemble": "parts",
         "convert": "kdump", "dmesg": "src", "--dump-dmesg": "src", "--stats-json": "src"}


def _sha(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("at", ["", ".incomplete"])
def test_an_output_that_is_an_input_is_refused_even_with_force(inputs, tmp_path, writer, at):
    """The output named as what the run reads (or the output's .incomplete name as it): with
    -f it used to be replaced by the dump (or by the statistics, or removed), the only copy
    of the crash gone.  Refused before anything is written, one line, exit status 2."""
    argv, _ = WRITERS[writer]
    name = str(tmp_path / "out")
    given = dict(inputs)
    if READS[writer] == "parts":
        given["parts"] = [str(tmp_path / "p1"), name + at]
        for src, dst in zip(inputs["parts"], given["parts"]):
            shutil.copyfile(src, dst)
    else:
        given[READS[writer]] = name + at
        shutil.copyfile(inputs[READS[writer]], name + at)
    before = _sha(name + at)
    left = set(os.listdir(tmp_path))
    r = _run(argv(given, name), force=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [f"fastdump: error: {name + at} is the input {name + at}: a dump "
                                             f"cannot be written over what it is read from, even with -f"]
    assert _sha(name + at) == before and set(os.listdir(tmp_path)) == left


def test_rebuilding_a_stream_into_the_file_it_comes_from_is_refused(inputs, tmp_path):
    stream = str(tmp_path / "stream")
    shutil.copyfile(inputs["flat"], stream)
    before = _sha(stream)
    with open(stream, "rb") as f:
        r = subprocess.run([sys.executable, "-m", "fastdump", "-R", "-f", stream], stdin=f,
                           capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "is standard input" in r.stderr, r.stderr
    assert _sha(stream) == before


@pytest.mark.parametrize("how", ["two parts", "a part twice by another path", "statistics over the dump"])
def test_one_name_given_twice_as_an_output_is_refused(inputs, tmp_path, how):
    """--split p p with -f wrote part 2 over part 1 (half the dump gone, exit 0); the
    statistics named as the dump replaced it with JSON."""
    p = str(tmp_path / "p")
    argv = {"two parts": ["--split", "-d", "31", inputs["src"], p, p],
            "a part twice by another path": ["--split", "-d", "31", inputs["src"], p,
                                             os.path.join(str(tmp_path), ".", "p")],
            "statistics over the dump": ["-d", "31", "--stats-json", p, inputs["src"], p]}[how]
    r = _run(argv, force=True)
    assert r.returncode == 2 and "is named twice as an output" in r.stderr, r.stderr
    assert os.listdir(tmp_path) == []


def test_split_refuses_an_existing_part_before_writing_any(inputs, tmp_path):
    first, second = str(tmp_path / "first"), tmp_path / "second"
    second.write_bytes(VICTIM)
    r = _run(["--split", "-d", "31", inputs["src"], first, str(second)], force=False)
    assert r.returncode != 0 and f"{second} exists" in r.stderr, r.stderr
    assert not os.path.exists(first) and not os.path.exists(first + ".incomplete")
    assert second.read_bytes() == VICTIM


def test_raw_target_keeps_what_a_file_standing_in_holds(inputs, tmp_path):
    """raw: on a regular file with data, or on a device (here a file) holding an earlier
    dump, overwrote it without -f; the source itself as raw: target, even with -f."""
    data = tmp_path / "rows"
    data.write_bytes(VICTIM * 4096)
    r = _run(["-F", "-d", "31", inputs["src"], f"raw:{data}"], force=False)
    assert r.returncode == 1 and "whose first bytes are not all zero" in r.stderr, r.stderr
    assert data.read_bytes() == VICTIM * 4096
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(64 * MiB))
    assert _run(["-F", "-z", "-d", "31", inputs["src"], f"raw:{disk}"], force=False).returncode == 0
    before = _sha(disk)
    r = _run(["-F", "-d", "1", inputs["src"], f"raw:{disk}"], force=False)
    assert r.returncode == 1 and "holds a flattened dump" in r.stderr, r.stderr
    assert _sha(disk) == before
    back = str(tmp_path / "back")
    fastdump_cli("-R", "--from-device", str(disk), back)       # the first dump, as it was
    r = _run(["-F", "-d", "1", inputs["src"], f"raw:{disk}"], force=True)
    assert r.returncode == 0, r.stderr
    src = str(tmp_path / "src")
    shutil.copyfile(inputs["src"], src)
    before = _sha(src)
    r = _run(["-F", "-d", "31", src, f"raw:{src}"], force=True)
    assert r.returncode == 2 and "is the input" in r.stderr, r.stderr
    assert _sha(src) == before


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("at", ["", ".incomplete"])
def test_symlink_at_the_name_is_never_followed(inputs, tmp_path, writer, at):
    argv, expect = WRITERS[writer]
    name = str(tmp_path / "out")
    victim = _victim(tmp_path)
    os.symlink(victim, name + at)
    _refused(_run(argv(inputs, name), force=False), expect)
    _untouched(victim)
    assert os.readlink(name + at) == str(victim)
    r = _run(argv(inputs, name), force=True)
    assert r.returncode == 0, r.stderr
    _untouched(victim)
    _private_file(name)
    assert not os.path.lexists(name + ".incomplete")


@pytest.mark.parametrize("writer", WRITERS)
def test_dangling_symlink_creates_nothing_behind_it(inputs, tmp_path, writer):
    argv, expect = WRITERS[writer]
    name, elsewhere = str(tmp_path / "out"), tmp_path / "elsewhere"
    for at in ("", ".incomplete"):
        os.symlink(f"{elsewhere}{at}", name + at)
    _refused(_run(argv(inputs, name), force=False), expect)
    assert not any(os.path.exists(f"{elsewhere}{at}") for at in ("", ".incomplete"))


@pytest.mark.parametrize("writer", WRITERS)
def test_existing_file_is_replaced_only_with_force(inputs, tmp_path, writer):
    argv, expect = WRITERS[writer]
    name = tmp_path / "out"
    name.write_bytes(VICTIM)
    _refused(_run(argv(inputs, str(name)), force=False), expect)
    assert name.read_bytes() == VICTIM
    assert _run(argv(inputs, str(name)), force=True).returncode == 0
    assert name.read_bytes() != VICTIM
    _private_file(name)


@pytest.mark.parametrize("writer", ["kdump dump", "dmesg"])
def test_force_never_removes_a_device_node_or_fifo(inputs, tmp_path, writer):
    argv, _ = WRITERS[writer]
    name = str(tmp_path / "out")
    os.mkfifo(name)
    r = _run(argv(inputs, name), force=True)
    assert r.returncode != 0 and "not a regular file" in r.stderr, r.stderr
    assert stat.S_ISFIFO(os.lstat(name).st_mode)


def test_demo_keeps_out_of_files_it_did_not_make(tmp_path):
    demo = tmp_path / "demo"
    demo.mkdir()
    victim = _victim(tmp_path)
    for name in ("vmcore.example", "vmcore.example.truth.json", "dump.kdump"):
        os.symlink(victim, demo / name)
        r = _run(["demo", "--size", "64", str(demo)], force=False)
        assert r.returncode != 0 and "exists" in r.stderr, r.stderr
        _untouched(victim)
        os.unlink(demo / name)
    os.symlink(victim, demo / "vmcore.example")
    assert _run(["demo", "--size", "64", str(demo)], force=True).returncode == 0
    _untouched(victim)
    for name in ("vmcore.example", "dump.kdump"):
        _private_file(demo / name)


def test_demo_directory_must_not_be_a_symlink(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "demo")
    r = _run(["demo", "--size", "64", str(tmp_path / "demo")], force=False)
    assert r.returncode != 0 and list(real.iterdir()) == []


def _dated_names(inputs, crash_dir, seconds=20):
    """The <host>-<date> names a run starting now can choose (the host as a first run shows it)."""
    if "host" not in inputs:
        probe = inputs["dir"] / "probe"
        probe.mkdir()
        fastdump_cli("-d", "31", inputs["src"], str(probe) + "/")
        (sub,) = probe.iterdir()
        inputs["host"] = sub.name[:-len("-YYYY-MM-DD-HH:MM:SS")]
    now = time.time()
    return [crash_dir / f"{inputs['host']}-{time.strftime('%Y-%m-%d-%H:%M:%S', time.localtime(now + s))}"
            for s in range(seconds)]


def test_directory_target_never_writes_through_a_planted_directory(inputs, tmp_path):
    crash, elsewhere = tmp_path / "crash", tmp_path / "elsewhere"
    crash.mkdir()
    elsewhere.mkdir()
    for name in _dated_names(inputs, crash):
        os.symlink(elsewhere, name)
    for force in (False, True):
        r = _run(["-d", "31", inputs["src"], str(crash) + "/"], force=force)
        assert r.returncode != 0, r.stderr
        assert list(elsewhere.iterdir()) == []


def test_directory_target_keeps_an_earlier_dump_without_force(inputs, tmp_path):
    crash = tmp_path / "crash"
    crash.mkdir()
    for name in _dated_names(inputs, crash):
        name.mkdir()
        (name / "vmcore").write_bytes(VICTIM)
    r = _run(["-d", "31", inputs["src"], str(crash) + "/"], force=False)
    assert r.returncode != 0 and "exists" in r.stderr, r.stderr
    assert all(sorted(os.listdir(name)) == ["vmcore"] and (name / "vmcore").read_bytes() == VICTIM
               for name in crash.iterdir())


def _size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


@contextlib.contextmanager
def _stopped_while_writing(argv, temp):
    """A fastdump run stopped (SIGSTOP) as soon as it has written into its temporary file."""
    p = subprocess.Popen([sys.executable, "-m", "fastdump", *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _size(temp) == 0:
            assert p.poll() is None and time.monotonic() < deadline, "the first run ended before it was stopped"
            time.sleep(0.001)
        p.send_signal(signal.SIGSTOP)
        yield p
    finally:
        p.send_signal(signal.SIGCONT)
        p.communicate(timeout=300)


def test_concurrent_run_with_force_cannot_take_over_a_dump_being_written(tmp_path):
    src = str(tmp_path / "big")
    SyntheticVmcore(VmcoreSpec(ram_size=256 * MiB)).write(src)
    name = str(tmp_path / "vmcore")
    with _stopped_while_writing(["--compress", "zlib", "--threads", "1", "-f", src, name],
                                name + ".incomplete") as first:
        second = _run(["-z", src, name], force=True)
        assert second.returncode != 0 and "another fastdump" in second.stderr, second.stderr
    assert first.returncode == 0, first.stderr
    _, got = kdumpfile_digests(name, max(elf_pages(src)) + 1)
    assert got == digests(elf_pages(src))


def test_level_list_does_not_replace_an_existing_dump(tmp_path, generated_kernel):
    """-d 1,31 with no room for level 1: the retry at 31 must still honour 'no -f'."""
    src, _ = generated_kernel(160 * MiB, encoding="6.12", seed=5)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120m", "tmpfs", str(mnt)], check=True)
    try:
        old = mnt / "vmcore"
        old.write_bytes(VICTIM)
        r = _run(["--compress", "none", "-d", "1,31", src, str(old)], force=False)
        assert r.returncode != 0 and old.read_bytes() == VICTIM, r.stderr
        assert not os.path.exists(str(old) + ".incomplete")
        r = _run(["--compress", "none", "-d", "1,31", src, str(old)], force=True)
        assert r.returncode == 0 and "retrying with dump level 31" in r.stderr, r.stderr
        with fastdump.open(str(old)) as d:
            assert d.dump_level == 31
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# -- device targets ------------------------------------------------------------------

@pytest.fixture
def ext4_loop(tmp_path):
    """A loop device holding an ext4 file system, and a file with a known byte pattern on it."""
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(64 * MiB))
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    dev = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        yield dev, image
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def _head(dev, n=1 << 20):
    with open(dev, "rb") as f:
        return f.read(n)


def test_block_device_as_a_plain_target_is_a_usage_error(inputs, ext4_loop):
    dev, _ = ext4_loop
    before = _head(dev)
    for force in (False, True):
        r = _run(["-z", "-d", "31", inputs["src"], dev], force=force)
        assert r.returncode == 2 and f"raw:{dev}" in r.stderr, r.stderr
        assert _head(dev) == before


def test_raw_target_refuses_a_mounted_device_and_a_file_system(inputs, ext4_loop, tmp_path):
    dev, image = ext4_loop
    before = _head(dev)
    r = _run(["-F", "-d", "31", inputs["src"], f"raw:{dev}"], force=False)
    assert r.returncode != 0 and "ext2/3/4" in r.stderr, r.stderr
    assert _head(dev) == before
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", dev, str(mnt)], check=True)
    try:
        (mnt / "keep").write_bytes(VICTIM)
        r = _run(["-F", "-d", "31", inputs["src"], f"raw:{dev}"], force=False)
        assert r.returncode != 0 and "in use" in r.stderr, r.stderr
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    subprocess.run(["mount", "-o", "ro", dev, str(mnt)], check=True)
    try:
        assert (mnt / "keep").read_bytes() == VICTIM
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    # a file standing in for a device holds a file system too: same rule
    r = _run(["-F", "-d", "31", inputs["src"], f"raw:{image}"], force=False)
    assert r.returncode != 0 and "ext2/3/4" in r.stderr, r.stderr
    # -f: the user says the file system may go; the dump then comes back from the device
    r = _run(["-F", "-z", "-d", "31", inputs["src"], f"raw:{dev}"], force=True)
    assert r.returncode == 0, r.stderr
    back = str(tmp_path / "back")
    fastdump_cli("-R", "--from-device", dev, back)
    with fastdump.open(back) as d:
        assert d.dump_level == 31


@pytest.mark.parametrize("planted", ["file", "symlink"])
def test_initrd_image_is_not_replaced_without_force(tmp_path, planted):
    """Refused before the build starts, so nothing of the image is made."""
    image, victim = tmp_path / "initrd.img", _victim(tmp_path)
    if planted == "file":
        image.write_bytes(VICTIM)
    else:
        os.symlink(victim, image)
    r = _run(["initrd", "-o", str(image), "--no-fastdump"], force=False)
    assert r.returncode != 0 and "exists" in r.stderr, r.stderr
    _untouched(victim)
    assert os.path.lexists(image) and sorted(os.listdir(tmp_path)) == sorted(["initrd.img", "victim"])
