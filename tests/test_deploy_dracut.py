"""Fedora/RHEL's path, kdump-utils + dracut, with real dracut in a throwaway Debian 12 root.

Debian's ``dracut-core`` is the same dracut kdump-utils drives (it conflicts with initramfs-tools,
so it never goes on this machine).  In a copy of the cached debootstrap root of
``.ci/fresh-machine`` (plus the packages below, cached once more as a tarball keyed by the
package list) the worktree is pip-installed with the distribution's python3, then, exactly as the
README's "Fedora/RHEL (kdump-utils)" part says: ``fastdump setup kdump-utils``, and a dracut
build with ``--add fastdump`` as kdump-utils' mkdumprd does with ``dracut_args``.  The image is
unpacked and kdump-utils' two crash-time calls run in a chroot of the *unpacked image alone*:
``$CORE_COLLECTOR /proc/vmcore $dir/vmcore-incomplete`` and ``$CORE_COLLECTOR /proc/vmcore | ...``
(stdout a pipe, no target: the flattened stream).  Both dumps are read page for page with
libkdumpfile on this machine.  A missing module in the packed interpreter ("No module named
'encodings'") fails here.
"""

import contextlib
import glob
import hashlib
import os
import shutil
import subprocess

import pytest

from fastdump.testing.kernel_layout import MiB

from support import kdumpfile_digests, kernel_vmcore, need_tool

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("FASTDUMP_FRESH_CACHE", "/var/cache/fastdump-fresh")
BASE = os.path.join(CACHE, "bookworm-base.tar")


def ensure_base(path, release="bookworm"):
    """The cached debootstrap root of ``.ci/fresh-machine``; built (once) when missing."""
    if not os.path.exists(path):
        top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        r = subprocess.run(["bash", ".ci/fresh-machine", release, "base"], cwd=top, capture_output=True, text=True)
        assert r.returncode == 0 and os.path.exists(path), (r.stdout + r.stderr)[-3000:]
APT = ("dracut-core", "cpio", "linux-image-amd64", "python3-pip", "python3-dev", "build-essential", "libzstd-dev",
       "liblz4-dev", "zlib1g-dev", "libdeflate-dev", "liblzo2-dev", "libsnappy-dev")
PIP = ("Cython>=3.0", "setuptools>=61", "wheel", "tqdm")
PREPARE = ("export DEBIAN_FRONTEND=noninteractive; apt-get update -q && "
           f"apt-get install -y -q --no-install-recommends {' '.join(APT)} && apt-get clean && "
           f"pip install -q --break-system-packages {' '.join(repr(p) for p in PIP)}")
RAM = 64 * MiB


def in_root(root, command, *, timeout=1800, binds=()):
    """Run ``command`` (bash) chrooted in ``root``, in a private mount namespace with /proc, /dev,
    a fresh /tmp and this site's network settings, as .ci/fresh-machine runs its commands."""
    site = " ".join(f"'{k}={v}'" for k, v in os.environ.items()
                    if k in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE") or k.lower().endswith("_proxy"))
    mounts = "".join(f'mkdir -p "$1{dest}"; mount --bind "{src}" "$1{dest}"\n' for src, dest in binds)
    script = f"""set -e
mount --bind "$1" "$1"
mount -t proc proc "$1/proc"
mount --rbind /dev "$1/dev"
mount -t tmpfs tmpfs "$1/tmp"
{mounts}exec chroot "$1" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \\
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin {site} \\
    /bin/bash -c "$2"
"""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "/bin/bash", "-c", script,
                           "in_root", str(root), command], capture_output=True, text=True, timeout=timeout)


def site_network(root):
    """DNS, local CA certificates, pip's cert and apt's proxy/CA settings of this machine."""
    for f in ("/etc/resolv.conf", "/etc/pip.conf", "/etc/ssl/certs/ca-certificates.crt"):
        if os.path.exists(f):
            os.makedirs(os.path.dirname(root + f), exist_ok=True)
            shutil.copy(f, root + f)
    for d in ("/usr/local/share/ca-certificates",):
        if os.path.isdir(d):
            shutil.copytree(d, root + d, dirs_exist_ok=True)
    conf = "/etc/apt/apt.conf.d"
    for name in os.listdir(conf):
        with open(os.path.join(conf, name), errors="replace") as f:
            text = f.read()
        if any(k in text for k in ("Check-Valid-Until", "::Proxy", "::Verify", "::CaInfo")):
            shutil.copy(os.path.join(conf, name), root + conf)


def prepared_root(dest):
    """Unpack the dracut root into ``dest``: cached as a tarball keyed by the package list."""
    os.makedirs(dest)
    key = hashlib.sha1(PREPARE.encode()).hexdigest()[:12]
    tar = os.path.join(CACHE, f"bookworm-dracut-{key}.tar")
    if not os.path.exists(tar):
        subprocess.run(["tar", "-C", dest, "-xf", BASE], check=True)
        site_network(dest)
        r = in_root(dest, PREPARE)
        assert r.returncode == 0, f"preparing the dracut root failed: {(r.stdout + r.stderr)[-3000:]}"
        subprocess.run(["tar", "-C", dest, "-cf", tar + ".part", "."], check=True)
        os.rename(tar + ".part", tar)
        for old in glob.glob(os.path.join(CACHE, "bookworm-dracut-*.tar*")):   # 1.2 GB each, and cut ones
            if old != tar:
                with contextlib.suppress(FileNotFoundError):    # another run may have removed it
                    os.unlink(old)
    else:
        subprocess.run(["tar", "-C", dest, "-xf", tar], check=True)
        site_network(dest)
    return dest


