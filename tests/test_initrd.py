"""`fastdump initrd`: the image runs fastdump as a capture kernel would, from nothing but itself.

The image is unpacked and fastdump runs in a chroot of it (a private mount namespace with /proc
and /dev), with stderr on a terminal as /init gives it the console.  The harness (tests/e2e) boots
it with a disk target; the NFS target is booted here, against nfs-ganesha in a network namespace."""

import glob
import gzip
import os
import pathlib
import re
import shutil
import subprocess
import time

import pytest

from support import digests, kdumpfile_digests, need_tool, stop_process
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
        got = addr.split(" inet ", 1)[1].split()[0] if " inet " in addr else ""
        if mode == "dhcp":      # any address of udhcpd's pool (.50-.60, picked from the MAC)
            assert got.endswith("/24") and 50 <= int(got.split("/")[0].rsplit(".", 1)[1]) <= 60, addr
        else:
            assert got == "10.213.7.9/24", addr
        assert "default via 10.213.7.1" in route, route
        assert f"network: {guest_if} 10.213.7." in r.stdout, r.stdout
    finally:
        if server:
            stop_process(server, timeout=10)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


#: the smallest nfs-ganesha set-up that serves NFSv4 (one TCP port; no rpcbind, mountd, statd
#: or dbus): one VFS export of {export} as /dump, root not squashed, no grace period.  Debian
#: 13's 6.5 stops when PR_SET_IO_FLUSHER is refused (EPERM on this kind of machine) unless told
#: it may; Debian 12's 4.3 only warns that it does not know that parameter.
GANESHA = """NFS_CORE_PARAM {{ Protocols = 4; NFS_Port = 2049; Enable_NLM = false; Enable_RQUOTA = false;
    Enable_UDP = false; allow_set_io_flusher_fail = true; }}
NFSV4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = {state}; }}
NFS_KRB5 {{ Active_krb5 = false; }}
EXPORT {{ Export_Id = 1; Path = {export}; Pseudo = /dump; Access_Type = RW; Squash = No_Root_Squash;
    Protocols = 4; Transports = TCP; SecType = sys; FSAL {{ Name = VFS; }} }}
"""

GUEST_MIB = 768
#: /etc/fastdump/first.sh of the booted image: load this same image (kept by retain_initrd) as
#: the capture kernel's, with an NFS target on the host (QEMU's user network: 10.0.2.2), crash
FIRST = """hostname fdtest-nfs     # the crashed kernel's name: the capture kernel's is "(none)"
cmdline="console=ttyS0 nr_cpus=1 irqpoll reset_devices panic=1 fastdump.final=shell \\
fastdump.out=nfs:10.0.2.2:/dump"
kexec -p /boot/vmlinuz --initrd=/sys/firmware/initrd --append="$cmdline" || { log "fdtest: kexec -p failed"; finish; }
echo c > /proc/sysrq-trigger
"""


