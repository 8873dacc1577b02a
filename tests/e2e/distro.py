"""A whole Debian 12 guest, systemd and Debian's kdump-tools, saving its crash dump through fastdump.

    python3 -m tests.e2e.distro                 # build the root (cached), boot, crash, check
    python3 -m tests.e2e.distro --crashkernel 384M-:96M

The root is Debian packages only: the cached debootstrap base of ``.ci/fresh-machine``
(/var/cache/fastdump-fresh/bookworm-base.tar, copied, never changed) plus ``apt-get install`` from
this machine's configured Debian archives, in a chroot inside a private mount namespace.
fastdump goes in the way the README's "Deploy" section says (a clean clone of HEAD, ``pip
install``, ``fastdump setup kdump-tools``); kdump-tools keeps Debian's defaults, with
USE_KDUMP=1.  The root becomes an ext4 image (``mkfs.ext4 -d``), cached in
``.cache/e2e/distro/<key>/`` with the kernel and initramfs from its /boot; the key covers the
package list, the guest files and the fastdump commit, so a re-run only boots.

The boot (QEMU, TCG, ``-no-reboot``, 1 GiB): systemd starts kdump-tools.service
(``kdump-config load``); ``fastdump-e2e-crash.service`` waits until ``kdump-config status``
says ready and panics the kernel.  The capture kernel boots the same root with kdump-tools'
own command line (``systemd.unit=kdump-tools-dump.service``); a drop-in ExecStartPre copies
/proc/vmcore raw onto a second disk and watches fastdump's peak memory, then kdump-tools'
unchanged ExecStart (``kdump-config savecore``) runs the makedumpfile shim, and kdump-tools
reboots, which ends QEMU.  The host pulls /var/crash out of the image with debugfs and
checks it (``check``).
"""

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

from .paths import CACHE, HERE, REPO, StepError, run
from .qemu import Phase, base_cmd, log_tail, run_guest

RELEASE = "bookworm"
BASE_TAR = os.path.join(os.environ.get("FASTDUMP_FRESH_CACHE", "/var/cache/fastdump-fresh"),
                        RELEASE + "-base.tar")
DISTRO_CACHE = os.path.join(CACHE, "distro")
GUEST_FILES = os.path.join(HERE, "guest", "distro")
#: what a sysadmin installs: kdump-tools (Debian's way), and what the README's Deploy section
#: needs to build fastdump with the distribution's python3
PACKAGES = ("systemd-sysv", "udev", "linux-image-amd64", "initramfs-tools", "kdump-tools",
            "kexec-tools", "makedumpfile", "python3", "python3-pip", "python3-dev", "gcc",
            "libzstd-dev", "liblz4-dev", "zlib1g-dev", "liblzo2-dev", "libsnappy-dev")
CRASHKERNEL = "384M-:128M"      # Debian 12's default (/etc/default/grub.d/kdump-tools.cfg)
MEM_MIB = 1024
IMAGE_MIB = 4096
MARK = "FASTDUMP-E2E: "

#: the root's own set-up, run in the chroot: the packages, then fastdump as the README says
BUILD_SCRIPT = r"""
set -ex
export DEBIAN_FRONTEND=noninteractive
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
echo 'kdump-tools kdump-tools/use_kdump boolean true' | debconf-set-selections
apt-get update -q
apt-get install -y -q --no-install-recommends {packages}
echo 'APT::Get::Assume-Yes "true";' > /etc/apt/apt.conf.d/90fastdump-e2e-yes   # the sysadmin's "yes"
cd /root/fastdump
{deploy}
cd /
rm /etc/apt/apt.conf.d/90fastdump-e2e-yes
rm -f /usr/sbin/policy-rc.d
sed -i 's/^USE_KDUMP=.*/USE_KDUMP=1/' /etc/default/kdump-tools
grep -q '^USE_KDUMP=1' /etc/default/kdump-tools
echo fastdump-guest > /etc/hostname
printf '/dev/vda / ext4 defaults 0 1\n' > /etc/fstab
passwd -d root
install -m 0755 /root/guest/fastdump-e2e-crash /root/guest/fastdump-e2e-capture /usr/local/sbin/
install -m 0644 /root/guest/fastdump-e2e-crash.service /etc/systemd/system/
mkdir -p /etc/systemd/system/kdump-tools-dump.service.d
install -m 0644 /root/guest/kdump-tools-dump.conf /etc/systemd/system/kdump-tools-dump.service.d/fastdump-e2e.conf
systemctl enable fastdump-e2e-crash.service kdump-tools.service
rm -rf /root/guest /var/cache/apt/archives/*.deb /var/lib/apt/lists/*_Packages*
"""


