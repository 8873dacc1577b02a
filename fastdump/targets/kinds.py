"""Target strings to prepared outputs: files, directories, stdout, raw devices, ssh.

| target                      | what is written                                                   |
|-----------------------------|-------------------------------------------------------------------|
| ``PATH`` (a file)           | the dump, as ``PATH.incomplete`` until complete                  |
| ``DIR/`` (an existing dir)  | ``DIR/<host>-<YYYY-MM-DD-HH:MM:SS>/vmcore`` (``vmcore-incomplete`` |
|                             | while writing) and ``vmcore-dmesg.txt``, as kdump-utils does      |
| ``-``                       | the flattened stream on stdout (``-F``)                           |
| ``raw:DEV``                 | the flattened stream on a block device (``fastdump -R --from-device DEV`` reads it back) |
| ``ssh://user@host[:port]/DIR`` | the flattened stream through the system ssh client; rebuilt on  |
|                             | the far side by ``fastdump -R`` when it is there, else ``vmcore.flat`` |

Target strings never reach a local shell: ssh gets an argument vector, and the
one remote command line quotes every path.
"""

import os
import re
import shlex
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field

from . import devices
from .. import safefile
from ..errors import TargetError, UsageError
from ..formats.flat import FlatSink
from .sinks import DirectFileSink, FileSink, LimitedSink, NullSink