def worktree_copy(dest):
    """This worktree's files (tracked and new, as they are now, no build products) in ``dest``."""
    names = subprocess.run(["git", "-C", REPO, "ls-files", "-co", "--exclude-standard", "-z"],
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        if os.path.isfile(os.path.join(REPO, name)):
            os.makedirs(os.path.join(dest, os.path.dirname(name)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, name), os.path.join(dest, name))


#: the README's "Fedora/RHEL (kdump-utils)" commands, as run here (kdump.conf is kdump-utils'
#: default core_collector line).  mkdumprd runs dracut with its 99kdumpbase module and the
#: dracut_args; the stand-in 99kdumpbase here does the one thing of kdumpbase's that matters to
#: us, ``dracut_install`` of the collector's first word (from this machine's fastdump, a shim),
#: so the tests see whose ``fastdump`` ends up in the image.
DEPLOY = """set -e -o pipefail
cd /root/fastdump && pip install --break-system-packages --no-build-isolation . >/root/pip.log 2>&1
cd /
printf 'path /var/crash\\ncore_collector makedumpfile -l --message-level 7 -d 31\\n' > /etc/kdump.conf
fastdump setup kdump-utils --apply
cat /etc/kdump.conf
mkdir -p /usr/lib/dracut/modules.d/99kdumpbase
printf '%s\\n' 'check() { return 255; }' 'depends() { return 0; }' \\
    'install() { dracut_install "$(sed -n "s/^core_collector \\([^ ]*\\).*/\\1/p" /etc/kdump.conf)"; }' \\
    > /usr/lib/dracut/modules.d/99kdumpbase/module-setup.sh
"""
DRACUT = "dracut --no-hostonly --no-early-microcode --no-compress --add kdumpbase --add fastdump --force"

#: kdump-utils' kdump.sh, its two crash-time forms: to a file system, then mv; and the stream
#: to stdout that it pipes into ssh or dd; with the collector line that setup put in kdump.conf.
CRASH = """export PATH=/usr/sbin:/usr/bin:/sbin:/bin
CORE_COLLECTOR="$(sed -n 's/^core_collector \\(.*\\)  # fastdump setup kdump-utils$/\\1/p' /kdump.conf)"
echo "fdtest: $(fastdump --version)"
mkdir -p /var/crash/host-stamp
$CORE_COLLECTOR /vmcore /var/crash/host-stamp/vmcore-incomplete || echo "fdtest: file form failed"
mv /var/crash/host-stamp/vmcore-incomplete /var/crash/host-stamp/vmcore
$CORE_COLLECTOR /vmcore | cat > /var/crash/host-stamp/vmcore.stream || echo "fdtest: stream form failed"
"""

#: /init of the booted image (the kernel's rdinit=): kdump.sh's calls, then both results
#: copied raw to the two virtio disks (their sizes on the console), then power off
BOOT = """#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo "fdtest: kernel $(uname -r) up"
modprobe virtio_pci; modprobe virtio_blk
n=0; while [ ! -b /dev/vdb ] && [ $n -lt 30 ]; do sleep 1; n=$((n + 1)); done
""" + CRASH + """for f in vmcore:vda vmcore.stream:vdb; do
    cat "/var/crash/host-stamp/${f%:*}" > "/dev/${f#*:}"
    set -- $(ls -ln "/var/crash/host-stamp/${f%:*}"); echo "fdtest: size ${f%:*} $5"
done
sync; echo "fdtest: done"
echo o > /proc/sysrq-trigger
"""


@pytest.fixture(scope="module")
def vmcore(tmp_path_factory):
    return kernel_vmcore(tmp_path_factory.mktemp("src") / "vmcore", RAM)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """The throwaway root after the README's commands (before dracut)."""
    for tool in ("unshare", "chroot", "tar", "cpio", "git"):
        need_tool(tool)
    assert os.geteuid() == 0, "this test chroots into a throwaway Debian root: run it as root"
    ensure_base(BASE)
    root = prepared_root(str(tmp_path_factory.mktemp("dracut") / "root"))
    worktree_copy(os.path.join(root, "root/fastdump"))
    r = in_root(root, DEPLOY)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "core_collector fastdump -l --message-level 7 -d 31" in r.stdout, r.stdout
    assert os.path.isfile(os.path.join(root, "usr/sbin/fastdump")), "setup put no fastdump on kdump-utils' path"
    yield root
    shutil.rmtree(root)


def build_image(root, tmp_path, options):
    """Run dracut in the root with ``options``: (the image unpacked, the image), launchers checked."""
    r = in_root(root, f"{DRACUT} {options} /root/kdump.img 2>&1 | tail -n 5")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    img, dest = tmp_path / "kdump.img", tmp_path / "image"
    shutil.move(os.path.join(root, "root/kdump.img"), img)
    dest.mkdir()
    with open(img, "rb") as f:
        subprocess.run(["cpio", "-idm", "--quiet"], stdin=f, cwd=dest, check=True)
    for name in ("usr/bin/fastdump", "usr/sbin/fastdump"):
        assert "fastdump.deploy.payload" in (dest / name).read_text(), f"{name} is not the module's launcher"
    return dest, img


def check_dumps(dump, stream, tmp_path, vmcore):
    """The file form page for page with libkdumpfile; the stream rebuilt by makedumpfile -R, too."""
    from test_deploy_kdump_tools import read_rebuilt
    fmt, pages = kdumpfile_digests(str(dump), max(vmcore["pages"]) + 1)
    assert fmt == "diskdump", fmt
    assert {p for p, h in pages.items() if vmcore["pages"].get(p) != h} == set()
    assert set(pages) == vmcore["kept31"], (len(pages), len(vmcore["kept31"]))
    assert set(read_rebuilt(str(stream), tmp_path, vmcore)) == vmcore["kept31"]


def in_image(image_root, command):
    """``command`` under /bin/sh chrooted in the unpacked initramfs: nothing from any other root."""
    script = 'set -e; mount -t proc proc "$1/proc"; mount --rbind /dev "$1/dev"; exec chroot "$1" /bin/sh -c "$2"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "in_image",
                           str(image_root), command], capture_output=True, text=True, timeout=600)


