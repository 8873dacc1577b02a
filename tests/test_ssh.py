"""ssh:// targets against a real sshd on loopback (started here, stopped after)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

import fastdump
from support import digests, fastdump_cli, kdumpfile_digests, need_tool, stop_process

FASTDUMP = [sys.executable, "-m", "fastdump"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    def __init__(self, base, *, remote_path, user="root"):
        self.base, self.user = base, user
        need_tool("/usr/sbin/sshd")
        need_tool("ssh-keygen")
        base.mkdir(exist_ok=True)
        self.port = _free_port()
        hostkey, self.userkey = base / "hostkey", base / "userkey"
        for key in (hostkey, self.userkey):
            if not key.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        import tempfile
        self.keys_dir = tempfile.mkdtemp(prefix="fdtest-keys-")   # readable by the target account
        os.chmod(self.keys_dir, 0o755)
        authorized = os.path.join(self.keys_dir, "authorized")
        with open(authorized, "w") as f:
            f.write((base / "userkey.pub").read_text())
        os.chmod(authorized, 0o644)
        self.known = base / "known_hosts"
        self.known.write_text(f"[127.0.0.1]:{self.port} {(base / 'hostkey.pub').read_text()}")
        self.config = base / f"sshd_config_{self.port}"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {hostkey}\nAuthorizedKeysFile {authorized}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            f"StrictModes no\nUsePAM no\nPidFile {base / f'pid{self.port}'}\nSetEnv PATH={remote_path}\n")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(self.config)],
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"sshd did not start: {self.proc.stderr.read()}")
                time.sleep(0.1)
        raise AssertionError("sshd did not start listening in 20 s")

    def target(self, path):
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"

    def options(self):
        return ["--ssh-key", str(self.userkey), "--known-hosts", str(self.known)]

    def stop(self):
        stop_process(self.proc, timeout=10)
        subprocess.run(["pkill", "-f", str(self.config)], check=False)
        shutil.rmtree(self.keys_dir, ignore_errors=True)


@pytest.fixture
def sshd_with_fastdump(tmp_path):
    bindir = os.path.dirname(shutil.which("fastdump"))
    d = Sshd(tmp_path / "ssh", remote_path=f"{bindir}:{os.path.dirname(sys.executable)}:/usr/bin:/bin")
    yield d
    d.stop()


@pytest.fixture
def sshd_plain(tmp_path):
    """The far side is a plain account without fastdump on its PATH."""
    need_tool("useradd")
    user = "fdtest"
    subprocess.run(["userdel", "-r", user], capture_output=True)
    import tempfile
    home = tempfile.mkdtemp(prefix="fdtest-home-")       # outside pytest's root-only tree
    os.chmod(home, 0o755)
    subprocess.run(["useradd", "-M", "-d", home, "-s", "/bin/sh", "-p", "*", user], check=True)  # not locked
    shutil.chown(home, user)
    d = Sshd(tmp_path / "ssh", remote_path="/usr/bin:/bin", user=user)
    d.home = home
    try:
        yield d
    finally:
        d.stop()
        subprocess.run(["userdel", user], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _descendants(pid):
    out = []
    for child in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split():
        out += [int(child)] + _descendants(int(child))
    return out


def _only_dir(path):
    (sub,) = list(path.iterdir())
    return sub


def test_ssh_rebuilds_on_the_far_side(vmcore, source_pages, tmp_path, sshd_with_fastdump):
    remote = tmp_path / "remote"
    remote.mkdir()
    fastdump_cli("-z", "-d", "1", *sshd_with_fastdump.options(), vmcore, sshd_with_fastdump.target(str(remote)))
    sub = _only_dir(remote)
    assert os.listdir(sub) == ["vmcore"]
    _, got = kdumpfile_digests(str(sub / "vmcore"), max(source_pages) + 1)
    assert got == digests(source_pages)


def test_ssh_without_fastdump_leaves_a_flat_file(vmcore, source_pages, tmp_path, sshd_plain):
    import pathlib
    remote = pathlib.Path(sshd_plain.home) / "crash"
    remote.mkdir()
    shutil.chown(remote, sshd_plain.user)
    fastdump_cli("-z", "-d", "1", *sshd_plain.options(), vmcore, sshd_plain.target(str(remote)))
    sub = _only_dir(remote)
    assert sorted(os.listdir(sub)) == ["README", "vmcore.flat"]
    assert "fastdump -R" in (sub / "README").read_text()
    out = str(tmp_path / "rebuilt")
    with open(sub / "vmcore.flat", "rb") as f:
        subprocess.run(FASTDUMP + ["-R", out], stdin=f, check=True)
    _, got = kdumpfile_digests(out, max(source_pages) + 1)
    assert got == digests(source_pages)


def test_unknown_host_key_is_refused_and_the_next_target_used(vmcore, tmp_path, sshd_plain):
    sshd_plain.known.write_text("")
    local = str(tmp_path / "local")
    r = fastdump_cli("-z", "-d", "1", *sshd_plain.options(), vmcore, "--target",
                     sshd_plain.target(str(tmp_path)), "--target", local)
    assert "Host key verification failed" in r.stderr or "ssh failed" in r.stderr or "ssh ended" in r.stderr
    assert os.path.exists(local)


def test_key_readable_by_others_is_refused(vmcore, tmp_path, sshd_plain):
    os.chmod(sshd_plain.userkey, 0o644)
    r = fastdump_cli("-z", *sshd_plain.options(), vmcore, sshd_plain.target("/tmp"), check=False)
    assert r.returncode == 2 and "readable by others" in r.stderr and "Traceback" not in r.stderr


def test_target_strings_never_reach_a_shell(vmcore, tmp_path, sshd_with_fastdump):
    evil = tmp_path / "remote; touch PWNED"
    evil.mkdir()
    fastdump_cli("-z", "-d", "1", *sshd_with_fastdump.options(), vmcore, sshd_with_fastdump.target(str(evil)))
    assert not (tmp_path / "PWNED").exists() and not os.path.exists("PWNED")
    assert (_only_dir(evil) / "vmcore").exists()


def test_dropped_connection_marks_incomplete_and_moves_on(tmp_path, sshd_with_fastdump, generated_vmcore):
    from fastdump.testing.generator import MiB
    src = generated_vmcore(ram_size=1024 * MiB, mix={"random": 1}, seed=5)   # test_cli's interrupted dump's
    remote = tmp_path / "remote"
    remote.mkdir()
    local = str(tmp_path / "local")
    p = subprocess.Popen(FASTDUMP + ["-c", "-d", "1", "--threads", "1", *sshd_with_fastdump.options(), src,
                                     "--target", sshd_with_fastdump.target(str(remote)), "--target", local],
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        subs = list(remote.iterdir())
        if subs and any(f.stat().st_size > 8 << 20 for f in subs[0].iterdir()):
            break
        time.sleep(0.1)
    for pid in _descendants(sshd_with_fastdump.proc.pid):   # the sessions: the connection drops
        os.kill(pid, signal.SIGKILL)
    err = p.communicate(timeout=300)[1]
    assert p.returncode == 0, err
    assert "trying" in err and "Traceback" not in err
    with fastdump.open(local) as d:
        assert not d.incomplete
    partial = list(_only_dir(remote).iterdir())
    assert partial and all(f.name.endswith(("incomplete", ".flat")) for f in partial)


def test_far_side_never_writes_through_a_planted_directory(vmcore, tmp_path, sshd_plain):
    """The remote <host>-<date> directory is made fresh: a symlink planted at its name is not used."""
    import pathlib
    probe = tmp_path / "probe"
    probe.mkdir()
    fastdump_cli("-d", "31", vmcore, str(probe) + "/")
    host = _only_dir(probe).name[:-len("-YYYY-MM-DD-HH:MM:SS")]
    remote, elsewhere = pathlib.Path(sshd_plain.home) / "crash", pathlib.Path(sshd_plain.home) / "elsewhere"
    for d in (remote, elsewhere):
        d.mkdir()
        shutil.chown(d, sshd_plain.user)
    now = time.time()
    for s in range(30):
        os.symlink(elsewhere, remote / f"{host}-{time.strftime('%Y-%m-%d-%H:%M:%S', time.localtime(now + s))}")
    r = fastdump_cli("-z", "-d", "31", *sshd_plain.options(), vmcore, sshd_plain.target(str(remote)), check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("how", ["size limit", "SIGTERM"])
def test_without_fastdump_a_stream_cut_short_is_never_named_vmcore_flat(vmcore, tmp_path, sshd_plain, how):
    """cat on the far side ends at EOF whether the stream was whole or not: a run cut short
    left vmcore.flat and its README, exactly what a complete one leaves.  Now the stream
    lands as vmcore.flat.incomplete and only a finished run names it."""
    import pathlib
    remote = pathlib.Path(sshd_plain.home) / "crash"
    remote.mkdir()
    shutil.chown(remote, sshd_plain.user)
    argv = FASTDUMP + ["--compress", "none", "-d", "0", "--threads", "1", *sshd_plain.options(), vmcore,
                       sshd_plain.target(str(remote))]
    if how == "size limit":
        r = subprocess.run(argv[:3] + ["-L", "5M"] + argv[3:], capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and "size limit" in r.stderr, r.stderr
    else:
        p = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while time.time() < deadline and not any(f.stat().st_size > 4 << 20 for d in remote.iterdir()
                                                 for f in d.iterdir()):
            time.sleep(0.02)
        p.send_signal(signal.SIGTERM)
        err = p.communicate(timeout=120)[1]
        assert p.returncode != 0 and "incomplete" in err, err
    assert os.listdir(_only_dir(remote)) == ["vmcore.flat.incomplete"]


@pytest.mark.slow
def test_a_host_that_never_answers_is_given_up_for_the_next_target(vmcore, tmp_path):
    """A host that takes the connection and then says nothing held the run for ever (no
    ConnectTimeout), and the next --target was never tried."""
    import threading
    deaf = socket.socket()
    deaf.bind(("127.0.0.1", 0))
    deaf.listen(4)
    held = []
    threading.Thread(target=lambda: held.append(deaf.accept()), daemon=True).start()
    local = str(tmp_path / "local")
    t0 = time.monotonic()
    r = subprocess.run(FASTDUMP + ["-z", "-d", "1", vmcore, "--target",
                                   f"ssh://root@127.0.0.1:{deaf.getsockname()[1]}/tmp/x", "--target", local],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and "trying" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 120
    with fastdump.open(local) as d:
        assert not d.incomplete
    deaf.close()
