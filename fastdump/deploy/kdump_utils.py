"""Fedora, RHEL, CentOS Stream (kdump-utils, dracut): a dracut module and the kdump.conf lines.

kdump-utils builds its capture initramfs with dracut; its 99kdumpbase module copies only the
first word of ``core_collector`` (looked up on /sbin:/bin:/usr/sbin:/usr/bin) and its ``#!``
interpreter, which is not enough to run Python.  So this setup installs fastdump's own dracut
module (shipped in the package, ``deploy/dracut/99fastdump``) into
``<root>/usr/lib/dracut/modules.d/99fastdump``, beside it a tiny ``python`` script naming the
interpreter and fastdump that ran the setup, and, when no ``fastdump`` is on that path, a
``/usr/sbin/fastdump`` shim calling them by absolute path (mkdumprd needs the first word to
exist there).  The module packs what fastdump.deploy.payload lists (the ``fastdump initrd``
list) and puts its own launcher at /usr/bin and /usr/sbin/fastdump in the initramfs.

The kdump.conf lines are printed; ``--apply`` writes them (a backup first; a replaced
``core_collector`` or ``dracut_args`` line is kept, commented out with a tag).  ``--undo``
removes exactly what the setup added: the module, the shim, the tagged lines.
"""

import os
import shutil
import subprocess
import sys

from .. import safefile
from ..errors import FastdumpError, UsageError
from .kdump_tools import _quote

TAG = "# fastdump setup kdump-utils"
MODULE = "usr/lib/dracut/modules.d/99fastdump"
SHIM = "usr/sbin/fastdump"
CONF = "etc/kdump.conf"
#: where kdump-utils' mkdumprd looks for the core_collector's first word
COLLECTOR_PATH = ("sbin", "bin", "usr/sbin", "usr/bin")
DEFAULT_COLLECTOR = "-l --message-level 7 -d 31"
ADDED = "  " + TAG
WAS = "#fastdump-was: "
BACKUP = ".fastdump-backup"
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dracut", "99fastdump")

PYTHON = """#!/bin/sh
{tag}: the interpreter and fastdump the dracut module packs.
PYTHONSAFEPATH=1 PYTHONPATH={pythonpath} exec {python} "$@"
"""
COMMAND = """#!/bin/sh
{tag}: `fastdump` on kdump-utils' path (the initramfs gets its own launcher).
PYTHONSAFEPATH=1 PYTHONPATH={pythonpath} exec {python} -m fastdump "$@"
"""


def add_arguments(p):
    p.add_argument("--undo", action="store_true", help="remove the dracut module, the shim and the kdump.conf lines")
    p.add_argument("--root", default="/", metavar="DIR", help="the system to change (default /)")
    p.add_argument("--apply", action="store_true", help="write the lines into /etc/kdump.conf (after a backup)")
    p.add_argument("--collector", default=DEFAULT_COLLECTOR, metavar="ARGS",
                   help=f"fastdump's options in core_collector (default: {DEFAULT_COLLECTOR!r})")


def run(args):
    if os.geteuid() != 0:
        raise FastdumpError("fastdump setup kdump-utils must be run as root")
    root = os.path.abspath(args.root)
    if args.undo:
        for line in _undo(root):
            print(line)
        return 0
    modules = os.path.join(root, os.path.dirname(MODULE))
    if not os.path.isdir(modules):
        raise FastdumpError(f"{modules} is missing: install kdump-utils (dracut)")
    lines = conf_lines(args.collector)
    if args.apply and not os.path.exists(os.path.join(root, CONF)):
        raise FastdumpError(f"/{CONF} is missing: install kdump-utils first")
    _install_module(root)
    print(f"fastdump setup kdump-utils: dracut module {'/' + MODULE} installed ({sys.executable})")
    shim = _command(root)
    if shim:
        print(f"fastdump setup kdump-utils: {shim}")
    if args.apply:
        print(_apply(root, lines))
    else:
        print(f"Put these lines in /{CONF} (or run again with --apply), then `kdumpctl restart`:")
        for line in lines:
            print("    " + line)
    return 0


def conf_lines(collector):
    if any(c in collector for c in "\n#"):
        raise UsageError("--collector: one line of options, no '#'")
    return [f"core_collector fastdump {collector.strip()}", "dracut_args --add fastdump"]


def _scripts():
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    words = dict(tag=TAG, pythonpath=_quote(package_parent), python=_quote(os.path.abspath(sys.executable)))
    return PYTHON.format(**words).encode(), COMMAND.format(**words).encode()


def _ours(path):
    """Whether ``path`` is one of the scripts this setup writes (its second line is the tag)."""
    try:
        with open(path, "rb") as f:
            lines = f.read(4096).split(b"\n")
    except FileNotFoundError:
        return False
    except OSError as e:
        raise FastdumpError(f"cannot read {path}: {e.strerror}") from None
    return len(lines) > 1 and lines[1].startswith(TAG.encode() + b":")


