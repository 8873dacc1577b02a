"""A whole Debian 12 guest, systemd and Debian's kdump-tools, saving its crash dump through fastdump.

    python3 -m tests.e2e.distro                 # build the root (cached), boot, crash, check
    python3 -m tests.e2e.distro --makedump-args "-z -d 31" --crashkernel 384M-:112M

The root is Debian packages only: the cached debootstrap base of ``.ci/fresh-machine``
(/var/cache/fastdump-fresh/bookworm-base.tar, copied, never changed) plus ``apt-get install`` from
this machine's configured Debian archives, in a chroot inside a private mount namespace.
fastdump goes in the way the README's "Deploy" section says (a clean clone of HEAD, ``pip
install``, ``fastdump setup kdump-tools``); kdump-tools keeps Debian's defaults, with
USE_KDUMP=1.  Two cached layers in ``.cache/e2e/distro/``: ``system-<key>/`` (the packages and
the guest files; booted once as an installed machine is, where kdump-tools builds its capture
initrd; the kernel and initramfs from its /boot) and ``<key>/`` (a copy of it with fastdump
deployed, as an ext4 image made with ``mkfs.ext4 -d``), so a change to fastdump rebuilds only
the second layer and a re-run only boots.

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
import difflib
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

from . import crashtool, kernels
from .paths import CACHE, HERE, REPO, StepError, run
from .qemu import Phase, base_cmd, log_tail, run_guest

if os.path.dirname(HERE) not in sys.path:      # tests/support.py, as pytest finds it
    sys.path.insert(0, os.path.dirname(HERE))
import support  # noqa: E402

RELEASE = "bookworm"
KERNEL_KEY = "6.1"      # kernels.py's key for bookworm's kernel: where the debug vmlinux comes from
BASE_TAR = os.path.join(os.environ.get("FASTDUMP_FRESH_CACHE", "/var/cache/fastdump-fresh"),
                        RELEASE + "-base.tar")
DISTRO_CACHE = os.path.join(CACHE, "distro")
GUEST_FILES = os.path.join(HERE, "guest", "distro")
#: what a sysadmin installs: kdump-tools (Debian's way), and what the README's Deploy section
#: needs to build fastdump with the distribution's python3
PACKAGES = ("systemd-sysv", "udev", "linux-image-amd64", "initramfs-tools", "kdump-tools",
            "kexec-tools", "makedumpfile", "python3", "python3-pip", "python3-dev", "gcc",
            "libzstd-dev", "liblz4-dev", "zlib1g-dev", "libdeflate-dev", "liblzo2-dev", "libsnappy-dev")
CRASHKERNEL = "384M-:128M"      # Debian 12's default (/etc/default/grub.d/kdump-tools.cfg)
MEM_MIB = 1024
IMAGE_MIB = 4096
MARK = "FASTDUMP-E2E: "

#: the system layer, run in the chroot: Debian's packages, kdump-tools enabled, the guest's units
SYSTEM_SCRIPT = r"""
set -ex
export DEBIAN_FRONTEND=noninteractive
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
echo 'kdump-tools kdump-tools/use_kdump boolean true' | debconf-set-selections
apt-get update -q
apt-get install -y -q --no-install-recommends {packages}
rm -f /usr/sbin/policy-rc.d
sed -i 's/^USE_KDUMP=.*/USE_KDUMP=1/' /etc/default/kdump-tools
grep -q '^USE_KDUMP=1' /etc/default/kdump-tools
echo fastdump-guest > /etc/hostname
printf '/dev/vda / ext4 defaults 0 1\n' > /etc/fstab
passwd -d root
install -m 0755 /root/guest/fastdump-e2e-crash /root/guest/fastdump-e2e-capture /usr/local/sbin/
install -m 0644 /root/guest/fastdump-e2e-crash.service /etc/systemd/system/
for unit in kdump-tools kdump-tools-dump; do
    mkdir -p /etc/systemd/system/$unit.service.d
    install -m 0644 /root/guest/kdump-tools-e2e.conf /etc/systemd/system/$unit.service.d/fastdump-e2e.conf
