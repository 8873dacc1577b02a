"""The command line as a capture script and a user meet it."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

import fastdump
from fastdump.formats import kdump
from fastdump.testing.generator import MiB
from support import fastdump_cli, kdumpfile_digests, one_line_error


def test_console_script_and_module_entry():
    assert shutil.which("fastdump"), "pip install . provides the fastdump command"
    r = subprocess.run(["fastdump", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "fastdump" in r.stdout
    assert fastdump_cli("--help").stdout.count("--dump-level") == 1


def test_dump_makedumpfile_spelling(vmcore, tmp_path):
    out = str(tmp_path / "vmcore")
    stats_file = str(tmp_path / "stats.json")
    r = fastdump_cli("-c", "-d", "1", "--num-threads", "2", "--message-level", "7", "--progress", "lines",
                     "--stats-json", stats_file, vmcore, out)
    assert "wrote" in r.stderr and "copying 100.0%" in r.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    stats = json.load(open(stats_file))
    assert stats["dump_level"] == 1 and stats["compress"] == "zlib" and stats["threads"] == 2
    assert stats["pages_kept"] > 0 and stats["excluded"]["zero"] == stats["pages_zero"] > 0
    # bytes handed to the file: each byte once but the header block, written first flagged
    # incomplete and at the end with the checksum trailer; only header padding is not written
    assert -4096 <= os.path.getsize(out) - stats["bytes_written"] < 3 * 4096
    phases = stats["phase_seconds"]    # where the time went (the bench reads it)
    assert set(phases) == {"open", "classify", "write"} and phases["write"] > 0 and phases["classify"] >= 0
    assert abs(sum(phases.values()) - stats["seconds"]) < 0.01
    with fastdump.open(out) as d:
        assert d.describe()["compression"] == "zlib"


def test_quiet_prints_nothing(vmcore, tmp_path):
    r = fastdump_cli("-q", "-z", "-d", "1", vmcore, str(tmp_path / "o"))
    assert r.stderr == "" and r.stdout == ""
    # the makedumpfile modes take -q too (a capture script passes the same flags)
    parts = [str(tmp_path / f"p{i}") for i in range(2)]
    fastdump_cli("-q", "--split", "-z", "-d", "1", vmcore, *parts)
    r = fastdump_cli("--reassemble", "-q", *parts, str(tmp_path / "joined"))
    assert r.stderr == "" and r.stdout == ""
    stream = subprocess.run([sys.executable, "-m", "fastdump", "-q", "-F", "-z", "-d", "1", vmcore],
                            capture_output=True, check=True).stdout
    r = subprocess.run([sys.executable, "-m", "fastdump", "-R", "-q", str(tmp_path / "rebuilt")], input=stream,
                       capture_output=True)
    assert r.returncode == 0 and r.stderr == b"" and r.stdout == b""


def test_existing_target_needs_force(vmcore, tmp_path):
    out = tmp_path / "vmcore"
    out.write_bytes(b"precious")
    err = one_line_error(fastdump_cli("-d", "1", vmcore, str(out), check=False))
    assert "exists" in err and out.read_bytes() == b"precious"
    fastdump_cli("-f", "-d", "1", vmcore, str(out))
    assert out.read_bytes()[:8] == kdump.SIGNATURE


def test_symlink_in_target_place_is_not_followed(vmcore, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "vmcore.incomplete").symlink_to(victim)
    one_line_error(fastdump_cli("-d", "1", vmcore, str(tmp_path / "vmcore"), check=False))
    assert victim.read_bytes() == b"keep"


@pytest.mark.parametrize("make,expect", [
    (lambda p: p.write_bytes(b"this is not a vmcore" * 10), "not an ELF"),
    (lambda p: None, "cannot open"),
    (lambda p: p.write_bytes(b""), "not an ELF"),
])
def test_bad_source_is_one_line(tmp_path, make, expect):
    src = tmp_path / "src"
    make(src)
    err = one_line_error(fastdump_cli("-d", "1", str(src), str(tmp_path / "o"), check=False))
    assert expect in err
    assert not list(tmp_path.glob("o*"))


@pytest.mark.parametrize("args,code", [(["-d", "32"], 2), (["--compress", "lzma"], 2), (["-E", "-z"], 2)])
def test_bad_options(vmcore, tmp_path, args, code):
    r = fastdump_cli(*args, vmcore, str(tmp_path / "o"), check=False)
    one_line_error(r)
    assert r.returncode == code


def test_info(vmcore, tmp_path):
    out = str(tmp_path / "d")
    fastdump_cli("-z", "-d", "1", vmcore, out)
    r = fastdump_cli("info", out)
    assert "kdump-compressed" in r.stdout and "6.1.0-fastdump-synthetic" in r.stdout and "zero" in r.stdout
    info = json.loads(fastdump_cli("info", "--json", vmcore).stdout)
    assert info["format"] == "elf" and info["nr_cpus"] == 2
    one_line_error(fastdump_cli("info", str(tmp_path / "nothing"), check=False))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_dump_is_marked_incomplete_and_readable(tmp_path, sig, generated_vmcore):
    src = generated_vmcore(ram_size=1024 * MiB, mix={"random": 1}, seed=5)
    out = str(tmp_path / "vmcore")
    # A job started in the background by a non-interactive shell (a CI runner, `cmd &`)
    # inherits SIGINT ignored, and Python then keeps ignoring it, as it should: give the
    # child the default disposition, as an interactive Ctrl-C would find it.
    p = subprocess.Popen([sys.executable, "-m", "fastdump", "-c", "-d", "1", "--threads", "1", "-q", src, out],
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and not (os.path.exists(out + ".incomplete")
                                          and os.path.getsize(out + ".incomplete") > 24 << 20):
        time.sleep(0.05)
    p.send_signal(sig)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130, err
    assert "incomplete" in err and "Traceback" not in err
    assert not os.path.exists(out)
    partial = out + ".incomplete"
    assert stat.S_IMODE(os.stat(partial).st_mode) == 0o600
    with fastdump.open(partial) as d:
        assert d.incomplete
        written = [pfn for pfn in list(d.pfns())[:20000] if d.descriptor(pfn)[0] != 0]
        assert written
        for pfn in written[:50]:
            assert len(d.read_pfn(pfn)) == 4096
    fmt, got = kdumpfile_digests(partial, 300)
    assert fmt == "diskdump" and got


# -- every bad option is one clear error (class 8) ---------------------------------------

BAD_API_ARGS = [dict(level=[]), dict(level="1"), dict(level=1.5), dict(level=True), dict(level=[1, 40]),
                dict(format="elf", elf_class=16), dict(elf_class="64"), dict(compress=[]), dict(compress=None),
                dict(format=None), dict(threads=0), dict(threads=-1), dict(threads="2"), dict(window_bytes="1M"),
                dict(window_bytes=0), dict(progress=5), dict(targets=5), dict(split_block_pfns="a"),
                dict(use_mmap="yes"), dict(force="no"), dict(mem_map=5), dict(stats_json=5), dict(target=7),
                dict(target=None, split=[3, 4]), dict(warn="print")]


@pytest.mark.parametrize("kw", BAD_API_ARGS, ids=lambda kw: ",".join(f"{k}={v!r}" for k, v in kw.items()))
def test_api_bad_arguments_are_usage_errors(vmcore, tmp_path, kw):
    kw = {"target": str(tmp_path / "out"), **kw}
    with pytest.raises(fastdump.errors.UsageError):
        fastdump.dump(vmcore, **kw)
    assert not os.listdir(tmp_path)


def test_api_takes_path_objects(vmcore, tmp_path):
    import pathlib
    from fastdump.commands.convert import convert
    from fastdump.commands.verify import verify
    out = tmp_path / "dump"
    stats = fastdump.dump(pathlib.Path(vmcore), out, level=1, compress="zstd", stats_json=tmp_path / "s.json")
    assert out.exists() and stats.pages_kept and json.loads((tmp_path / "s.json").read_text())
    with fastdump.open(out) as d:
        assert d.format == "kdump"
    assert verify(out, pathlib.Path(vmcore))["ok"]
    assert convert(out, tmp_path / "conv", level=1).pages_kept == stats.pages_kept


def test_a_file_descriptor_is_refused_and_stays_open(vmcore, tmp_path):
    """fastdump.open(fd) (and every other path argument) refuses an int: it never reads
    or closes a descriptor it does not own."""
    from fastdump.commands.convert import convert
    from fastdump.commands.verify import verify
    fd = os.open(vmcore, os.O_RDONLY)
    try:
        calls = [lambda: fastdump.open(fd), lambda: verify(fd), lambda: convert(fd, str(tmp_path / "c")),
                 lambda: fastdump.dump(fd, str(tmp_path / "d")),
                 lambda: fastdump.dump(vmcore, str(tmp_path / "d"), stats_json=fd)]
        for call in calls:
            with pytest.raises(fastdump.errors.UsageError, match="must be a path"):
                call()
            os.fstat(fd)                                   # still ours, still open
        assert os.pread(fd, 4, 0) == b"\x7fELF"
    finally:
        os.close(fd)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("args", [["--threads", "0"], ["--num-threads", "-1"], ["--threads", "100000"],
                                  ["--window", "0"], ["--window", "1e999m"], ["--message-level", "99"],
                                  ["--message-level", "-1"], ["--split", "--splitblock-size", "0"]])
def test_out_of_range_numbers_are_usage_errors(vmcore, tmp_path, args):
    extra = [str(tmp_path / "p2")] if "--split" in args else []
    r = fastdump_cli("-d", "1", *args, vmcore, str(tmp_path / "o"), *extra, check=False)
    assert "internal error" not in one_line_error(r)
    assert r.returncode == 2
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("cmd", [["verify", "--threads", "0", "DUMP"], ["convert", "--threads", "0", "DUMP", "OUT"],
                                 ["demo", "--size", "0", "OUT"], ["-R", "--message-level", "40", "OUT"]])
def test_subcommand_numbers_are_checked_too(vmcore, tmp_path, cmd):
    cmd = [vmcore if a == "DUMP" else str(tmp_path / "o") if a == "OUT" else a for a in cmd]
    r = fastdump_cli(*cmd, check=False)
    assert "internal error" not in one_line_error(r)
    assert r.returncode == 2
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.parametrize("line", ['threads = 0', 'threads = true', 'dump_level = ["a"]', 'dump_level = []',
                                  'dump_level = 99', 'targets = [1]', 'window = "abc"', 'window = "1e999m"',
                                  'window = 0', 'message_level = -1', 'compress = "lzma"', 'format = 5',
                                  'source = ""', 'force = "yes"'])
def test_bad_config_values_are_usage_errors(vmcore, tmp_path, line):
    key = line.split()[0]
    cfg = {"source": f"source = {json.dumps(vmcore)}", "targets": f"targets = [{json.dumps(str(tmp_path / 'o'))}]"}
    cfg[key] = line
    (tmp_path / "c.toml").write_text("\n".join(cfg.values()) + "\n")
    r = fastdump_cli("--settings", str(tmp_path / "c.toml"), check=False)
    assert "internal error" not in one_line_error(r)
    assert r.returncode == 2
    assert os.listdir(tmp_path) == ["c.toml"]


def test_options_are_checked_before_anything_runs(vmcore, tmp_path):
    """The command line builds its one DumpOptions first: a combination only that check
    refuses (-F to a file) fails before --vtop prints its translation, and writes nothing."""
    out = tmp_path / "vmcore"
    r = fastdump_cli("--vtop", "0xffffffff81000000", "-F", "-l", vmcore, str(out), check=False)
    assert "-F writes a stream" in one_line_error(r)
    assert r.stdout == "" and not out.exists()


def test_a_dump_does_not_import_what_start_up_was_rid_of(vmcore, tmp_path):
    """dataclasses (with inspect, ast, dis), typing, concurrent.futures (with logging) and
    shutil cost a dump about 50 ms of start-up together; none is needed to write one."""
    code = ("import sys; from fastdump.commands.cli import main; rc = main(sys.argv[1:]); "
            "heavy = {'dataclasses', 'inspect', 'typing', 'concurrent.futures', 'logging', 'shutil'}; "
            "print(sorted(heavy & set(sys.modules))); sys.exit(rc)")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastdump.__file__)))
    for args in (["-l", "-d", "31"], ["-z", "-d", "1", "--stats-json", str(tmp_path / "s.json")]):
        out = str(tmp_path / f"d{args[2]}")
        r = subprocess.run([sys.executable, "-S", "-c", code, *args, vmcore, out], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.strip() == "[]", r.stdout


@pytest.mark.parametrize("columns", ["50", "140", "0", "x", None])
def test_help_width_is_what_argparse_would_ask_of_shutil(monkeypatch, columns):
    """fastdump's parsers ask the width themselves (argparse would import shutil for it):
    the same answer as shutil.get_terminal_size, less argparse's margin of 2."""
    from fastdump.commands.parsing import help_width
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert help_width() == shutil.get_terminal_size().columns - 2


