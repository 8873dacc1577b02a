"""Debian's crash (with the kernel's debug vmlinux) as a reader of dumps: the same commands on
a dump and on the raw vmcore must print the same, apart from the lines naming the files."""

import os
import shutil
import subprocess

from .paths import StepError

CRASH_COMMANDS = ("sys", "bt", "log", "kmem -i")


def crash(vmlinux, dumps, tmpdir):
    """(exit status, output) of Debian's crash running CRASH_COMMANDS on ``dumps``."""
    exe = shutil.which("crash")
    if exe is None:
        raise StepError("crash is not installed (bash .ci/setup-host installs Debian's)")
    cmds = os.path.join(str(tmpdir), "crash.cmds")
    with open(cmds, "w") as f:
        f.write("\n".join(CRASH_COMMANDS + ("quit",)) + "\n")
    r = subprocess.run([exe, "-i", cmds, vmlinux, *dumps], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    return r.returncode, r.stdout


def without_dump_names(out, dumps):
    """crash's output minus the header lines that name the dump files (DUMPFILES lists
    the parts of a split set one per line)."""
    return [line for line in out.splitlines()
            if not line.lstrip().startswith(("DUMPFILE", "DUMPFILES")) and line.split()[:1] not in [[d] for d in dumps]]
