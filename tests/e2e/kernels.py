"""Fetch and unpack Debian kernel packages with a private apt configuration.

The private sources list a release's own suite, its -updates and its -security suite
(aptsources.py: the archives this machine's apt uses, read at run time; nothing here names a
host), and a private, empty dpkg status, so what a release's ``linux-image-amd64`` resolves to
never depends on what this machine happens to have installed.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import time

from . import aptsources
from .paths import CACHE, StepError, locked, run

# key -> (suite, description).  The exact ABI is whatever the suite's
# linux-image-amd64 meta package depends on today.
KERNELS = {
    "5.10": "bullseye",
    "6.1": "bookworm",
    "6.12": "trixie",
    "sid": "sid",
}
DEFAULT_KERNELS = ("6.1", "6.12")

KEYRINGS = ("/usr/share/keyrings/debian-archive-keyring.gpg",
            "/usr/share/keyrings/debian-archive-keyring.pgp")


class FetchError(RuntimeError):
    pass


class Apt:
    """apt-get / apt-cache with private sources, lists, status and archive cache for one release."""

    def __init__(self, suite):
        self.suite = suite
        self.dir = os.path.join(CACHE, "apt", suite)
        self.lists = os.path.join(self.dir, "lists")
        self.archives = os.path.join(self.dir, "archives")
        self.lock = os.path.join(self.dir, "fetch.lock")     # held while apt-get writes here
        for d in (os.path.join(self.lists, "partial"), os.path.join(self.archives, "partial")):
            os.makedirs(d, exist_ok=True)
        self.sources = os.path.join(self.dir, "sources.list")
        self.status = os.path.join(self.dir, "status")   # empty: nothing counts as installed
        keyring = next((k for k in KEYRINGS if os.path.exists(k)), None)
        try:
            text = aptsources.sources_list(suite, signed_by=keyring)
        except aptsources.NoMirror as e:
            raise FetchError(str(e))
        old = open(self.sources).read() if os.path.exists(self.sources) else None
        if old != text:   # new suites or mirror: the cached lists are stale
            with open(self.sources, "w") as f:
                f.write(text)
            stamp = os.path.join(self.dir, "updated")
            if os.path.exists(stamp):
                os.unlink(stamp)
        open(self.status, "w").close()
        self.opts = [
            "-o", "Dir::Etc::SourceList=" + self.sources,
            "-o", "Dir::Etc::SourceParts=-",
            "-o", "Dir::Etc::Preferences=/dev/null", "-o", "Dir::Etc::PreferencesParts=-",
            "-o", "Dir::State::Lists=" + self.lists,
            "-o", "Dir::State::status=" + self.status,
            "-o", "Dir::Cache=" + self.dir,
            "-o", "Dir::Cache::archives=" + self.archives,
            "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
            "-o", "APT::Architecture=amd64",
            "-o", "APT::Architectures=amd64",
            "-o", "APT::Get::List-Cleanup=0",
        ]

    def update(self, max_age=6 * 3600):
        stamp = os.path.join(self.dir, "updated")
        with locked(self.lock):    # apt-get refuses a second update of the same lists
            if os.path.exists(stamp) and time.time() - os.stat(stamp).st_mtime < max_age:
                return
            run(["apt-get", "-q"] + self.opts + ["update"], timeout=600,
                what="apt-get update for %s" % self.suite)
            open(stamp, "w").close()

    def candidate(self, pkg):
        """The version apt would install of ``pkg`` (highest over all the suites), or None."""
        r = subprocess.run(["apt-cache"] + self.opts + ["policy", pkg], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=120)
        m = re.search(r"^\s*Candidate:\s*(\S+)", r.stdout, re.M)
        if r.returncode != 0 or not m or m.group(1) == "(none)":
            return None
        return m.group(1)

    def show(self, pkg):
        """The fields of the candidate version of ``pkg``, or None when no suite has it."""
        version = self.candidate(pkg)
        if version is None:
            return None
        r = subprocess.run(["apt-cache"] + self.opts + ["show", "%s=%s" % (pkg, version)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        if r.returncode != 0 or not r.stdout.strip():
            return None
        first = r.stdout.split("\n\n")[0]
        fields = {}
        key = None
        for line in first.splitlines():
            if line[:1].isspace() and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, v = line.partition(":")
                fields[key] = v.strip()
        return fields

    def download(self, pkg, version, dest):
        """``pkg`` at exactly ``version`` into ``dest`` (kept there: a second call is free)."""
        os.makedirs(dest, exist_ok=True)
        pattern = os.path.join(dest, "%s_%s_*.deb" % (pkg, version.replace(":", "%3a")))
        with locked(self.lock):
            have = glob.glob(pattern)
            if have:
                return have[0]
            run(["apt-get", "-q"] + self.opts + ["download", "%s=%s" % (pkg, version)],
                cwd=dest, timeout=1800, what="apt-get download %s=%s" % (pkg, version))
            have = glob.glob(pattern)
            if not have:
                raise FetchError("apt-get download %s=%s left no .deb" % (pkg, version))
            return have[0]


def _depends(fields):
    out = []
    for alt in fields.get("Depends", "").split(","):
        name = alt.split("|")[0].strip().split(" ")[0]
        if name:
            out.append(name)
    return out


def kernel_packages(apt):
    """Packages that hold the vmlinuz and modules of the suite's default amd64 kernel."""
    meta = apt.show("linux-image-amd64")
    if not meta:
        raise FetchError("linux-image-amd64 not found in %s" % apt.suite)
    want, todo, seen = [], list(_depends(meta)), set()
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        if not re.match(r"linux-(image|binary|modules|base)-\d", name):
            continue
        f = apt.show(name)
        if f is None:
            raise FetchError("%s (a dependency of linux-image-amd64) not in %s" % (name, apt.suite))
        if name.startswith("linux-image-") and not name.endswith("-unsigned"):
            unsigned = apt.show(name + "-unsigned")
            if unsigned is not None:  # same kernel, no signing template indirection
                f, name = unsigned, name + "-unsigned"
        want.append((name, f["Version"]))
        todo.extend(_depends(f))
    return want