@pytest.fixture
def nfs_netns(tmp_path):
    """(network namespace, export dir): nfs-ganesha serving ``export`` on the namespace's
    loopback, where QEMU's user network, started in the same namespace, sends 10.0.2.2."""
    ganesha = need_tool("ganesha.nfsd")
    ns = f"fdnfs{os.getpid() % 100000}"
    export, state = tmp_path / "export", tmp_path / "ganesha"
    export.mkdir()
    state.mkdir()
    conf = state / "ganesha.conf"
    conf.write_text(GANESHA.format(export=export, state=state))
    subprocess.run(["ip", "netns", "add", ns], check=True)
    server = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen(["ip", "netns", "exec", ns, ganesha, "-F", "-f", str(conf), "-L", str(state / "log"),
                                   "-p", str(state / "pid")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        for _ in range(60):
            listening = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hltn", "sport", "= :2049"],
                                       capture_output=True, text=True).stdout
            if listening.strip() or server.poll() is not None:
                break
            time.sleep(0.5)
        log = (state / "log").read_text(errors="replace") if (state / "log").exists() else ""
        assert listening.strip(), f"nfs-ganesha did not listen on 2049: {log[-2000:]}"
        yield ns, export
    finally:
        if server:
            stop_process(server, timeout=30)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def console(cmd, serial, until, script=None, timeout=600):
    """Run QEMU ``cmd`` with the serial console on its stdin and in ``serial``; when ``until``
    shows there, type ``script`` (once); wait for QEMU to exit.  Returns the console text."""
    with open(f"{serial}.qemu-stderr", "wb") as err:
        q = subprocess.Popen(cmd + ["-chardev", f"stdio,id=con,signal=off,logfile={serial}", "-serial", "chardev:con"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
    deadline, typed = time.monotonic() + timeout, False
    try:
        while q.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
            text = serial.read_text(errors="replace") if serial.exists() else ""
            if script and not typed and until in text:
                q.stdin.write(script.encode())
                q.stdin.flush()
                typed = True
        if q.poll() is None:
            q.kill()
            q.wait()
            pytest.fail(f"the guest did not power off in {timeout} s: {serial.read_text(errors='replace')[-3000:]}")
    finally:
        q.stdin.close()
    return serial.read_text(errors="replace")


@pytest.mark.e2e     # a Debian kernel from the harness's cache, booted under QEMU: about 1.5 min
@pytest.mark.slow
def test_booted_image_dumps_to_nfs(tmp_path, nfs_netns):
    """``fastdump.out=nfs:IP:/PATH`` for real: the image boots a Debian kernel in QEMU (the
    harness's 6.12), loads itself as the capture initrd and crashes; in the capture kernel /init
    brings up the network (DHCP from QEMU), mounts the export of an nfs-ganesha on this machine
    and runs its default ``fastdump -d 31 -z /proc/vmcore /out/``.  Then (fastdump.final=shell)
    the test has the console copy /proc/vmcore raw to the export too, and the dump is read page
    for page with libkdumpfile against that raw copy, and against fastdump run here on it."""
    from e2e import kernels
    from e2e.qemu import base_cmd
    ns, export = nfs_netns
    info = kernels.fetch("6.12", log=lambda *a: None)
    first = tmp_path / "first.sh"
    first.write_text(FIRST)
    img = tmp_path / "initrd.img"
    r = subprocess.run(["python3", "-m", "fastdump", "initrd", "-o", str(img), "--kexec", "auto",
                        "--kmod-root", info["root"], "--kver", info["release"],
                        "--module", "virtio_pci,virtio_net,nfsv4", "--add", f"{info['vmlinuz']}:/boot/vmlinuz",
                        "--add", f"{first}:/etc/fastdump/first.sh"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    cmd = ["ip", "netns", "exec", ns] + base_cmd(
        info["vmlinuz"], str(img), "console=ttyS0 crashkernel=256M retain_initrd panic=-1", GUEST_MIB,
        os.environ.get("FASTDUMP_E2E_ACCEL", "tcg")) + ["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"]
    raw = "mount -t nfs -o vers=4.1,addr=10.0.2.2 10.0.2.2:/dump /out && cat /proc/vmcore > /out/vmcore.raw && " \
          "umount /out && echo fdtest-raw-$?\npoweroff -f\n"
    # /init ends in the shell (fastdump.final=shell) whether or not it mounted and dumped
    log = console(cmd, tmp_path / "serial.log", "built-in shell (ash)", raw)
    assert "fastdump-init: fastdump exit status 0" in log and "fdtest-raw-0" in log, log[-3000:]
    (dump,) = glob.glob(str(export / "*" / "vmcore"))
    assert re.fullmatch(r"fdtest-nfs-\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d", os.path.basename(os.path.dirname(dump))), dump
    source = str(export / "vmcore.raw")
    _, want = kdumpfile_digests(source, GUEST_MIB << 8)
    fmt, pages = kdumpfile_digests(dump, max(want) + 1)
    assert fmt == "diskdump" and pages, fmt
    assert {p for p, h in pages.items() if want.get(p) != h} == set()
    here = str(tmp_path / "here.kdump")
    subprocess.run(["python3", "-m", "fastdump", "-d", "31", "-z", source, here], check=True, capture_output=True)
    assert set(pages) == set(kdumpfile_digests(here, max(want) + 1)[1])