_SSH = re.compile(r"^ssh://(?P<user>[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])"
                  r"(?::(?P<port>\d+))?(?P<path>/[^\0\n]*)$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class Target:
    """One place a dump can go.  ``open(naming)`` returns a sink; ``finish`` runs after commit."""

    spec: str
    kind: str           # file, dir, stdout, raw, ssh
    path: str = ""
    ssh: dict = None
    dump_path: str = ""
    made: set = field(default_factory=set)   # directories this run created (a retry reuses them)
    size_limit: int = None   # makedumpfile -L: the dump never grows past it (the target's room)
    dry_run: bool = False    # --dry-run: nothing is created or written

    def describe(self):
        return self.spec

    # -- room ----------------------------------------------------------------
    def free_bytes(self):
        """Room for the dump: free space where it goes, or None when it cannot be known
        here, and never more than ``size_limit``."""
        free = None if self.dry_run else self._free_space()
        if self.size_limit is not None:
            return self.size_limit if free is None else min(free, self.size_limit)
        return free

    def _free_space(self):
        if self.kind in ("file", "dir"):
            probe = self.path if self.kind == "dir" else (os.path.dirname(os.path.abspath(self.path)) or ".")
            try:
                st = os.statvfs(probe)
            except OSError:
                return None
            return st.f_bavail * st.f_frsize
        if self.kind == "raw":
            try:
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    return os.lseek(fd, 0, os.SEEK_END)
                finally:
                    os.close(fd)
            except OSError:
                return None
        return None

    # -- opening -------------------------------------------------------------
    def open(self, *, host, when, flat, force, direct=False):
        """A sink for the dump.  ``flat`` asks for the flattened format (never for a file:
        ``DumpOptions.check`` refuses that)."""
        if self.dry_run:   # still refused as a real run would be: a dump file that exists
            if self.kind == "file":
                safefile.check_free(self.path, force=force)
            sink = NullSink(self.spec)
        else:
            sink = self._open(host=host, when=when, flat=flat, force=force, direct=direct)
        return LimitedSink(sink, self.size_limit) if self.size_limit is not None else sink

    def _open(self, *, host, when, flat, force, direct):
        if self.kind == "stdout":
            import sys
            return FlatSink(sys.stdout.buffer, name="<stdout>")
        if self.kind == "raw":
            return self._open_raw(force)
        if self.kind == "ssh":
            return self._open_ssh(host, when)
        if self.kind == "dir":
            sub = self._subdir(host, when, force)
            self.dump_path = os.path.join(sub, "vmcore")
            sink_cls = DirectFileSink if direct else FileSink
            return sink_cls(self.dump_path, force=force, temp_path=os.path.join(sub, "vmcore-incomplete"))
        self.dump_path = self.path
        return (DirectFileSink if direct else FileSink)(self.path, force=force)

    def _subdir(self, host, when, force):
        """``<host>-<date>`` in a directory target, made once per run."""
        if not os.path.isdir(self.path):
            raise TargetError(f"target directory {self.path} does not exist (not mounted?)")
        sub = os.path.join(self.path, f"{_SAFE_NAME.sub('_', host)}-{time.strftime('%Y-%m-%d-%H:%M:%S', when)}")
        self.made.add(safefile.make_dir(sub, reuse=force or sub in self.made))
        return sub

    def side_path(self, name, *, host, when, force):
        """Where a file that goes with the dump (``dmesg.txt``: the kernel log) is
        written: ``vmcore-NAME`` beside the dump; None for streams and dry runs."""
        if self.dry_run:
            return None
        if self.kind == "dir":
            try:
                return os.path.join(self._subdir(host, when, force), f"vmcore-{name}")
            except TargetError:
                return None
        if self.kind == "file":
            return f"{self.path}-{name}"
        return None

    def _open_raw(self, force):
        fd = devices.open_raw(self.path, force=force)
        return FlatSink(os.fdopen(fd, "wb", buffering=1 << 20), name=self.path, fsync=True)

    def _open_ssh(self, host, when):
        s = self.ssh
        remote_dir = f"{s['path'].rstrip('/') or '/'}/{_SAFE_NAME.sub('_', host)}-{time.strftime('%Y-%m-%d-%H:%M:%S', when)}"
        d = shlex.quote(remote_dir)
        # the far side keeps the same rule: a fresh private directory, nothing replaced (set -C)
        script = (f"umask 077 && set -C && mkdir -p {shlex.quote(s['path'])} && mkdir {d} && "
                  f"if command -v fastdump >/dev/null 2>&1; then fastdump -R {d}/vmcore; "
                  f"else cat > {d}/vmcore.flat && printf '%s\\n' "
                  f"{shlex.quote('flattened dump: rebuild with  fastdump -R vmcore < vmcore.flat  (or makedumpfile -R)')}"
                  f" > {d}/README; fi")
        argv = ssh_argv(s, script)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
        except OSError as e:
            raise TargetError(f"cannot run ssh: {e.strerror}") from None
        self.dump_path = f"{s['dest']}:{remote_dir}"
        return SshSink(proc, name=self.spec)


class SshSink(FlatSink):
    """A flattened stream into an ssh process; complete only if ssh exits 0."""

    def __init__(self, proc, *, name):
        self.proc = proc
        super().__init__(proc.stdin, name=name)

    def _write(self, data):
        if self.proc.poll() is not None:
            raise TargetError(f"{self.name}: ssh ended early: {self._ssh_error()}")
        try:
            super()._write(data)
        except TargetError:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            raise TargetError(f"{self.name}: ssh ended early: {self._ssh_error()}") from None

    def _ssh_error(self):
        err = self.proc.stderr.read().decode(errors="replace").strip().splitlines() if self.proc.stderr else []
        return err[-1] if err else f"exit status {self.proc.returncode}"

    def commit(self):
        super().commit()
        self.proc.stdin.close()
        rc = self.proc.wait()
        if rc != 0:
            raise TargetError(f"{self.name}: ssh failed: {self._ssh_error()}")
        return self.name

    def abandon(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self.name


def ssh_argv(s, remote_command):
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4"]
    if s.get("port"):
        argv += ["-p", str(s["port"])]
    if s.get("key"):
        argv += ["-i", s["key"], "-o", "IdentitiesOnly=yes"]
    if s.get("known_hosts"):
        argv += ["-o", f"UserKnownHostsFile={s['known_hosts']}"]
    argv += ["--", s["dest"], remote_command]
    return argv


def check_key(path):
    """ssh refuses a private key others can read; so do we, with a clearer message."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise UsageError(f"ssh key {path}: {e.strerror}") from None
    if st.st_mode & 0o077:
        raise UsageError(f"ssh key {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); chmod 600 it")


def parse_target(spec, *, ssh_key=None, known_hosts=None):
    """Turn a target string into a Target (no side effects)."""
    if spec == "-":
        return Target(spec, "stdout")
    if spec.startswith("raw:"):
        return Target(spec, "raw", path=spec[4:])
    if spec.startswith("ssh://"):
        m = _SSH.match(spec)
        if not m:
            raise UsageError(f"bad ssh target {spec!r}: use ssh://user@host[:port]/directory")
        if ssh_key:
            check_key(ssh_key)
        user = (m.group("user") or "")
        host = m.group("host").strip("[]")
        return Target(spec, "ssh", ssh={"dest": f"{user}{host}", "port": m.group("port"), "path": m.group("path"),
                                        "key": ssh_key, "known_hosts": known_hosts})
    if "\0" in spec or not spec:
        raise UsageError("empty or invalid target path")
    if spec.endswith("/") or os.path.isdir(spec):
        return Target(spec, "dir", path=spec)   # a missing one fails when opened (next target then)
    try:
        if stat.S_ISBLK(os.stat(spec).st_mode):
            raise UsageError(f"{spec} is a block device: name it raw:{spec} to write a flattened dump over it")
    except OSError:
        pass
    return Target(spec, "file", path=spec)


def host_name(utsname):
    node = utsname[1] if utsname and len(utsname) > 1 else ""
    if node and node != "(none)":
        return node
    try:
        return socket.gethostname() or "localhost"
    except OSError:
        return "localhost"