def test_help_is_wrapped_to_that_width():
    narrow = fastdump_cli("--help", env=dict(os.environ, COLUMNS="60")).stdout.splitlines()
    wide = fastdump_cli("--help", env=dict(os.environ, COLUMNS="200")).stdout.splitlines()
    assert len(narrow) > len(wide)


def _launcher_env():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastdump.__file__)))
    env.pop("PYTHONUNBUFFERED", None)      # stdout block-buffered, as in a capture kernel's pipe
    return env


def test_the_launcher_exits_with_the_dump_whole(vmcore, source_pages, tmp_path):
    """The launcher's run() ends the process with os._exit, skipping the interpreter's
    teardown: the kdump file, and the flattened stream through a pipe, must be whole by
    then, as libkdumpfile and makedumpfile -R read them, page for page."""
    from fastdump.deploy.payload import LAUNCH_CODE
    from support import digests, need_tool
    launch = [sys.executable, "-S", "-c", LAUNCH_CODE]
    out = tmp_path / "dump"
    r = subprocess.run(launch + ["-l", "-d", "0", vmcore, str(out)], env=_launcher_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    want = digests(source_pages)
    assert kdumpfile_digests(str(out), max(source_pages) + 1)[1] == want
    rebuilt = tmp_path / "rebuilt"
    stream = subprocess.Popen(launch + ["-F", "-l", "-d", "0", vmcore], env=_launcher_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    m = subprocess.run([need_tool("makedumpfile"), "-R", str(rebuilt)], stdin=stream.stdout,
                       capture_output=True, text=True, timeout=300)
    stream.stdout.close()
    assert stream.wait(timeout=300) == 0, stream.stderr.read()[-2000:]
    assert m.returncode == 0, (m.stdout + m.stderr)[-2000:]
    assert kdumpfile_digests(str(rebuilt), max(source_pages) + 1)[1] == want


@pytest.mark.parametrize("entry, stdout, status, err", [
    ("lambda: 3", "keep", 3, ""),
    ("lambda: 0", "closed", 0, ""),                     # no stdout at all is not a failure
    ("lambda: sys.exit('bad things')", "keep", 1, "bad things"),
    ("lambda: (print('x'), time.sleep(0.5), 0)[2]", "reader gone", 1,
     "fastdump: error: cannot write to standard output: Broken pipe"),
])
def test_run_exit_status(entry, stdout, status, err):
    """run()'s own status rules, as the process ends with os._exit: main()'s status, a
    SystemExit's message, stdout never opened, and the last flush failing (one line)."""
    code = f"import sys, time; from fastdump.commands.cli import run; run({entry})"
    argv = [sys.executable, "-S", "-c", code]
    if stdout == "closed":
        argv = ["sh", "-c", '"$@" >&-', "sh"] + argv
    p = subprocess.Popen(argv, env=_launcher_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    if stdout == "reader gone":
        p.stdout.close()                                # before the child's buffered write
        got_err = p.stderr.read()
    else:
        _, got_err = p.communicate(timeout=60)
    assert p.wait(timeout=60) == status, got_err
    assert got_err.strip() == err
