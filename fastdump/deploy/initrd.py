"""Build a kdump capture environment (an initramfs) that runs fastdump.

    python -m fastdump.deploy.initrd -o capture.img [options]      (later: fastdump initrd)

The image is a cpio "newc" archive (gzip-compressed unless ``--compress none``)
holding:

* busybox (static) with one symlink per applet in /bin,
* what fastdump.deploy.payload lists to run fastdump with the interpreter that
  runs this builder (``sys.executable``): the interpreter, the standard-library
  files a real collector run imports, fastdump with its compiled core, their
  shared libraries and the /usr/bin/fastdump launcher (the same list the dracut
  module packs), plus ``--python-module`` extras,
* optionally makedumpfile and kexec with their libraries, kernel modules from an
  unpacked kernel package (dependencies resolved from each module's modinfo),
  and arbitrary extra files (``--add SRC:DEST``),
* a generic ``/init``.

What /init does (busybox ash):

1. mounts /proc, /sys, /dev (devtmpfs); loads the packed modules in order,
2. if ``/proc/vmcore`` exists (we are the capture kernel): runs
   ``/etc/fastdump/capture.sh`` if packed, else the built-in capture step:
   mount ``fastdump.out=DEV`` (a device, or LABEL=x / UUID=x; file system type
   from ``fastdump.fstype=``, default auto) on /out, or ``fastdump.out=nfs:IP:/PATH``
   (the kernel's NFS client, NFSv4.1 by default: one TCP port, no rpcbind or mountd needed on
   the server, no lock daemon here (busybox has none); ``fastdump.nfsopts=`` replaces the
   options before ``addr=``, e.g. ``vers=4.2,port=2050`` or ``vers=3,nolock``; pack ``nfsv4``
   (or ``nfsv3``) and the NIC driver with ``--module``), or send
   the dump to ``fastdump.out=ssh://USER@HOST/DIR`` (``--ssh auto``; the key and
   known_hosts with ``--add``, named in fastdump.args).  Network targets first bring
   up ``fastdump.net=dhcp`` (default; busybox udhcpc) or ``IFACE,ADDR/PREFIX[,GW]``.
   If ``/out/fastdump-job.sh``
   exists, source it (a job written by whoever prepared the disk); otherwise run
   ``fastdump ARGS /proc/vmcore /out/``: a directory target, so each crash gets
   its own ``/out/<host>-<date>/vmcore`` (and vmcore-dmesg.txt), as kdump-utils
   lays dumps out; ARGS from ``fastdump.args=`` (commas stand for spaces;
   default ``-d,31,-z``),
3. otherwise (a normal boot): runs ``/etc/fastdump/first.sh`` if packed, else a
   shell,
4. finishes with ``fastdump.final=reboot|poweroff|shell`` (default reboot, as
   Debian's kdump-tools and kdump-utils do after saving a dump).

Only the standard library is used here (and fastdump.safefile, so the image is
created like every other file fastdump writes), so the builder works before the
rest of the package is importable.
"""

import argparse
import gzip
import io
import json
import lzma
import os
import py_compile
import shutil
import stat
import subprocess
import sys
import tempfile
import time

from .. import safefile
from . import payload
from .payload import is_elf, ldd_deps
from ..errors import FastdumpError

INIT_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp",
             "run", "out", "etc/fastdump", "root", "mnt", "var")

class BuildError(Exception):
    pass


# --------------------------------------------------------------------------- cpio


class CpioWriter:
    """A minimal writer of the cpio "newc" format that the kernel unpacks."""

    def __init__(self, fileobj):
        self.f = fileobj
        self.ino = 1
        self.nbytes = 0

    def _write(self, data):
        self.f.write(data)
        self.nbytes += len(data)

    def _pad(self):
        if self.nbytes % 4:
            self._write(b"\0" * (4 - self.nbytes % 4))

    def entry(self, name, mode, data=b"", mtime=0, rdev=(0, 0), nlink=1):
        name = name.lstrip("/") or "."
        bname = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, nlink, int(mtime), len(data), 0, 0,
                  rdev[0], rdev[1], len(bname), 0)
        self.ino += 1
        self._write(b"070701" + b"".join(b"%08X" % v for v in fields))
        self._write(bname)
        self._pad()
        if data:
            self._write(data)
            self._pad()

    def trailer(self):
        self.entry("TRAILER!!!", 0, nlink=1)
        # The kernel does not need it, but pad to 512 like cpio(1) does.
        if self.nbytes % 512:
            self._write(b"\0" * (512 - self.nbytes % 512))


