"""`fastdump initrd`: the image runs fastdump as a capture kernel would, from nothing but itself.

The image is unpacked and fastdump runs in a chroot of it (a private mount namespace with /proc
and /dev), with stderr on a terminal as /init gives it the console.  Booting it is tests/e2e."""

import glob
import gzip
import os
import pathlib
import shutil
import subprocess
import time

import pytest

from support import digests, kdumpfile_digests, need_tool
from test_ssh import sshd_plain  # noqa: F401  (the fixture: a real sshd on loopback, no fastdump there)


def on_terminal(argv, **kw):
    """Run ``argv`` with stderr on a pseudo-terminal; (result, what the terminal showed)."""
    leader, follower = os.openpty()
    try:
        r = subprocess.run(argv, stderr=follower, stdout=subprocess.PIPE, text=True, timeout=300, **kw)
        os.close(follower)
        follower = None
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:    # EIO: the terminal has no writer left
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
        if follower is not None:
            os.close(follower)
    return r, shown.decode(errors="replace")


def test_progress_on_a_terminal_without_tqdm(tmp_path, vmcore):
    """tqdm is optional: a terminal without it gets the plain progress lines, and the dump."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "tqdm.py").write_text("raise ImportError('No module named tqdm (blocked by the test)')\n")
    env = dict(os.environ, PYTHONPATH=str(blocker))
    r, shown = on_terminal(["python3", "-m", "fastdump", "-l", "-d", "31", vmcore, str(tmp_path / "dump")], env=env)
    assert r.returncode == 0, shown[-2000:]
    assert "fastdump: scanning" in shown and "tqdm" not in shown, shown[-2000:]
    assert os.path.exists(tmp_path / "dump")


def build_image(d, *args):
    """A `fastdump initrd` image, unpacked in ``d``/root."""
    need_tool("busybox")
    img = d / "initrd.img"
    r = subprocess.run(["python3", "-m", "fastdump", "initrd", "-o", str(img), *args], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    root = d / "root"
    root.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet"], input=gzip.decompress(img.read_bytes()), cwd=root, check=True)
    return root


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return build_image(tmp_path_factory.mktemp("initrd"))


def in_image(root, argv, **kw):
    assert os.geteuid() == 0, "chroot needs root"
    script = 'set -e; mount -t proc proc "$1/proc"; mount --rbind /dev "$1/dev"; r=$1; shift; exec chroot "$r" "$@"'
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "in_image", str(root), *argv]


def test_image_dumps_on_the_console_one_directory_per_crash(image, vmcore, source_pages):
    """What /init runs (``fastdump ARGS /proc/vmcore /out/``) with stderr on the console: no
    tqdm in the image, so plain lines; each run gets its own <host>-<date>/vmcore."""
    os.link(vmcore, image / "vmcore") if os.stat(vmcore).st_dev == os.stat(image).st_dev \
        else subprocess.run(["cp", vmcore, str(image / "vmcore")], check=True)
    for _ in range(2):
        time.sleep(1)    # the directory name has a one-second resolution; crashes are further apart
        r, shown = on_terminal(in_image(image, ["/usr/bin/fastdump", "-d", "31", "-z", "/vmcore", "/out/"]))
        assert r.returncode == 0, shown[-2000:]
        assert "fastdump: scanning" in shown and "No module" not in shown, shown[-2000:]
    dumps = sorted(glob.glob(str(image / "out/*/vmcore")))
    assert len(dumps) == 2, os.listdir(image / "out")
    for dump in dumps:
        fmt, pages = kdumpfile_digests(dump, max(source_pages) + 1)
        assert fmt == "diskdump" and pages, fmt
        want = digests({p: source_pages[p] for p in pages})
        assert pages == want


def test_image_sends_the_dump_over_ssh(tmp_path, vmcore, source_pages, sshd_plain):  # noqa: F811
    """``--ssh auto`` packs the ssh client and the account it needs; with the key and
    known_hosts added, the image's fastdump sends the dump, as /init does for
    fastdump.out=ssh://... (the network bring-up before it is the next test).  The far side
    has no fastdump, so the flattened stream is left there; makedumpfile -R rebuilds it."""
    sshd = sshd_plain
    root = build_image(tmp_path, "--ssh", "auto", "--add", f"{sshd.userkey}:/root/.ssh/kdump_id",
                       "--add", f"{sshd.known}:/root/.ssh/known_hosts")
    subprocess.run(["cp", vmcore, str(root / "vmcore")], check=True)
    remote = pathlib.Path(sshd.home) / "crash"
    remote.mkdir()
    shutil.chown(remote, sshd.user)
    r = subprocess.run(in_image(root, ["/usr/bin/fastdump", "-z", "-d", "31", "--ssh-key", "/root/.ssh/kdump_id",
                                       "--known-hosts", "/root/.ssh/known_hosts", "/vmcore",
                                       sshd.target(str(remote))]), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (sub,) = list(remote.iterdir())
    rebuilt = str(tmp_path / "rebuilt")
    with open(sub / "vmcore.flat", "rb") as f:
        subprocess.run([need_tool("makedumpfile"), "-R", rebuilt], stdin=f, check=True, capture_output=True)
    fmt, pages = kdumpfile_digests(rebuilt, max(source_pages) + 1)
    assert fmt == "diskdump" and pages and pages == digests({p: source_pages[p] for p in pages})


@pytest.mark.parametrize("mode", ["dhcp", "static"])
def test_image_brings_up_the_network(image, tmp_path, mode):
    """What /init runs before an nfs: or ssh:// target (/etc/fastdump/net.sh with
    fastdump.net=), in the image, in a network namespace wired to this machine by a veth
    pair: DHCP from a real server (busybox udhcpd) through the image's udhcpc hook, or a
    static address; then the address and the default route are read back."""
    need_tool("ip")
    tag = f"{os.getpid() % 100000}{mode[0]}"
    ns, host_if, guest_if = f"fdtest{tag}", f"fdh{tag}", f"fdg{tag}"
    server = None
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", guest_if], check=True)
        subprocess.run(["ip", "link", "set", guest_if, "netns", ns], check=True)
        subprocess.run(["ip", "addr", "add", "10.213.7.1/24", "dev", host_if], check=True)
        subprocess.run(["ip", "link", "set", host_if, "up"], check=True)
        if mode == "dhcp":
            conf = tmp_path / "udhcpd.conf"
            conf.write_text(f"start 10.213.7.50\nend 10.213.7.60\ninterface {host_if}\noption subnet 255.255.255.0\n"
                            f"option router 10.213.7.1\nlease_file {tmp_path}/leases\npidfile {tmp_path}/pid\n")
            (tmp_path / "leases").write_bytes(b"")
            server = subprocess.Popen(["busybox", "udhcpd", "-f", str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            spec = "dhcp"
        else:
            spec = f"{guest_if},10.213.7.9/24,10.213.7.1"
        script = 'set -e; mount -t sysfs sysfs "$1/sys"; mount -t proc proc "$1/proc"; ' \
                 'exec chroot "$1" /etc/fastdump/net.sh "$2"'
        r = subprocess.run(["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
                            "/bin/sh", "-c", script, "net", str(image), spec],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        addr = subprocess.run(["ip", "-n", ns, "-o", "-4", "addr", "show", "dev", guest_if],
                              capture_output=True, text=True).stdout
        route = subprocess.run(["ip", "-n", ns, "route", "show", "default"], capture_output=True, text=True).stdout
        want = "10.213.7.5" if mode == "dhcp" else "10.213.7.9/24"
        assert want in addr and "/24" in addr, addr
        assert "default via 10.213.7.1" in route, route
        assert f"network: {guest_if} 10.213.7." in r.stdout, r.stdout
    finally:
        if server:
            server.terminate()
            server.wait(timeout=10)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
