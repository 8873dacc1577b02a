"""Standard streams that are closed or fail: stderr is best effort (progress and messages
never interrupt, fail or corrupt a dump, nor change its exit status); a closed stdout or
stdin that a command needs is one line ``fastdump: error: ...`` and status 1, with no file
left behind that claims to be complete."""

import io
import os
import subprocess
import sys

import pytest

import fastdump
from fastdump.commands.verify import verify
from fastdump.copy.progress import Progress
from fastdump.testing.generator import MiB

#: stderr as the command gets it: closed (Python's sys.stderr is None), open read-only (every
#: write EBADF, as the pyenv shim leaves it after ``2>&-``), a full device, a pipe nobody reads
STDERR_KINDS = ["closed", "read-only", "full", "reader gone"]


def run_cli(args, *, cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            close=""):
    """``python3 -m fastdump ARGS`` with the streams given; ``close`` names the descriptors
    ("0", "1", "2") the shell closes before starting it."""
    argv = [sys.executable, "-m", "fastdump", *args]
    if close:
        argv = ["sh", "-c", '"$@" ' + " ".join(f"{fd}>&-" if fd != "0" else "<&-" for fd in close), "sh"] + argv
    return subprocess.run(argv, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr, timeout=300)


def run_with_stderr(kind, args, *, cwd, stdout=subprocess.PIPE):
    if kind == "closed":
        return run_cli(args, cwd=cwd, stdout=stdout, stderr=subprocess.DEVNULL, close="2")
    if kind == "reader gone":
        r, w = os.pipe()
        os.close(r)
        try:
            return run_cli(args, cwd=cwd, stdout=stdout, stderr=w)
        finally:
            os.close(w)
    with open("/dev/null" if kind == "read-only" else "/dev/full", "r" if kind == "read-only" else "w") as err:
        return run_cli(args, cwd=cwd, stdout=stdout, stderr=err)


def assert_saved(path, source):
    assert os.path.exists(path), os.listdir(os.path.dirname(path))
    assert not [n for n in os.listdir(os.path.dirname(path)) if "incomplete" in n]
    with fastdump.open(path) as d:
        assert not d.incomplete
    assert verify(path, source)["ok"]


def assert_one_line_error(r, what):
    err = r.stderr.decode(errors="replace")
    lines = [line for line in err.splitlines() if line.strip()]
    assert r.returncode == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(lines) == 1 and lines[0].startswith("fastdump: error: ") and what in lines[0], err


@pytest.mark.parametrize("kind", STDERR_KINDS)
@pytest.mark.parametrize("args", [["-c", "-d", "0", "--threads", "1"],
                                  ["-l", "-d", "1", "--progress", "lines"],
                                  ["-l", "-d", "1", "--progress", "quiet"]])
def test_a_failing_stderr_neither_fails_nor_changes_a_dump(vmcore, tmp_path, kind, args):
    """The dump is saved, its status is 0, and nothing meant for stderr lands on stdout
    (``print(file=None)`` writes there); a dump that does fail still says so by its status."""
    out = tmp_path / "dump"
    r = run_with_stderr(kind, [*args, vmcore, str(out)], cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout == b""
    assert_saved(str(out), vmcore)
    with open("/dev/full", "wb") as full:   # -F data that cannot be written: still a failure
        r = run_with_stderr(kind, ["-F", "-l", "-d", "1", vmcore, "-"], cwd=tmp_path, stdout=full)
    assert r.returncode == 1


@pytest.mark.parametrize("kind", STDERR_KINDS)
def test_a_failing_stderr_leaves_the_flattened_stream_whole(vmcore, tmp_path, kind):
    """-F to stdout: no progress or message is mixed into the stream, which rebuilds into a
    complete dump of the source."""
    stream = tmp_path / "stream"
    with open(stream, "wb") as f:
        r = run_with_stderr(kind, ["-F", "-l", "-d", "1", vmcore, "-"], cwd=tmp_path, stdout=f)
    assert r.returncode == 0
    rebuilt = tmp_path / "rebuilt"
    with open(stream, "rb") as f:
        r = run_cli(["-R", str(rebuilt)], cwd=tmp_path, stdin=f)
    assert r.returncode == 0, r.stderr
    assert_saved(str(rebuilt), vmcore)


@pytest.fixture(scope="module")
def kernel_with_log(generated_kernel):
    return generated_kernel(64 * MiB, seed=7, printk="lockless")[0]


@pytest.fixture(scope="module")
def saved_dump(vmcore, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("saved") / "dump")
    fastdump.dump(vmcore, path, level=1, compress="lz4")
    return path


@pytest.mark.parametrize("case", ["-F -", "no target", "--dump-dmesg", "dmesg", "info", "verify"])
def test_a_closed_stdout_is_one_line_error(vmcore, kernel_with_log, saved_dump, tmp_path, case):
    args = {"-F -": ["-q", "-F", "-z", "-d", "31", vmcore, "-"],
            "no target": ["-l", "-d", "1", vmcore],
            "--dump-dmesg": ["--dump-dmesg", kernel_with_log],
            "dmesg": ["dmesg", kernel_with_log],
            "info": ["info", saved_dump],
            "verify": ["verify", saved_dump, vmcore]}[case]
    r = run_cli(args, cwd=tmp_path, close="1")
    assert_one_line_error(r, "standard output is closed")
    assert os.listdir(tmp_path) == []


def test_a_closed_stdin_is_one_line_error(tmp_path):
    r = run_cli(["-R", "rebuilt"], cwd=tmp_path, close="0")
    assert_one_line_error(r, "standard input is closed")
    assert os.listdir(tmp_path) == []


def test_a_closed_stdout_is_a_failed_target_the_next_one_takes(vmcore, tmp_path):
    """``- --target FILE``: stdout closed is that target failing; the dump goes to the next.
    A dump to a file with stdout closed and --show-stats (a report for stdout) is saved too."""
    out = tmp_path / "dump"
    r = run_cli(["-l", "-d", "1", vmcore, "-", "--target", str(out)], cwd=tmp_path, close="1")
    assert r.returncode == 0, r.stderr
    assert b"standard output is closed" in r.stderr
    assert_saved(str(out), vmcore)
    other = tmp_path / "other"
    r = run_cli(["-l", "-d", "1", "--show-stats", vmcore, str(other)], cwd=tmp_path, close="1")
    assert r.returncode == 0, r.stderr
    assert_saved(str(other), vmcore)


class _Failing(io.StringIO):
    def write(self, text):
        raise OSError(28, "No space left on device")

    def isatty(self):
        return True


@pytest.mark.parametrize("mode", ["auto", "bar", "lines"])
def test_progress_on_a_failing_stream_goes_quiet(mode):
    p = Progress(mode, stream=_Failing(), interval=0)
    p.phase("copying", 10)
    p.update(5)
    p.message("hello")
    p.update(5)
    p.close()
    assert p.mode == "quiet"


def test_progress_without_stderr_writes_nothing_to_stdout(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stderr", None)
    p = Progress("lines", interval=0)
    p.phase("copying", 10)
    p.update(10)
    p.message("hello")
    p.close()
    monkeypatch.undo()
    assert capsys.readouterr().out == ""