class Tree:
    """The file set of the image: destination path -> entry."""

    def __init__(self):
        self.entries = {}  # path -> ("dir"|"file"|"link"|"chr", payload, mode, mtime)

    def add_dir(self, path, mode=0o755):
        path = "/" + path.strip("/")
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/" + "/".join(parts[:i])
            kind = self.entries.get(p, ("",))[0]
            if kind == "link":  # a symlinked directory: keep it, its target gets the files
                continue
            if not kind:
                self.entries[p] = ("dir", None, mode, 0)

    def add_bytes(self, path, data, mode=0o644, mtime=0):
        path = "/" + path.strip("/")
        self.add_dir(os.path.dirname(path))
        self.entries[path] = ("file", data, mode, mtime)

    def add_file(self, path, src, mode=None, strip=False):
        """Add host file ``src`` as ``path`` (default: the same path)."""
        path = "/" + (path or src).strip("/")
        st = os.stat(src)
        self.add_dir(os.path.dirname(path))
        self.entries[path] = ("file", ("host", src, strip), mode or stat.S_IMODE(st.st_mode),
                              int(st.st_mtime))

    def add_symlink(self, path, target):
        path = "/" + path.strip("/")
        self.add_dir(os.path.dirname(path))
        self.entries[path] = ("link", target, 0o777, 0)

    def add_chr(self, path, major, minor, mode=0o600):
        path = "/" + path.strip("/")
        self.add_dir(os.path.dirname(path))
        self.entries[path] = ("chr", (major, minor), mode, 0)

    def __contains__(self, path):
        return ("/" + path.strip("/")) in self.entries

    def write(self, fileobj, strip_tool=None):
        w = CpioWriter(fileobj)
        # Directories before their contents: sorting by path does that.
        for path in sorted(self.entries):
            kind, payload, mode, mtime = self.entries[path]
            if kind == "dir":
                w.entry(path, stat.S_IFDIR | mode, mtime=mtime, nlink=2)
            elif kind == "link":
                w.entry(path, stat.S_IFLNK | mode, payload.encode())
            elif kind == "chr":
                w.entry(path, stat.S_IFCHR | mode, rdev=payload)
            else:
                w.entry(path, stat.S_IFREG | mode, _payload_bytes(payload, strip_tool), mtime)
        w.trailer()
        return w.nbytes


