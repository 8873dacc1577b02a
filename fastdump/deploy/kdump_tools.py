"""Debian and Ubuntu (kdump-tools): makedumpfile diverted to makedumpfile.distrib, a shim in its place.

kdump-config runs plain ``makedumpfile`` on a fixed ``PATH=/bin:/usr/bin:/sbin:/usr/sbin``, so
fastdump goes where Debian puts a local replacement of a packaged file: ``dpkg-divert --local
--rename`` moves the package's makedumpfile aside (upgrades then update it there), and a tiny
``#!/bin/sh`` shim takes its name.  The shim runs the interpreter and the fastdump that ran
this setup by absolute path, since a pip, venv or pyenv install is not on that PATH
(PYTHONPATH names the directory holding the fastdump package; PYTHONSAFEPATH keeps the
current directory off sys.path).

kdump-config runs ``makedumpfile ARGS /proc/vmcore | compress > FILE`` under dash without
pipefail: it never sees the collector's exit status and saves whatever came out, even nothing.
So the shim itself makes sure there is a dump: when fastdump fails before writing a byte (a
rejected option, a missing module, a crash at start-up) it runs makedumpfile.distrib with the
same arguments and says so on stderr (the console).  It can tell "nothing written" because
fastdump, run as ``fastdump.deploy.makedumpfile``, writes one byte into a file the shim made
with mktemp before the first byte of output goes out.  A failure after that cannot start over
(the stream is partly sent): the shim exits 1 with a line.  The shim decides, not fastdump,
because only the shim still runs when Python or fastdump cannot start at all.
"""

import os
import subprocess
import sys

from .. import safefile
from ..errors import FastdumpError, UsageError

#: the shim's second line: how setup and undo tell their own shim from anything else
SHIM_TAG = "# fastdump shim for kdump-tools"
DISTRIB_SUFFIX = ".distrib"

SHIM = """#!/bin/sh
{tag}: `fastdump setup kdump-tools --undo` restores makedumpfile.
# kdump-config ignores our exit status, so: nothing written -> the distribution's makedumpfile.
distrib={distrib}
if ! mark=$(mktemp -t fastdump-shim.XXXXXX); then
    echo "makedumpfile: fastdump shim: no temporary file; running $distrib" >&2
    exec "$distrib" "$@"
fi
FASTDUMP_SHIM_MARK=$mark PYTHONSAFEPATH=1 PYTHONPATH={pythonpath} {python} -m fastdump.deploy.makedumpfile "$@"
status=$?
if [ -s "$mark" ]; then wrote=1; else wrote=0; fi
rm -f "$mark"
[ $status -eq 0 ] && exit 0
if [ $wrote -eq 1 ]; then
    echo "makedumpfile: fastdump failed (status $status) after writing: this dump is incomplete" >&2
    exit 1
fi
echo "makedumpfile: fastdump failed (status $status) before writing anything; running $distrib" >&2
exec "$distrib" "$@"
"""


def add_arguments(p):
    p.add_argument("--undo", action="store_true", help="remove the shim and the diversion, restoring makedumpfile")
    p.add_argument("--root", default="/", metavar="DIR",
                   help="the system to change (default /; dpkg-divert --root, for tests and chroots)")


def run(args):
    if os.geteuid() != 0:
        raise FastdumpError("fastdump setup kdump-tools must be run as root")
    root = os.path.abspath(args.root)
    _need_installed(root, ("kdump-tools", "makedumpfile"))
    path = _makedumpfile_path(root)
    if args.undo:
        print(_undo(root, path))
    else:
        print(_setup(root, path))
    return 0


def _setup(root, path):
    distrib = path + DISTRIB_SUFFIX
    state = _state(root, path)
    if state == "ours":
        _write_shim(root, path, force=True)
        return f"fastdump setup kdump-tools: already set up; shim {path} refreshed for {sys.executable}"
    if state != "none":
        raise FastdumpError(state)
    if not os.path.lexists(root + path):
        raise FastdumpError(f"{path} is missing although makedumpfile is installed: reinstall makedumpfile")
    _dpkg_divert(root, "--local", "--rename", "--divert", distrib, "--add", path)
    try:
        _write_shim(root, path, force=False)
    except BaseException:
        _dpkg_divert(root, "--local", "--rename", "--divert", distrib, "--remove", path)
        raise
    return (f"fastdump setup kdump-tools: {path} now runs fastdump ({sys.executable}); "
            f"the distribution's makedumpfile is {distrib}")