def _install_module(root):
    """The shipped module plus ``python``; an existing 99fastdump that is not ours stays."""
    dest = os.path.join(root, MODULE)
    if os.path.lexists(dest) and not _ours(os.path.join(dest, "python")):
        raise FastdumpError(f"{dest} exists and is not fastdump's: left alone")
    safefile.make_dir(dest, reuse=True)
    for name in sorted(os.listdir(SHIPPED)):
        with open(os.path.join(SHIPPED, name), "rb") as f:
            safefile.write_file(os.path.join(dest, name), f.read(), force=True, executable=name.endswith(".sh"))
    safefile.write_file(os.path.join(dest, "python"), _scripts()[0], force=True, executable=True)
    _check_listing(os.path.join(dest, "python"))


def _check_listing(python):
    """Run what the module runs at build time now, so a fastdump that cannot run a collector
    call with that interpreter is reported here and not by `kdumpctl restart`."""
    r = subprocess.run([python, "-m", "fastdump.deploy.payload", "--list"], capture_output=True, text=True,
                       timeout=600)
    if r.returncode or not r.stdout:
        why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise FastdumpError(f"the dracut module cannot list what to pack: {why}")


def _command(root):
    """A /usr/sbin/fastdump shim unless `fastdump` is already on kdump-utils' path."""
    shim = os.path.join(root, SHIM)
    if _ours(shim):
        safefile.write_file(shim, _scripts()[1], force=True, executable=True)
        return f"shim /{SHIM} refreshed"
    found = [d for d in COLLECTOR_PATH if os.access(os.path.join(root, d, "fastdump"), os.X_OK)]
    if found:
        return None
    safefile.write_file(shim, _scripts()[1], executable=True)
    return f"no fastdump on /sbin:/bin:/usr/sbin:/usr/bin: shim /{SHIM} installed"


def _apply(root, lines):
    path = os.path.join(root, CONF)
    try:
        with open(path) as f:
            old = f.read().splitlines()
    except FileNotFoundError:
        raise FastdumpError(f"/{CONF} is missing: install kdump-utils first") from None
    base = _original(old)
    keys = {line.split()[0] for line in lines}
    theirs = [line.split(None, 1)[1] for line in base if line.split()[:1] == ["dracut_args"] and len(line.split()) > 1]
    lines = [f"dracut_args {theirs[-1]} --add fastdump" if line.startswith("dracut_args ") and theirs else line
             for line in lines]   # the sysadmin's dracut arguments stay, ours are added
    new = [WAS + line if line.split()[:1] and line.split()[0] in keys else line for line in base]
    new += [line + ADDED for line in lines]
    if not os.path.lexists(path + BACKUP):   # the first one is the sysadmin's own file
        safefile.write_file(path + BACKUP, "".join(line + "\n" for line in old).encode())
    _rewrite(path, new)
    return f"fastdump setup kdump-utils: /{CONF} updated (backup: /{CONF}{BACKUP}); now `kdumpctl restart`"


def _original(lines):
    """kdump.conf as it was before this setup: our lines out, the ones we replaced back."""
    return [line[len(WAS):] if line.startswith(WAS) else line for line in lines if not line.endswith(ADDED)]


def _rewrite(path, lines):
    """Replace kdump.conf keeping its mode (it is a distribution conffile, not ours)."""
    mode = os.stat(path).st_mode & 0o777
    safefile.write_file(path, "".join(line + "\n" for line in lines).encode(), force=True)
    os.chmod(path, mode)


def _undo(root):
    done = []
    module = os.path.join(root, MODULE)
    if os.path.lexists(module):
        if not _ours(os.path.join(module, "python")):
            raise FastdumpError(f"{module} is not fastdump's: left alone")
        names = set(os.listdir(SHIPPED)) | {"python"}
        for name in sorted(os.listdir(module)):
            if name not in names:
                raise FastdumpError(f"{module} holds {name}, which fastdump did not put there: left alone")
        shutil.rmtree(module)
        done.append(f"removed /{MODULE}")
    shim = os.path.join(root, SHIM)
    if _ours(shim):
        safefile.remove(shim)
        done.append(f"removed /{SHIM}")
    conf = os.path.join(root, CONF)
    if os.path.exists(conf):
        with open(conf) as f:
            old = f.read().splitlines()
        new = _original(old)
        if new != old:
            _rewrite(conf, new)
            done.append(f"/{CONF}: fastdump's lines removed, the replaced ones restored")
        if os.path.lexists(conf + BACKUP):
            safefile.remove(conf + BACKUP)
            done.append(f"removed /{CONF}{BACKUP}")
    return ["fastdump setup kdump-utils --undo: " + d for d in done] or \
        ["fastdump setup kdump-utils --undo: not set up; nothing to undo"]