def readme_deploy_commands():
    """The shell lines of the README's Debian "Deploy" block that install fastdump and set it
    up: run exactly as written, so the README cannot drift from what the guest proves."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    m = re.search(r"### Debian and Ubuntu \(kdump-tools\)\n(.*?)\n###? ", text, re.S)
    if not m:
        raise StepError("README.md has no '### Debian and Ubuntu (kdump-tools)' section")
    lines = [line[4:].split("#")[0].strip() for line in m.group(1).splitlines() if line.startswith("    ")]
    lines = [line for line in lines if line]
    if not any(line.startswith("fastdump setup kdump-tools") for line in lines):
        raise StepError("README's Deploy block does not run `fastdump setup kdump-tools`: %r" % lines)
    return lines


def site_setup(root):
    """The site's network set-up, as .ci/fresh-machine copies it: DNS, local CAs, pip and apt
    acquire settings (never the host's installs or caches)."""
    shutil.copy("/etc/resolv.conf", os.path.join(root, "etc/resolv.conf"))
    if os.path.isdir("/usr/local/share/ca-certificates"):
        shutil.copytree("/usr/local/share/ca-certificates", os.path.join(root, "usr/local/share/ca-certificates"),
                        dirs_exist_ok=True)
        if os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
            os.makedirs(os.path.join(root, "etc/ssl/certs"), exist_ok=True)
            shutil.copy("/etc/ssl/certs/ca-certificates.crt", os.path.join(root, "etc/ssl/certs/"))
    if os.path.exists("/etc/pip.conf"):
        shutil.copy("/etc/pip.conf", os.path.join(root, "etc/pip.conf"))
    for path in glob.glob("/etc/apt/apt.conf.d/*"):
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        if re.search(r"Acquire::(Check-Valid-Until|https?::(Proxy|Verify|CaInfo))", text, re.I):
            shutil.copy(path, os.path.join(root, "etc/apt/apt.conf.d/"))
    with open(os.path.join(root, "etc/apt/sources.list"), "w") as f:
        f.write(run([sys.executable, "-m", "tests.e2e.aptsources", RELEASE], timeout=60, cwd=REPO).stdout)


def chroot(root, script, timeout, what):
    """Run ``script`` (bash) in ``root`` with /proc, /sys, /dev and a private /tmp and /run,
    all in a private mount namespace (they vanish with it)."""
    env = {k: v for k, v in os.environ.items()
           if re.match(r"^(PIP_CERT|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE|(https?|no|all)_proxy)$", k, re.I)}
    inner = r"""set -e
root=$1; shift
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/tmp"
mount -t tmpfs tmpfs "$root/run"
exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
"""
    cmd = ["unshare", "--mount", "--propagation", "private", "/bin/bash", "-c", inner, "distro", root]
    cmd += ["%s=%s" % kv for kv in env.items()] + ["/bin/bash", "-c", script]
    return run(cmd, timeout=timeout, what=what)


def cache_key():
    """Package list, build script, guest files, README's Deploy block and the fastdump commit."""
    commit = run(["git", "-C", REPO, "rev-parse", "HEAD"], timeout=30).stdout.strip()
    h = hashlib.sha1()
    for part in (RELEASE, " ".join(PACKAGES), BUILD_SCRIPT, "\n".join(readme_deploy_commands()), commit):
        h.update(part.encode() + b"\0")
    for path in sorted(glob.glob(os.path.join(GUEST_FILES, "*"))):
        with open(path, "rb") as f:
            h.update(os.path.basename(path).encode() + b"\0" + f.read())
    return h.hexdigest()[:12], commit


def build(log=print):
    """The guest: {'image', 'kernel', 'initrd', 'key', ...}, built once per cache key."""
    key, commit = cache_key()
    out = os.path.join(DISTRO_CACHE, key)
    manifest = os.path.join(out, "build.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            return json.load(f)
    if not os.path.exists(BASE_TAR):
        raise StepError("%s missing: run `bash .ci/fresh-machine %s setup` once (it builds the base root)"
                        % (BASE_TAR, RELEASE))
    if os.geteuid() != 0:
        raise StepError("building the Debian guest needs root (chroot, mount namespace)")
    os.makedirs(out, exist_ok=True)
    root = os.path.join(out, "root")
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    t0 = time.monotonic()
    log("distro: root from %s in %s" % (BASE_TAR, root))
    run(["tar", "-C", root, "-xf", BASE_TAR], timeout=600, what="unpacking the base root")
    site_setup(root)
    clone = os.path.join(root, "root/fastdump")
    run(["git", "clone", "-q", "--no-hardlinks", REPO, clone], timeout=300, what="git clone")
    run(["git", "-C", clone, "checkout", "-q", commit], timeout=60, what="git checkout")
    shutil.copytree(GUEST_FILES, os.path.join(root, "root/guest"))
    script = BUILD_SCRIPT.format(packages=" ".join(PACKAGES), deploy="\n".join(readme_deploy_commands()))
    r = chroot(root, script, timeout=3600, what="building the guest root (apt-get, pip, fastdump setup)")
    with open(os.path.join(out, "build.log"), "w") as f:
        f.write(r.stdout)
    boot = os.path.join(root, "boot")
    kernels = sorted(glob.glob(os.path.join(boot, "vmlinuz-*")))
    if len(kernels) != 1:
        raise StepError("the root's /boot holds %d kernels: %r" % (len(kernels), kernels))
    release = os.path.basename(kernels[0])[len("vmlinuz-"):]
    initrd = os.path.join(boot, "initrd.img-" + release)
    if not os.path.exists(initrd):
        raise StepError("the root has no initramfs %s (update-initramfs did not run)" % initrd)
    shutil.copy(kernels[0], os.path.join(out, "vmlinuz"))
    shutil.copy(initrd, os.path.join(out, "initrd.img"))
    image = os.path.join(out, "root.img")
    make_image(image, root)
    shutil.rmtree(root)
    info = {"key": key, "commit": commit, "release": release, "image": image,
            "kernel": os.path.join(out, "vmlinuz"), "initrd": os.path.join(out, "initrd.img"),
            "build_seconds": round(time.monotonic() - t0, 1), "packages": list(PACKAGES)}
    with open(manifest, "w") as f:
        json.dump(info, f, indent=1)
    log("distro: guest %s built in %.0f s (kernel %s)" % (key, info["build_seconds"], release))
    return info


def make_image(image, root):
    if os.path.exists(image):
        os.unlink(image)
    with open(image, "wb") as f:
        f.truncate(IMAGE_MIB << 20)
    run(["mkfs.ext4", "-F", "-q", "-L", "root", "-E", "lazy_itable_init=0,lazy_journal_init=0",
         "-d", root, image], timeout=900, what="mkfs.ext4 of the guest root")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m tests.e2e.distro", description=__doc__.split("\n")[0])
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args(argv)
    info = build()
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StepError as e:
        print("distro: %s" % e, file=sys.stderr)
        sys.exit(1)