def _unpack(apt, pkgs, debs, root, log):
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    for name, version in pkgs:
        log("e2e: fetching %s %s (%s)" % (name, version, apt.suite))
        deb = apt.download(name, version, debs)
        run(["dpkg-deb", "-x", deb, root], timeout=600, what="dpkg-deb -x " + deb)


def fetch(key, log=print):
    """Download and unpack the kernel for ``key``; returns its info dict (cached)."""
    if key not in KERNELS:
        raise FetchError("unknown kernel %r (known: %s)" % (key, ", ".join(KERNELS)))
    suite = KERNELS[key]
    kdir = os.path.join(CACHE, "kernels", key)
    info_path = os.path.join(kdir, "kernel.json")
    apt = Apt(suite)
    apt.update()
    pkgs = kernel_packages(apt)
    if os.path.exists(info_path):
        with open(info_path) as f:
            info = json.load(f)
        if info.get("packages") == [list(p) for p in pkgs] and os.path.exists(info["vmlinuz"]):
            return info
    root = os.path.join(kdir, "root")
    debs = os.path.join(kdir, "debs")
    try:
        _unpack(apt, pkgs, debs, root, log)
    except StepError:
        # The version the cached lists name has moved (a point release, a security upload):
        # take what the suites offer now.
        apt.update(max_age=0)
        pkgs = kernel_packages(apt)
        _unpack(apt, pkgs, debs, root, log)
    vmlinuz = sorted(glob.glob(os.path.join(root, "boot", "vmlinuz-*")) +
                     glob.glob(os.path.join(root, "usr/lib/modules/*/vmlinuz")) +
                     glob.glob(os.path.join(root, "lib/modules/*/vmlinuz")))
    if not vmlinuz:
        raise FetchError("no vmlinuz in %s" % ", ".join(n for n, _ in pkgs))
    vmlinuz = vmlinuz[0]
    if os.path.basename(vmlinuz).startswith("vmlinuz-"):
        release = os.path.basename(vmlinuz)[len("vmlinuz-"):]
    else:
        release = os.path.basename(os.path.dirname(vmlinuz))
    info = {"key": key, "suite": suite, "release": release, "vmlinuz": vmlinuz,
            "root": root, "packages": [list(p) for p in pkgs]}
    with open(info_path, "w") as f:
        json.dump(info, f, indent=2)
    return info