def _undo(root, path):
    state = _state(root, path)
    if state == "none":
        return "fastdump setup kdump-tools --undo: not set up; nothing to undo"
    if state != "ours":
        raise FastdumpError(state)
    aside = root + path + ".fastdump-undo" if os.path.lexists(root + path) else None
    if aside:
        os.rename(root + path, aside)      # dpkg-divert --rename will not move the original over it
    try:
        _dpkg_divert(root, "--local", "--rename", "--divert", path + DISTRIB_SUFFIX, "--remove", path)
    except BaseException:
        if aside:
            os.rename(aside, root + path)
        raise
    if aside:
        os.unlink(aside)
    safefile.fsync_dir(os.path.dirname(root + path))
    return f"fastdump setup kdump-tools --undo: {path} is the distribution's makedumpfile again"


def _state(root, path):
    """"ours" (our diversion, and our shim or none), "none" (neither), or why it is neither."""
    diverted_to = _dpkg_divert(root, "--truename", path)
    by = _dpkg_divert(root, "--listpackage", path)
    shim = _is_shim(root + path)
    if diverted_to == path:
        if shim:
            return (f"{path} is fastdump's shim but not diverted: "
                    "restore it with `apt-get install --reinstall makedumpfile`")
        return "none"
    if by != "LOCAL" or diverted_to != path + DISTRIB_SUFFIX:
        return (f"{path} is already diverted to {diverted_to} by {by or 'an unknown package'}: "
                "not fastdump's; left alone")
    if not shim and os.path.lexists(root + path):
        return f"{path} is diverted locally but is not fastdump's shim: left alone"
    return "ours"


def _is_shim(path):
    try:
        with open(path, "rb") as f:
            lines = f.read(4096).split(b"\n")
        return len(lines) > 1 and lines[1].startswith(SHIM_TAG.encode() + b":")
    except FileNotFoundError:
        return False
    except OSError as e:
        raise FastdumpError(f"cannot read {path}: {e.strerror}") from None


def _write_shim(root, path, *, force):
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = SHIM.format(tag=SHIM_TAG, distrib=_quote(path + DISTRIB_SUFFIX), pythonpath=_quote(package_parent),
                       python=_quote(os.path.abspath(sys.executable)))
    safefile.write_file(root + path, text.encode(), force=force, executable=True)


def _quote(text):
    """A single-quoted sh word; a path with a quote or newline in it is refused."""
    if "'" in text or "\n" in text:
        raise UsageError(f"path {text!r} holds a quote or newline: install fastdump elsewhere")
    return f"'{text}'"


def _need_installed(root, packages):
    r = _run(["dpkg-query", f"--root={root}", "-W", "-f", "${Package} ${db:Status-Status}\n", *packages])
    installed = {line.split()[0] for line in r.stdout.splitlines() if line.endswith(" installed")}
    missing = [p for p in packages if p not in installed]
    if missing:
        raise FastdumpError(f"{' and '.join(missing)} not installed: apt-get install kdump-tools makedumpfile")


def _makedumpfile_path(root):
    """Where the makedumpfile package puts the program (/usr/bin in Debian 12 and 13)."""
    r = _run(["dpkg-query", f"--root={root}", "-L", "makedumpfile"])
    for line in r.stdout.splitlines():
        if os.path.basename(line) == "makedumpfile" and os.path.basename(os.path.dirname(line)) in ("bin", "sbin"):
            return line
    raise FastdumpError("the makedumpfile package lists no makedumpfile program")


def _dpkg_divert(root, *args):
    r = _run(["dpkg-divert", f"--root={root}", *args])
    if r.returncode:
        why = (r.stderr or r.stdout).strip().splitlines() or [f"exit status {r.returncode}"]
        raise FastdumpError(f"dpkg-divert {' '.join(args)}: {why[-1]}")
    return r.stdout.strip()


def _run(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise FastdumpError(f"{argv[0]} not found: this is not a Debian or Ubuntu system") from None