done
systemctl enable fastdump-e2e-crash.service kdump-tools.service
rm -rf /root/guest /var/cache/apt/archives/*.deb
"""

#: the fastdump layer, run in the chroot in a clean clone: the README's Deploy lines as written
DEPLOY_SCRIPT = r"""
set -ex
export DEBIAN_FRONTEND=noninteractive
echo 'APT::Get::Assume-Yes "true";' > /etc/apt/apt.conf.d/90fastdump-e2e-yes   # the sysadmin's "yes"
cd /root/fastdump
{deploy}
cd /
rm /etc/apt/apt.conf.d/90fastdump-e2e-yes
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


#: what ``pip install .`` builds from: a commit that changes none of these reuses the root
INSTALLED = ("fastdump", "src", "setup.py", "pyproject.toml", "MANIFEST.in")


def _key(*parts):
    h = hashlib.sha1()
    for part in parts:
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:12]


def system_key():
    """The system layer: release, package list, its script and the guest files."""
    files = []
    for path in sorted(glob.glob(os.path.join(GUEST_FILES, "*"))):
        with open(path, "rb") as f:
            files.append(os.path.basename(path) + ":" + hashlib.sha1(f.read()).hexdigest())
    return "system-" + _key(RELEASE, " ".join(PACKAGES), SYSTEM_SCRIPT, *files)


def cache_key():
    """(key, HEAD): the system layer's key, the README's Deploy lines and the fastdump that is
    installed (the git trees of INSTALLED at HEAD, which the root's clone is checked out at)."""
    commit = run(["git", "-C", REPO, "rev-parse", "HEAD"], timeout=30).stdout.strip()
    trees = run(["git", "-C", REPO, "ls-tree", "HEAD", "--", *INSTALLED], timeout=30).stdout
    return _key(system_key(), DEPLOY_SCRIPT, "\n".join(readme_deploy_commands()), trees), commit


def build_system(log=print):
    """The system layer, a root directory built once per system_key(): Debian's packages, then
    the installed machine's first boot (``first_boot``), whose /var/lib/kdump (kdump-tools'
    capture initrd) is copied back into the directory.  Returns its folder."""
    out = os.path.join(DISTRO_CACHE, system_key())
    if os.path.exists(os.path.join(out, "system.json")):
        return out
    if not os.path.exists(BASE_TAR):     # .ci/fresh-machine's cached debootstrap root, built once
        top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        r = subprocess.run(["bash", ".ci/fresh-machine", RELEASE, "base"], cwd=top, capture_output=True, text=True)
        if r.returncode or not os.path.exists(BASE_TAR):
            raise StepError("building %s failed: %s" % (BASE_TAR, (r.stdout + r.stderr)[-2000:]))
    if os.path.exists(out):
        shutil.rmtree(out)
    root = os.path.join(out, "root")
    os.makedirs(root)
    t0 = time.monotonic()
    log("distro: system layer from %s in %s" % (BASE_TAR, root))
    run(["tar", "-C", root, "-xf", BASE_TAR], timeout=600, what="unpacking the base root")
    site_setup(root)
    shutil.copytree(GUEST_FILES, os.path.join(root, "root/guest"))
    r = chroot(root, SYSTEM_SCRIPT.format(packages=" ".join(PACKAGES)), timeout=3600,
               what="building the guest's system (apt-get)")
    with open(os.path.join(out, "build.log"), "w") as f:
        f.write(r.stdout)
    kernels = sorted(glob.glob(os.path.join(root, "boot", "vmlinuz-*")))
    if len(kernels) != 1:
        raise StepError("the root's /boot holds %d kernels: %r" % (len(kernels), kernels))
    release = os.path.basename(kernels[0])[len("vmlinuz-"):]
    initrd = os.path.join(root, "boot", "initrd.img-" + release)
    if not os.path.exists(initrd):
        raise StepError("the root has no initramfs %s (update-initramfs did not run)" % initrd)
    shutil.copy(kernels[0], os.path.join(out, "vmlinuz"))
    shutil.copy(initrd, os.path.join(out, "initrd.img"))
    image = os.path.join(out, "first-boot.img")
    make_image(image, root)
    first_boot(image, os.path.join(out, "vmlinuz"), os.path.join(out, "initrd.img"), out, log)
    shutil.rmtree(os.path.join(root, "var/lib/kdump"), ignore_errors=True)
    run(["debugfs", "-R", "rdump /var/lib/kdump " + os.path.join(root, "var/lib"), image], timeout=300,
        what="debugfs rdump /var/lib/kdump")
    if not glob.glob(os.path.join(root, "var/lib/kdump/initrd.img-*")):
        raise StepError("kdump-tools built no capture initrd in the first boot\n"
                        + log_tail(os.path.join(out, "first-boot.log")))
    os.unlink(image)
    with open(os.path.join(out, "system.json"), "w") as f:
        json.dump({"release": release, "seconds": round(time.monotonic() - t0, 1), "packages": list(PACKAGES)}, f)
    log("distro: system layer built in %.0f s (kernel %s)" % (time.monotonic() - t0, release))
    return out


def build(log=print):
    """The guest: {'image', 'kernel', 'initrd', 'key', ...}.  The fastdump layer (a copy of the
    system layer, the README's Deploy lines in a clean clone of HEAD, then an ext4 image) is
    built once per cache_key(); other cached guests are removed."""
    key, commit = cache_key()
    out = os.path.join(DISTRO_CACHE, key)
    manifest = os.path.join(out, "build.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            return json.load(f)
    if os.geteuid() != 0:
        raise StepError("building the Debian guest needs root (chroot, mount namespace)")
    system = build_system(log)
    t0 = time.monotonic()
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    root = os.path.join(out, "root")
    run(["cp", "-a", os.path.join(system, "root"), root], timeout=900, what="copying the system layer")
    clone = os.path.join(root, "root/fastdump")
    run(["git", "clone", "-q", "--no-hardlinks", REPO, clone], timeout=300, what="git clone")
    run(["git", "-C", clone, "checkout", "-q", commit], timeout=60, what="git checkout")
    r = chroot(root, DEPLOY_SCRIPT.format(deploy="\n".join(readme_deploy_commands())), timeout=1800,
               what="deploying fastdump as the README says (pip, fastdump setup kdump-tools)")
    with open(os.path.join(out, "build.log"), "w") as f:
        f.write(r.stdout)
    image = os.path.join(out, "root.img")
    make_image(image, root)
    shutil.rmtree(root)
    with open(os.path.join(system, "system.json")) as f:
        release = json.load(f)["release"]
    info = {"key": key, "system": os.path.basename(system), "commit": commit, "release": release, "image": image,
            "kernel": os.path.join(system, "vmlinuz"), "initrd": os.path.join(system, "initrd.img"),
            "build_seconds": round(time.monotonic() - t0, 1), "packages": list(PACKAGES)}
    with open(manifest, "w") as f:
        json.dump(info, f, indent=1)
    for name in os.listdir(DISTRO_CACHE):      # older guests: several GB each
        if name not in (key, os.path.basename(system)):
            shutil.rmtree(os.path.join(DISTRO_CACHE, name), ignore_errors=True)
    log("distro: guest %s (fastdump %s) built in %.0f s" % (key, commit[:12], info["build_seconds"]))
    return info


def make_image(image, root):
    if os.path.exists(image):
        os.unlink(image)
    with open(image, "wb") as f:
        f.truncate(IMAGE_MIB << 20)
    run(["mkfs.ext4", "-F", "-q", "-L", "root", "-E", "lazy_itable_init=0,lazy_journal_init=0",
         "-d", root, image], timeout=900, what="mkfs.ext4 of the guest root")


def first_boot(image, kernel, initrd, out, log=print):
    """The installed system's first boot, as on a real machine: kdump-tools.service builds its
    capture initrd (/var/lib/kdump/initrd.img-*, MODULES=dep, which a chroot cannot do) and
    loads it; then the guest powers off instead of crashing (fastdump.e2e=prepare)."""
    append = "root=/dev/vda rw console=ttyS0 crashkernel=%s fastdump.e2e=prepare" % CRASHKERNEL
    cmd = base_cmd(kernel, initrd, append, MEM_MIB, "tcg") + ["-drive", "file=%s,format=raw,if=virtio" % image]
    log("distro: first boot (kdump-tools builds its initrd; several minutes under TCG)")
    run_guest(cmd, os.path.join(out, "first-boot.log"),
              [Phase("systemd", "Welcome to", 300), Phase("kdump ready", MARK + "first boot: kdump ready", 900)],
              [(MARK + "FAIL", "the guest reported a failure")], total_timeout=1500, exit_timeout=180)


def replace_file(image, path, data, mode, work):
    """Put ``data`` at ``path`` in the ext4 image (debugfs; owner root), replacing what is there."""
    local = os.path.join(work, os.path.basename(path) + ".new")
    with open(local, "wb") as f:
        f.write(data)
    for request in ("rm " + path, "write %s %s" % (local, path), "sif %s mode 0%o" % (path, 0o100000 | mode)):
        run(["debugfs", "-w", "-R", request, image], timeout=120, what="debugfs " + request)
    r = run(["debugfs", "-R", "stat " + path, image], timeout=120, what="debugfs stat " + path)
    if "Mode:  0%o" % mode not in r.stdout:
        raise StepError("debugfs did not write %s with mode 0%o:\n%s" % (path, mode, r.stdout[-800:]))


def set_makedump_args(image, args, work):
    """MAKEDUMP_ARGS in the image's /etc/default/kdump-tools, as a sysadmin sets it."""
    r = subprocess.run(["debugfs", "-R", "cat /etc/default/kdump-tools", image], capture_output=True,
                       text=True, timeout=120)
    if r.returncode or "USE_KDUMP=1" not in r.stdout:
        raise StepError("cannot read /etc/default/kdump-tools from the image: %s" % r.stderr[-500:])
    text = r.stdout.rstrip("\n") + '\nMAKEDUMP_ARGS="%s"\n' % args
    replace_file(image, "/etc/default/kdump-tools", text.encode(), 0o644, work)


def boot(info, work, crashkernel=CRASHKERNEL, makedump_args=None, makedumpfile=None, log=print):
    """Boot a fresh copy of the root: crash, capture, reboot.  Returns {phase: seconds}.
    ``makedumpfile``: a file to put at /usr/bin/makedumpfile instead of the shim (to see the
    checks fail, e.g. with the wrapper tests/e2e/README.md once showed)."""
    os.makedirs(work, exist_ok=True)
    image, raw = os.path.join(work, "root.img"), os.path.join(work, "vmcore.raw")
    run(["cp", "--sparse=always", info["image"], image], timeout=600, what="copying the root image")
    if makedump_args is not None:
        set_makedump_args(image, makedump_args, work)
    if makedumpfile is not None:
        with open(makedumpfile, "rb") as f:
            replace_file(image, "/usr/bin/makedumpfile", f.read(), 0o755, work)
    if os.path.exists(raw):
        os.unlink(raw)
    with open(raw, "wb") as f:
        f.truncate((MEM_MIB + 256) << 20)      # the raw /proc/vmcore lands here (dd onto /dev/vdb)
    append = "root=/dev/vda rw console=ttyS0 crashkernel=" + crashkernel
    cmd = base_cmd(info["kernel"], info["initrd"], append, MEM_MIB, "tcg")
    cmd += ["-drive", "file=%s,format=raw,if=virtio" % image, "-drive", "file=%s,format=raw,if=virtio" % raw]
    # deadlines: about 3x what each phase takes here under TCG on a busy 2-core host
    phases = [Phase("first kernel", "Linux version", 120),
              Phase("systemd", "Welcome to", 300),
              Phase("kdump ready", MARK + "first kernel: kdump ready", 600),
              Phase("capture kernel", MARK + "capture kernel:", 400),
              Phase("raw copy", MARK + "raw copy done", 300),
              Phase("savecore", "saved vmcore in", 600)]
    fails = [(MARK + "FAIL", "the guest reported a failure"),
             ("Kernel panic - not syncing: VFS", "the root file system was not found"),
             ("Kernel panic - not syncing: Attempted to kill init", "init died (in the capture kernel: out of memory?)"),
             ("Kernel panic - not syncing: Out of memory", "the kernel ran out of memory"),
             ("invoked oom-killer", "the kernel ran out of memory (OOM killer)")]
    log("distro: booting (TCG, %d MiB, crashkernel=%s); serial log %s/serial.log" % (MEM_MIB, crashkernel, work))
    return run_guest(cmd, os.path.join(work, "serial.log"), phases, fails, total_timeout=2400, exit_timeout=180)


def pull_crash_dir(work):
    """/var/crash of the guest's root image, copied out with debugfs (no mount)."""
    dest = os.path.join(work, "out")
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    run(["debugfs", "-R", "rdump /var/crash " + dest, os.path.join(work, "root.img")], timeout=600,
        what="debugfs rdump /var/crash")
    stamps = [d for d in glob.glob(os.path.join(dest, "crash", "2*")) if os.path.isdir(d)]
    if len(stamps) != 1:
        raise StepError("/var/crash holds %d dump directories, not one: %r\n%s"
                        % (len(stamps), os.listdir(os.path.join(dest, "crash")),
                           log_tail(os.path.join(work, "serial.log"))))
    return stamps[0]


def console_facts(serial_log):
    """What the guest said on the console: vmcore size, capture kernel memory, fastdump's peak."""
    with open(serial_log, "rb") as f:
        text = f.read().decode("utf-8", "replace").replace("\r", "")
    facts = {"fallback": re.findall(r"makedumpfile: fastdump failed.*", text)}
    m = re.search(re.escape(MARK) + r"capture kernel: unit=(\S+) (\S+) vmcore_size=(\d+) MemTotal: (\d+) kB MemAvailable: (\d+) kB",
                  text)
    if not m:
        raise StepError("the capture kernel did not report its memory and vmcore size\n" + log_tail(serial_log))
    facts.update(capture_unit=m.group(1), capture_release=m.group(2), vmcore_size=int(m.group(3)),
                 capture_memtotal_kib=int(m.group(4)), capture_memavailable_kib=int(m.group(5)))
    peaks = {}
    for kib, pid, args in re.findall(re.escape(MARK) + r"fastdump VmHWM (\d+) kB \(pid (\d+)\) args: (.*)", text):
        what = "dmesg" if "--dump-dmesg" in args else "dump"
        peaks[what] = max(peaks.get(what, 0), int(kib))
    facts["fastdump_peak_kib"] = peaks
    m = re.search(re.escape(MARK) + r"raw copy done in (\d+) s", text)
    facts["raw_copy_seconds"] = int(m.group(1)) if m else None
    return facts


def ram_pfns(elf_path):
    """(one past the highest pfn, the pfns a PT_LOAD covers only in part) of the raw vmcore."""
    from elftools.elf.elffile import ELFFile
    with open(elf_path, "rb") as f:
        loads = [(s["p_paddr"], s["p_paddr"] + s["p_memsz"]) for s in ELFFile(f).iter_segments()
                 if s["p_type"] == "PT_LOAD"]
    partial = {a // 4096 for a, _ in loads if a % 4096} | {b // 4096 for _, b in loads if b % 4096}
    return max((b + 4095) // 4096 for _, b in loads), partial


def check(work, facts, level=31):
    """Judge what kdump-tools saved (at dump level ``level``) against the raw copy of the same
    /proc/vmcore, with libkdumpfile, makedumpfile and crash (never fastdump's own reader).
    Returns the findings; raises StepError listing every check that failed."""
    stampdir = pull_crash_dir(work)
    stamp = os.path.basename(stampdir)
    dump, dmesg = os.path.join(stampdir, "dump." + stamp), os.path.join(stampdir, "dmesg." + stamp)
    raw = os.path.join(work, "vmcore.raw")
    os.truncate(raw, facts["vmcore_size"])
    problems = []
    if facts["fallback"]:
        problems.append("the shim fell back to makedumpfile.distrib: %s" % facts["fallback"])
    if sorted(os.listdir(stampdir)) != sorted(["dump." + stamp, "dmesg." + stamp]):
        problems.append("%s holds %r, not dump.%s and dmesg.%s" % (stampdir, os.listdir(stampdir), stamp, stamp))
    found = {"stamp": stamp, "dump_bytes": os.path.getsize(dump) if os.path.exists(dump) else None}
    if not found["dump_bytes"]:        # makedumpfile -R spins on an empty stream: say it here
        problems.append("dump.%s is %s although kdump-config said it saved it"
                        % (stamp, "missing" if found["dump_bytes"] is None else "empty (0 bytes)"))
        raise StepError("kdump-tools' dump failed its checks:\n  " + "\n  ".join(problems))
    top, partial = ram_pfns(raw)
    # the page-for-page check: every page of the saved dump is the raw vmcore's page
    rebuilt = os.path.join(work, "dump.rebuilt")
    if os.path.exists(rebuilt):
        os.unlink(rebuilt)
    with open(dump, "rb") as f:      # kdump-tools saves a flattened stream; makedumpfile(8)'s way back
        r = subprocess.run([support.need_tool("makedumpfile"), "-R", rebuilt], stdin=f, capture_output=True,
                           text=True, timeout=600)
    if r.returncode:
        raise StepError("makedumpfile -R of the saved dump: %s" % r.stderr.strip()[-1000:])
    fmt, pages = support.kdumpfile_digests(rebuilt, top)
    _, source = support.kdumpfile_digests(raw, top)
    wrong = [p for p, h in pages.items() if source.get(p) != h]
    found.update(format=fmt, pages_saved=len(pages), pages_source=len(source), pages_wrong=len(wrong))
    if fmt != "diskdump":
        problems.append("the rebuilt dump is %s, not a kdump-compressed file" % fmt)
    if wrong:
        problems.append("%d saved pages differ from the raw vmcore, e.g. pfn %s" % (len(wrong), [hex(p) for p in wrong[:5]]))
    # the level: fastdump keeps what makedumpfile -d LEVEL keeps from the same raw vmcore, and
    # beyond that only pages a PT_LOAD covers in part (makedumpfile drops those, fastdump keeps
    # the part the vmcore holds)
    reference = os.path.join(work, "makedumpfile-reference")
    if os.path.exists(reference):
        os.unlink(reference)
    run([support.need_tool("makedumpfile"), "-c", "-d", str(level), raw, reference], timeout=900,
        what="makedumpfile -d %d on the raw vmcore" % level)
    _, kept = support.kdumpfile_digests(reference, top)
    found.update(makedumpfile_pages=len(kept), only_fastdump=sorted(set(pages) - set(kept))[:20],
                 only_makedumpfile=sorted(set(kept) - set(pages))[:20],
                 n_only_fastdump=len(set(pages) - set(kept)), n_only_makedumpfile=len(set(kept) - set(pages)))
    missing = set(kept) - set(pages)
    if missing and level & 16:
        # pages on the per-CPU free lists: fastdump drops them (proven free with the kernel's
        # own types), makedumpfile keeps them; this suite's own walk of the lists must agree
        from fastdump.sources.vmcore import ElfSource

        from .pcpwalk import StructPages, on_pcp_lists
        src = ElfSource(raw)
        try:
            on_lists = on_pcp_lists(StructPages(src), missing)
        finally:
            src.close()
        found["pcp_dropped"] = len(on_lists)
        missing -= on_lists
    if missing:
        problems.append("%d pages makedumpfile -d %d keeps are missing, e.g. pfn %s"
                        % (len(missing), level, [hex(p) for p in sorted(missing)[:5]]))
    if set(pages) - set(kept) - partial:
        extra = sorted(set(pages) - set(kept) - partial)
        problems.append("%d whole pages kept that makedumpfile -d %d drops, e.g. pfn %s"
                        % (len(extra), level, [hex(p) for p in extra[:5]]))
    # the kernel log kdump-config saved (through the shim: fastdump) against both tools' on the raw copy
    with open(dmesg, "rb") as f:
        saved = f.read()
    theirs = os.path.join(work, "dmesg.makedumpfile")
    if os.path.exists(theirs):
        os.unlink(theirs)
    run([support.need_tool("makedumpfile"), "--dump-dmesg", raw, theirs], timeout=300, what="makedumpfile --dump-dmesg")
    with open(theirs, "rb") as f:       # Debian 13's makedumpfile adds a caller column: left out
        if support.dmesg_without_caller_column(f.read()) != saved:
            problems.append("dmesg.%s differs from makedumpfile --dump-dmesg of the raw vmcore" % stamp)
    ours = subprocess.run([sys.executable, "-m", "fastdump", "dmesg", raw], cwd=REPO, capture_output=True, timeout=300)
    if ours.returncode or ours.stdout != saved:
        problems.append("dmesg.%s differs from fastdump dmesg of the raw vmcore (status %d)" % (stamp, ours.returncode))
    found["dmesg_bytes"] = len(saved)
    problems += crash_agrees(raw, rebuilt, facts["capture_release"], work)
    if b"sysrq" not in saved.lower():
        problems.append("dmesg.%s does not show the sysrq crash" % stamp)
    if problems:
        raise StepError("kdump-tools' dump failed its checks:\n  " + "\n  ".join(problems)
                        + "\nfindings: " + json.dumps(found))
    return found


def flow(crashkernel=CRASHKERNEL, makedump_args=None, makedumpfile=None, log=print):
    """Build (or reuse) the guest, boot it, crash it, check the dump kdump-tools saved.
    ``makedump_args``: MAKEDUMP_ARGS to set (None: kdump-config's default, ``-F -c -d 31``).
    Returns the findings, also in .cache/e2e/distro/<key>/run-<crashkernel>[-<args>]/result.json."""
    info = build(log=log)
    name = "run-" + crashkernel + ("" if makedump_args is None else "-" + makedump_args)
    name += "" if makedumpfile is None else "-" + os.path.basename(makedumpfile)
    work = os.path.join(DISTRO_CACHE, info["key"], re.sub(r"[^0-9A-Za-z]+", "_", name))
    t0 = time.monotonic()
    phases = boot(info, work, crashkernel, makedump_args, makedumpfile, log=log)
    facts = console_facts(os.path.join(work, "serial.log"))
    level = re.search(r"-d\s*(\d+)", makedump_args or "-d 31")      # kdump-config's default: -d 31
    found = check(work, facts, int(level.group(1)) if level else 31)
    result = {"crashkernel": crashkernel, "makedump_args": makedump_args, "guest_mib": MEM_MIB,
              "kernel": info["release"], "phases": phases,
              "boot_and_check_seconds": round(time.monotonic() - t0, 1), **facts, **found}
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    for name in ("root.img", "dump.rebuilt", "makedumpfile-reference"):     # large, and rebuilt by every run
        path = os.path.join(work, name)
        if os.path.exists(path):
            os.unlink(path)
    return result


def crash_agrees(raw, dump, release, work):
    """crash with the debug vmlinux (kernels.py's, for the kernel of KERNEL_KEY) prints the same
    for the saved dump as for the raw vmcore: [] or the problems."""
    try:
        vmlinux = kernels.debug_vmlinux(KERNEL_KEY)
    except kernels.FetchError as e:
        return ["no debug vmlinux for crash: %s" % e]
    if not os.path.basename(vmlinux).startswith("vmlinux-%s_" % release):
        return ["the debug vmlinux %s is not the guest kernel's (%s)" % (vmlinux, release)]
    rc, out = crashtool.crash(vmlinux, [raw], work)
    if rc or "PANIC:" not in out:
        return ["crash cannot read the raw vmcore (exit %d): %s" % (rc, out[-1500:])]
    want = crashtool.without_dump_names(out, [raw])
    rc, out = crashtool.crash(vmlinux, [dump], work)
    got = crashtool.without_dump_names(out, [dump])
    if rc or got != want:
        return ["crash prints something else for the saved dump than for the raw vmcore (exit %d):\n%s"
                % (rc, "\n".join(difflib.unified_diff(want, got, "raw", "dump", lineterm=""))[-3000:])]
    return []


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m tests.e2e.distro", description=__doc__.split("\n")[0])
    ap.add_argument("--build-only", action="store_true", help="build (or find) the guest root, do not boot")
    ap.add_argument("--crashkernel", action="append",
                    help="crashkernel= value(s) to try, in order (default %s)" % CRASHKERNEL)
    ap.add_argument("--makedump-args", action="append",
                    help="MAKEDUMP_ARGS value(s) to try, e.g. '-z -d 31' (default: kdump-tools' own)")
    ap.add_argument("--makedumpfile", metavar="FILE",
                    help="put FILE at /usr/bin/makedumpfile instead of the shim (to see the checks fail)")
    args = ap.parse_args(argv)
    if args.build_only:
        print(json.dumps(build(), indent=1))
        return 0
    status = 0
    for ck in args.crashkernel or [CRASHKERNEL]:
        for mda in args.makedump_args or [None]:
            try:
                print(json.dumps(flow(ck, mda, args.makedumpfile), indent=1))
            except StepError as e:
                print("distro: crashkernel=%s MAKEDUMP_ARGS=%s: %s" % (ck, mda, e), file=sys.stderr)
                status = 1
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StepError as e:
        print("distro: %s" % e, file=sys.stderr)
        sys.exit(1)