def test_dracut_module_runs_kdump_utils_collector_calls(tmp_path, vmcore, deployed):
    image, _ = build_image(deployed, tmp_path, "--no-kernel")
    shutil.copy(vmcore["path"], image / "vmcore")
    shutil.copy(os.path.join(deployed, "etc/kdump.conf"), image / "kdump.conf")
    r = in_image(image, CRASH)
    assert r.returncode == 0 and "form failed" not in r.stdout, (r.stdout + r.stderr)[-3000:]
    assert r.stdout.startswith("fdtest: fastdump "), r.stdout
    crash = image / "var/crash/host-stamp"
    assert sorted(os.listdir(crash)) == ["vmcore", "vmcore.stream"], os.listdir(crash)
    check_dumps(crash / "vmcore", crash / "vmcore.stream", tmp_path, vmcore)


def test_booted_dracut_image_runs_kdump_utils_collector_calls(tmp_path, vmcore, deployed):
    """The same calls in the image booted by the root's Debian kernel in QEMU (software
    emulation unless FASTDUMP_E2E_ACCEL=kvm, as tests/e2e): the packed interpreter and fastdump
    on a real kernel, not in a chroot.  The image holds dracut's base module, the two modules
    and the virtio drivers; the kernel runs the test's script as its init."""
    from e2e.qemu import base_cmd
    (kver,) = os.listdir(os.path.join(deployed, "lib/modules"))
    with open(os.path.join(deployed, "root/boot.sh"), "w") as f:
        f.write(BOOT)
    os.chmod(os.path.join(deployed, "root/boot.sh"), 0o755)
    shutil.copy(os.path.join(deployed, "etc/kdump.conf"), os.path.join(deployed, "root/kdump.conf"))
    shutil.copy(vmcore["path"], os.path.join(deployed, "root/vmcore"))
    _, img = build_image(deployed, tmp_path, f"--modules base --kver {kver} --add-drivers 'virtio_pci virtio_blk' "
                         "--include /root/boot.sh /boot.sh --include /root/kdump.conf /kdump.conf "
                         "--include /root/vmcore /vmcore")
    disks = [tmp_path / "vda.img", tmp_path / "vdb.img"]
    for d in disks:
        with open(d, "wb") as f:
            f.truncate(RAM)
    serial = tmp_path / "serial.log"
    cmd = base_cmd(os.path.join(deployed, f"boot/vmlinuz-{kver}"), str(img),
                   "console=ttyS0 rdinit=/boot.sh panic=-1", 1024, os.environ.get("FASTDUMP_E2E_ACCEL", "tcg"))
    cmd += ["-serial", f"file:{serial}"]
    for d in disks:
        cmd += ["-drive", f"file={d},format=raw,if=virtio,cache=unsafe"]
    try:
        subprocess.run(cmd, timeout=600, capture_output=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the guest did not power off in 10 minutes: {serial.read_text(errors='replace')[-3000:]}")
    log = serial.read_text(errors="replace")
    assert "fdtest: done" in log and "form failed" not in log, log[-3000:]
    assert "fdtest: fastdump " in log, log[-3000:]
    sizes = dict(line.split()[2:4] for line in log.splitlines() if line.startswith("fdtest: size "))
    for d, name in zip(disks, ("vmcore", "vmcore.stream")):
        with open(d, "r+b") as f:
            f.truncate(int(sizes[name]))
    check_dumps(disks[0], disks[1], tmp_path, vmcore)