def _unpack_member(deb, member, dest, hops=3):
    """Unpack one file of ``deb`` into ``dest``; a symlink in the package is followed inside
    it (sid's -dbg has boot/vmlinux-* -> ../lib/modules/*/vmlinux).  Returns its path."""
    unpack = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
    r = subprocess.run(["tar", "-xf", "-", "-C", dest, "--occurrence=1", member], stdin=unpack.stdout,
                       stderr=subprocess.PIPE, text=True, timeout=900)
    unpack.stdout.close()
    unpack.kill()
    unpack.wait()
    got = os.path.join(dest, member)
    if r.returncode == 0 and os.path.islink(got) and hops > 0:
        target = os.path.normpath(os.path.join(os.path.dirname(member), os.readlink(got)))
        return _unpack_member(deb, "./" + target.lstrip("/"), dest, hops - 1)
    if r.returncode != 0 or not os.path.isfile(got) or os.path.islink(got):
        raise FetchError("no %s in %s: %s" % (member, deb, r.stderr.strip()[-500:]))
    return got


def debug_vmlinux(key, log=print):
    """The vmlinux with debug info of the kernel ``fetch(key)`` gives, from Debian's
    ``linux-image-<release>-dbg`` of the same version (0.9-1 GB; only vmlinux is kept:
    it comes early in the package, so tar stops there).  Cached."""
    info = fetch(key, log=log)
    release = info["release"]
    kdir = os.path.join(CACHE, "kernels", key)
    version = next((v for n, v in info["packages"] if n.startswith("linux-image-")), None)
    if version is None:
        raise FetchError("no linux-image package among %s" % info["packages"])
    # The version too: a new upload of the same ABI is another build.
    path = os.path.join(kdir, "vmlinux-%s_%s" % (release, version.replace(":", "%3a")))
    if os.path.exists(path):
        return path
    apt = Apt(info["suite"])
    apt.update()
    pkg = "linux-image-%s-dbg" % release
    if apt.show(pkg) is None:
        raise FetchError("%s is not in %s (any of its suites)" % (pkg, info["suite"]))
    log("e2e: fetching %s %s (%s)" % (pkg, version, info["suite"]))
    debs = os.path.join(kdir, "dbg")
    deb = apt.download(pkg, version, debs)
    tmp = os.path.join(kdir, "dbg", "root")
    os.makedirs(tmp, exist_ok=True)
    got = _unpack_member(deb, "./usr/lib/debug/boot/vmlinux-" + release, tmp)
    os.replace(got, path)
    shutil.rmtree(os.path.join(kdir, "dbg"))   # the rest of the package (modules' debug info) is not needed
    return path


def main(argv=None):
    """``python3 -m tests.e2e.kernels [--debug] [KEY ...]``: fetch kernels (default: all the
    harness knows) and, with --debug, their debug vmlinux; print what was resolved."""
    import argparse
    p = argparse.ArgumentParser(prog="python3 -m tests.e2e.kernels", description=main.__doc__)
    p.add_argument("--debug", action="store_true", help="also fetch the debug vmlinux")
    p.add_argument("keys", nargs="*", default=list(KERNELS))
    a = p.parse_args(argv)
    for key in a.keys:
        info = fetch(key)
        print("%s: %s %s" % (key, info["release"], " ".join("%s=%s" % tuple(x) for x in info["packages"])))
        if a.debug:
            print("%s: %s" % (key, debug_vmlinux(key)))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except (FetchError, StepError) as e:
        raise SystemExit("kernels: %s" % e)