def _payload_bytes(payload, strip_tool):
    if isinstance(payload, bytes):
        return payload
    _, src, strip = payload
    if strip and strip_tool:
        with tempfile.TemporaryDirectory() as td:
            out = os.path.join(td, "s")
            r = subprocess.run([strip_tool, "--strip-unneeded", "-o", out, src],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                with open(out, "rb") as f:
                    return f.read()
    with open(src, "rb") as f:
        return f.read()


# --------------------------------------------------------------------------- helpers


def which(name, extra=("/usr/sbin", "/sbin", "/usr/bin", "/bin")):
    p = shutil.which(name)
    if p:
        return p
    for d in extra:
        c = os.path.join(d, name)
        if os.access(c, os.X_OK):
            return c
    return None


def add_binary(tree, src, dest=None, strip=False):
    """Add an executable or shared object and (recursively) its libraries."""
    tree.add_file(dest or src, src, strip=strip)
    if is_elf(src):
        for lib in ldd_deps(src):
            if lib not in tree:
                tree.add_file(lib, os.path.realpath(lib), strip=strip)


# --------------------------------------------------------------------------- python


def add_payload(tree, items, strip):
    """Add the payload's entries (fastdump.deploy.payload): bytecode beside each source, fresh
    when the host's is not current, so the emulated capture kernel does not compile."""
    for kind, dest, src in items:
        if kind == "dir":
            tree.add_dir(dest)
        elif kind == "link":
            tree.add_symlink(dest, src)
        elif kind == "elf":
            tree.add_file(dest, src, strip=strip)
        else:
            tree.add_file(dest, src)
        if kind == "py":
            d, name = os.path.split(dest)
            tree.add_bytes(os.path.join(d, "__pycache__", "%s.%s.pyc" % (name[:-3], sys.implementation.cache_tag)),
                           _bytecode(src))


def _bytecode(src):
    pyc = payload.host_bytecode(src)
    if pyc:
        with open(pyc, "rb") as f:
            return f.read()
    with tempfile.TemporaryDirectory() as td:
        cfile = os.path.join(td, "x.pyc")
        py_compile.compile(src, cfile=cfile, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        with open(cfile, "rb") as f:
            return f.read()


# --------------------------------------------------------------------------- kernel modules


def _read_module(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".zst"):
        r = subprocess.run(["zstd", "-dc", path], stdout=subprocess.PIPE, check=True)
        return r.stdout
    if path.endswith(".gz"):
        return gzip.decompress(data)
    return data


def _modinfo(data):
    """key -> [values] from a module's .modinfo section (scanned, not parsed)."""
    info = {}
    # .modinfo is a run of NUL-terminated "key=value" strings; locate it via ELF.
    import struct
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise BuildError("not an ELF64 module")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    secs = []
    for i in range(shnum):
        name, typ, flags, addr, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        secs.append((name, off, size))
    stroff = secs[shstrndx][1]
    for name, off, size in secs:
        end = data.index(b"\0", stroff + name)
        if data[stroff + name:end] == b".modinfo":
            for item in data[off:off + size].split(b"\0"):
                if b"=" in item:
                    k, _, v = item.partition(b"=")
                    info.setdefault(k.decode(), []).append(v.decode(errors="replace"))
    return info


def module_index(modroot, kver):
    """(name -> path, builtin names) for an unpacked kernel package."""
    base = None
    for cand in ("lib/modules", "usr/lib/modules"):
        d = os.path.join(modroot, cand, kver)
        if os.path.isdir(d):
            base = d
            break
    if base is None:
        raise BuildError("no modules for %s under %s" % (kver, modroot))
    index = {}
    for root, _, files in os.walk(base):
        for name in files:
            for ext in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
                if name.endswith(ext):
                    index[name[:-len(ext)].replace("-", "_")] = os.path.join(root, name)
    builtin = set()
    for cand in ("lib/modules", "usr/lib/modules"):
        p = os.path.join(modroot, cand, kver, "modules.builtin")
        if os.path.exists(p):
            with open(p) as f:
                for line in f:
                    n = os.path.basename(line.strip())
                    for ext in (".ko",):
                        if n.endswith(ext):
                            builtin.add(n[:-len(ext)].replace("-", "_"))
    return index, builtin


def resolve_modules(modroot, kver, wanted, optional=()):
    """Load order [(name, bytes)] for ``wanted`` and whatever they depend on."""
    index, builtin = module_index(modroot, kver)
    order, seen, data = [], set(), {}

    def visit(name, required, chain):
        name = name.replace("-", "_")
        if name in seen:
            return
        if name not in index:
            if name in builtin:
                seen.add(name)
                return
            if required:
                raise BuildError("kernel module %s (%s) is neither a module nor built in for %s"
                                 % (name, " <- ".join(chain), kver))
            return
        seen.add(name)
        blob = _read_module(index[name])
        info = _modinfo(blob)
        for dep in ",".join(info.get("depends", [""])).split(","):
            if dep:
                visit(dep, True, chain + [dep])
        for sd in info.get("softdep", []):
            # "pre: a b post: c": load the pre ones (crc32c for ext4 and friends)
            words = sd.split()
            pre = False
            for w in words:
                if w.endswith(":"):
                    pre = (w == "pre:")
                elif pre:
                    visit(w, False, chain + [w])
        order.append(name)
        data[name] = blob

    for m in wanted:
        visit(m, True, [m])
    for m in optional:
        visit(m, False, [m])
    return [(n, data[n]) for n in order]


# --------------------------------------------------------------------------- init

INIT = r"""#!/bin/sh
# fastdump capture environment /init (generated by fastdump.deploy.initrd)
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /tmp /run /out
mount -t tmpfs tmpfs /run
log() { echo "fastdump-init: $*"; }
param() {  # param NAME DEFAULT: value of NAME= on the kernel command line
    v="$2"
    for w in $(cat /proc/cmdline); do
        case "$w" in "$1="*) v="${w#*=}" ;; esac
    done
    echo "$v"
}
finish() {
    sync
    case "$(param fastdump.final reboot)" in
        poweroff) poweroff -f ;;
        shell) exec sh ;;
        *) reboot -f ;;
    esac
    sleep 5; echo o > /proc/sysrq-trigger
}
KVER=$(uname -r)
if [ -f /etc/fastdump/modules ]; then
    while read -r m; do
        [ -n "$m" ] || continue
        insmod "/lib/modules/$KVER/fastdump/$m.ko" 2>/tmp/insmod.err || {
            grep -q 'File exists' /tmp/insmod.err || log "insmod $m: $(cat /tmp/insmod.err)"; }
    done < /etc/fastdump/modules
fi
wait_dev() {  # wait_dev SPEC SECONDS -> prints the device node
    spec="$1"; n=0
    while [ "$n" -lt "$2" ]; do
        case "$spec" in
            LABEL=*|UUID=*) d=$(findfs "$spec" 2>/dev/null) ;;
            *) d="$spec" ;;
        esac
        if [ -n "$d" ] && [ -b "$d" ]; then echo "$d"; return 0; fi
        sleep 1; n=$((n + 1))
    done
    return 1
}
net_up() { /etc/fastdump/net.sh "$(param fastdump.net dhcp)"; }
if [ -e /proc/vmcore ]; then
    log "capture kernel $KVER, /proc/vmcore $(stat -c %s /proc/vmcore) bytes"
    if [ -f /etc/fastdump/capture.sh ]; then
        . /etc/fastdump/capture.sh
    else
        spec=$(param fastdump.out "")
        args=$(param fastdump.args -d,31,-z | tr , ' ')
        case "$spec" in
            "") log "no fastdump.out= on the command line"; exec sh ;;
            ssh://*)
                net_up || finish
                fastdump $args /proc/vmcore "$spec"
                log "fastdump exit status $?"
                finish ;;
            nfs:*)   # nfs:SERVER-IP:/PATH: the kernel's own NFS client parses the options
                net_up || finish
                export=${spec#nfs:}; server=${export%%:*}
                opts="$(param fastdump.nfsopts vers=4.1),addr=$server"
                mount -t nfs -o "$opts" "$export" /out || { log "cannot mount $export ($opts)"; finish; } ;;
            *)
                dev=$(wait_dev "$spec" 30) || { log "device $spec did not appear"; finish; }
                fstype=$(param fastdump.fstype auto)
                mount -t "$fstype" "$dev" /out || { log "cannot mount $dev"; finish; } ;;
        esac
        if [ -f /out/fastdump-job.sh ]; then
            . /out/fastdump-job.sh
        else
            fastdump $args /proc/vmcore /out/
            log "fastdump exit status $?"
        fi
        sync
        umount /out
    fi
    finish
else
    if [ -f /etc/fastdump/first.sh ]; then
        . /etc/fastdump/first.sh
    else
        log "no /proc/vmcore: not a capture kernel; starting a shell"
        exec sh
    fi
    finish
fi
"""

NET = r"""#!/bin/sh
# fastdump initrd: bring up the network for an nfs: or ssh:// target.
# $1: dhcp (the first interface that is not lo; busybox udhcpc) or IFACE,ADDR/PREFIX[,GATEWAY]
log() { echo "fastdump-init: $*"; }
net=$1
case "$net" in
    dhcp) iface="" ;;
    *) iface=${net%%,*} ;;
esac
n=0
while [ -z "$iface" ] && [ "$n" -lt 30 ]; do   # the NIC's driver may still be probing
    for i in /sys/class/net/*; do [ "${i##*/}" = lo ] || { iface=${i##*/}; break; }; done
    [ -n "$iface" ] || { sleep 1; n=$((n + 1)); }
done
[ -n "$iface" ] || { log "no network interface (pack its driver with --module)"; exit 1; }
ip link set lo up
ip link set "$iface" up || { log "cannot bring up $iface"; exit 1; }
if [ "$net" = dhcp ]; then
    udhcpc -i "$iface" -s /etc/fastdump/udhcpc.sh -q -n -t 10 >/dev/null || { log "no DHCP answer on $iface"; exit 1; }
else
    rest=${net#*,}; addr=${rest%%,*}; gw=""
    [ "$rest" = "$addr" ] || gw=${rest#*,}
    ip addr add "$addr" dev "$iface" || { log "cannot set $addr on $iface"; exit 1; }
    [ -z "$gw" ] || ip route add default via "$gw" dev "$iface" || { log "cannot route via $gw"; exit 1; }
fi
log "network: $iface $(ip -o -4 addr show dev "$iface" | tr -s ' ' | cut -d' ' -f4)"
"""

UDHCPC = """#!/bin/sh
# busybox udhcpc's hook: configure the leased address and the default route
case "$1" in
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -z "$router" ] || ip route add default via "${router%% *}" dev "$interface"
        ;;
esac
"""

# --------------------------------------------------------------------------- build


def build(args):
    t0 = time.monotonic()
    safefile.check_free(args.output, force=args.force)   # refuse before the build, not after
    tree = Tree()
    for d in INIT_DIRS:
        tree.add_dir(d)
    tree.add_dir("tmp", 0o1777)
    tree.add_chr("dev/console", 5, 1)
    tree.add_chr("dev/null", 1, 3, 0o666)
    strip_tool = which("strip") if args.strip else None
    notes = {}

    bb = args.busybox or which("busybox")
    if not bb or not os.path.exists(bb):
        raise BuildError("busybox not found (Debian: apt-get install busybox-static)")
    if ldd_deps(bb):
        raise BuildError("%s is not statically linked (use busybox-static)" % bb)
    tree.add_file("/bin/busybox", bb)
    r = subprocess.run([bb, "--list-full"], stdout=subprocess.PIPE, text=True, check=True)
    for applet in r.stdout.split():
        if applet.endswith("busybox"):
            continue
        if ("/" + applet) not in tree.entries:
            tree.add_symlink(applet, "/bin/busybox")
    tree.add_bytes("/init", INIT.encode(), 0o755)
    tree.add_bytes("/etc/fastdump/net.sh", NET.encode(), 0o755)
    tree.add_bytes("/etc/fastdump/udhcpc.sh", UDHCPC.encode(), 0o755)

    python = os.path.abspath(args.python or sys.executable)
    if (not args.no_fastdump) or args.python_module or args.with_python:
        extra = [m for ms in args.python_module for m in ms.split(",") if m]
        try:
            items, info = payload.entries(python, args.fastdump_package, payload.OPTIONAL_MODULES + tuple(extra),
                                          with_fastdump=not args.no_fastdump)
        except payload.PayloadError as e:
            raise BuildError(str(e)) from None
        add_payload(tree, items, args.strip)
        notes["python"] = {"executable": python, "files": len(items)}
        missing = [m for m in info["missing"] if m in extra]
        if missing:
            notes["missing_modules"] = missing
        tree.add_bytes("/usr/bin/fdpython", payload.launcher(python, payload.PYLAUNCHER).encode(), 0o755)
        if not args.no_fastdump:
            notes["fastdump"] = {"package": args.fastdump_package or payload.find_fastdump_package()}
            tree.add_bytes("/usr/bin/fastdump", payload.launcher(python).encode(), 0o755)

    for name, path in (("makedumpfile", args.makedumpfile), ("kexec", args.kexec), ("ssh", args.ssh)):
        if path in (None, "none"):
            continue
        if path == "auto":
            path = which(name)
            if not path:
                raise BuildError("%s not found" % name)
        add_binary(tree, os.path.realpath(path), "/usr/sbin/" + name, strip=False)
        notes[name] = os.path.realpath(path)
    if args.ssh != "none":   # ssh looks its user up (home, ~/.ssh)
        tree.add_bytes("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        tree.add_bytes("/etc/group", b"root:x:0:\n")

    if args.kmod_root:
        if not args.kver:
            raise BuildError("--kmod-root needs --kver")
        mods = resolve_modules(args.kmod_root, args.kver,
                               [m for ms in args.module for m in ms.split(",") if m],
                               [m for ms in args.module_optional for m in ms.split(",") if m])
        for name, blob in mods:
            tree.add_bytes("/lib/modules/%s/fastdump/%s.ko" % (args.kver, name), blob)
        tree.add_bytes("/etc/fastdump/modules", "".join(n + "\n" for n, _ in mods).encode())
        notes["modules"] = [n for n, _ in mods]

    for spec in args.add:
        src, sep, dest = spec.partition(":")
        if not sep:
            dest = src
        if not os.path.exists(src):
            raise BuildError("--add: %s does not exist" % src)
        if os.path.isdir(src):
            for root, _, files in os.walk(src):
                for fn in files:
                    s = os.path.join(root, fn)
                    tree.add_file(os.path.join(dest, os.path.relpath(s, src)), s)
        elif is_elf(src):
            add_binary(tree, src, dest)
        else:
            tree.add_file(dest, src)

    buf = io.BytesIO()
    raw_size = tree.write(buf, strip_tool)
    data = buf.getvalue()
    if args.compress == "gzip":
        data = gzip.compress(data, compresslevel=6, mtime=0)
    safefile.write_file(args.output, data, force=args.force)
    notes.update({"output": args.output, "size": len(data), "uncompressed_size": raw_size,
                  "files": sum(1 for e in tree.entries.values() if e[0] == "file"),
                  "compress": args.compress, "seconds": round(time.monotonic() - t0, 1)})
    return notes


def parse_args(argv):
    p = argparse.ArgumentParser(prog="fastdump initrd",
                                description="Build a kdump capture initramfs that runs fastdump.")
    p.add_argument("-o", "--output", required=True, help="image file to write")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing image file")
    p.add_argument("--compress", choices=("gzip", "none"), default="gzip")
    p.add_argument("--busybox", help="static busybox (default: busybox on PATH)")
    p.add_argument("--python", help="interpreter to pack (default: the one running this)")
    p.add_argument("--python-module", action="append", default=[], metavar="MOD[,MOD]",
                   help="extra stdlib modules to pack (repeatable)")
    p.add_argument("--with-python", action="store_true",
                   help="pack the interpreter even with --no-fastdump")
    p.add_argument("--no-fastdump", action="store_true",
                   help="leave the fastdump package out (raw copies / makedumpfile only)")
    p.add_argument("--fastdump-package", help="package directory (default: the importable one)")
    p.add_argument("--makedumpfile", default="none",
                   help="makedumpfile binary to pack: a path, 'auto' or 'none' (default)")
    p.add_argument("--kexec", default="none", help="kexec binary: a path, 'auto' or 'none'")
    p.add_argument("--ssh", default="none",
                   help="ssh client for ssh:// targets: a path, 'auto' or 'none' (key, known_hosts: --add)")
    p.add_argument("--kmod-root", help="unpacked kernel package root (holds lib/modules/KVER)")
    p.add_argument("--kver", help="kernel release of the modules")
    p.add_argument("--module", action="append", default=[], metavar="NAME[,NAME]",
                   help="kernel module to pack with its dependencies (built-in ones are skipped)")
    p.add_argument("--module-optional", action="append", default=[], metavar="NAME[,NAME]",
                   help="like --module, but missing is fine")
    p.add_argument("--add", action="append", default=[], metavar="SRC[:DEST]",
                   help="extra file or directory (ELF files bring their libraries)")
    p.add_argument("--no-strip", dest="strip", action="store_false",
                   help="do not strip libpython and extensions")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        notes = build(args)
    except (BuildError, payload.PayloadError, FastdumpError) as e:
        print("fastdump initrd: error: %s" % e, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(notes, indent=2))
    else:
        print("wrote %s: %.1f MiB (%.1f MiB unpacked, %d files) in %.1f s"
              % (notes["output"], notes["size"] / 2**20, notes["uncompressed_size"] / 2**20,
                 notes["files"], notes["seconds"]))
        if notes.get("missing_modules"):
            print("warning: --python-module not found: %s" % ", ".join(notes["missing_modules"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
