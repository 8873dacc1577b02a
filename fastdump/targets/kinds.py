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
| ``s3://BUCKET/PREFIX/``     | ``PREFIX/<host>-<date>/vmcore`` by multipart upload (``s3.py``),  |
|                             | ``vmcore-dmesg.txt`` and ``manifest.json`` beside it              |

Target strings never reach a local shell: ssh gets an argument vector, and the
one remote command line quotes every path.
"""

import os
import re
import shlex
import stat
import time

from . import devices
from .. import safefile
from ..errors import FastdumpError, TargetError, UsageError
from ..formats.flat import FlatSink
from .sinks import DirectFileSink, FileSink, LimitedSink, NullSink

_SSH = re.compile(r"^ssh://(?P<user>[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])"
                  r"(?::(?P<port>\d+))?(?P<path>/[^\0\n]*)$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class Target:
    """One place a dump can go: ``open(...)`` returns a sink; one subclass per kind."""

    #: the sink writes the flattened stream whatever -F says
    stream = False
    #: makedumpfile -L: the dump never grows past it (it is the target's room)
    size_limit = None
    #: --dry-run: nothing is created or written
    dry_run = False

    def __init__(self, spec, path=""):
        self.spec, self.path = spec, path
        self.dump_path = ""      # where the dump ended up (for messages), known once opened

    def __repr__(self):
        return f"{type(self).__name__}({self.spec!r})"

    def describe(self):
        return self.spec

    def free_bytes(self):
        """Room for the dump: free space where it goes (None when it cannot be known
        here), never more than ``size_limit``."""
        free = None if self.dry_run else self._free_space()
        if self.size_limit is not None:
            return self.size_limit if free is None else min(free, self.size_limit)
        return free

    def _free_space(self):
        return None

    def local_dir(self):
        """A local directory on the target's file system (for spill files), or None."""
        return None

    def side_path(self, name, *, host, when, force):
        """Where a file that goes with the dump (``dmesg.txt``: the kernel log) is
        written; None for streams and dry runs."""
        return None if self.dry_run else self._side_path(name, host=host, when=when, force=force)

    def _side_path(self, name, *, host, when, force):
        return None

    def dmesg_path(self):
        """Where the kernel log goes after a complete dump, as kdump-utils leaves it; None: nowhere."""
        return None

    def open(self, *, host, when, flat, force, direct=False):
        """A sink for the dump.  ``flat`` asks for the flattened format.  A dry run gets a sink
        that writes nothing (after the checks a real run makes first); ``-L`` bounds any sink."""
        if self.dry_run:
            self._check_free(force)
            sink = NullSink(self.spec)
        else:
            sink = self._open(host=host, when=when, flat=flat, force=force, direct=direct)
        return LimitedSink(sink, self.size_limit) if self.size_limit is not None else sink

    def check_free(self, force):
        """Refuse now what opening the target would refuse before writing (an existing
        name without ``force``, a missing directory, a device that holds data)."""
        self._check_free(force)

    def _check_free(self, force):
        """What a real run refuses before it writes anything (for a dry run)."""

    def _open(self, *, host, when, flat, force, direct):
        raise NotImplementedError

    def after_dump(self, src, stats, warn, *, dmesg=True, erased=None):
        """Once the dump is complete: whatever else this kind of target keeps beside it
        (``erased``: the run's --config EraseList, for what it reads from the kernel)."""


def _free_bytes_at(directory):
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class FileTarget(Target):
    """``PATH``: the dump itself, as ``PATH.incomplete`` until complete."""

    def local_dir(self):
        return os.path.dirname(os.path.abspath(self.path))

    def _check_free(self, force):
        safefile.check_free(self.path, force=force)
        parent = self.local_dir() or "."
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
            why = "Permission denied" if os.path.isdir(parent) else "No such file or directory"
            raise TargetError(f"cannot create {self.path}{safefile.INCOMPLETE_SUFFIX}: {why}")

    def _free_space(self):
        return _free_bytes_at(self.local_dir() or ".")

    def _side_path(self, name, *, host, when, force):
        return f"{self.path}-{name}"

    def _open(self, *, host, when, flat, force, direct=False):
        if flat:
            raise UsageError("-F writes a stream: give '-' (stdout), raw:DEV or ssh://... as the target")
        self.dump_path = self.path
        return (DirectFileSink if direct else FileSink)(self.path, force=force)


class DirTarget(Target):
    """``DIR/``: ``DIR/<host>-<date>/vmcore`` and ``vmcore-dmesg.txt``, as kdump-utils does."""

    def __init__(self, spec, path=""):
        super().__init__(spec, path)
        self.made = set()     # directories this run created (a retry reuses them)

    def local_dir(self):
        return self.path

    def _free_space(self):
        return _free_bytes_at(self.path)

    def _subdir(self, host, when, force):
        """``<host>-<date>`` in a directory target, made once per run."""
        if not os.path.isdir(self.path):
            raise TargetError(f"target directory {self.path} does not exist (not mounted?)")
        sub = os.path.join(self.path, _stamped(host, when))
        self.made.add(safefile.make_dir(sub, reuse=force or sub in self.made))
        return sub

    def _side_path(self, name, *, host, when, force):
        try:
            return os.path.join(self._subdir(host, when, force), f"vmcore-{name}")
        except TargetError:
            return None

    def dmesg_path(self):
        return os.path.join(os.path.dirname(self.dump_path), "vmcore-dmesg.txt") if self.dump_path else None

    def _open(self, *, host, when, flat, force, direct=False):
        sub = self._subdir(host, when, force)
        self.dump_path = os.path.join(sub, "vmcore")
        sink_cls = DirectFileSink if direct else FileSink
        return sink_cls(self.dump_path, force=force, temp_path=os.path.join(sub, "vmcore-incomplete"))


class StdoutTarget(Target):
    """``-``: the flattened stream on stdout."""

    stream = True

    def _open(self, *, host, when, flat, force, direct=False):
        import sys
        return FlatSink(sys.stdout.buffer, name="<stdout>")


class RawTarget(Target):
    """``raw:DEV``: the flattened stream on a block device, checked before it is written."""

    stream = True

    def _free_space(self):
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                return os.lseek(fd, 0, os.SEEK_END)
            finally:
                os.close(fd)
        except OSError:
            return None

    def _check_free(self, force):
        os.close(devices.open_raw(self.path, force=force))     # the checks, nothing written

    def _open(self, *, host, when, flat, force, direct=False):
        fd = devices.open_raw(self.path, force=force)
        return FlatSink(os.fdopen(fd, "wb", buffering=1 << 20), name=self.path, fsync=True)


class SshTarget(Target):
    """``ssh://user@host[:port]/DIR``: the flattened stream through the system ssh client."""

    stream = True

    def __init__(self, spec, ssh):
        super().__init__(spec)
        self.ssh = ssh

    def _open(self, *, host, when, flat, force, direct=False):
        s = self.ssh
        remote_dir = f"{s['path'].rstrip('/') or '/'}/{_stamped(host, when)}"
        d = shlex.quote(remote_dir)
        # the far side keeps the same rule: a fresh private directory, nothing replaced (set -C).
        # Without fastdump there, cat cannot tell a whole stream from one cut short (it ends at
        # EOF either way): the stream lands as vmcore.flat.incomplete, named vmcore.flat by a
        # second ssh call once this side has sent all of it (as kdump-utils renames its
        # vmcore-incomplete); fastdump -R names its own output when the end record came.
        script = (f"umask 077 && set -C && mkdir -p {shlex.quote(s['path'])} && mkdir {d} && "
                  f"if command -v fastdump >/dev/null 2>&1; then fastdump -R {d}/vmcore; "
                  f"else cat > {d}/vmcore.flat.incomplete; fi")
        finish = (f"umask 077 && set -C && if [ -e {d}/vmcore.flat.incomplete ]; then "
                  f"[ ! -e {d}/vmcore.flat ] && mv {d}/vmcore.flat.incomplete {d}/vmcore.flat && printf '%s\\n' "
                  f"{shlex.quote('flattened dump: rebuild with  fastdump -R vmcore < vmcore.flat  (or makedumpfile -R)')}"
                  f" > {d}/README; fi")
        argv = ssh_argv(s, script)
        try:
            import subprocess           # here: only ssh needs it, and it costs start-up
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
        except OSError as e:
            raise TargetError(f"cannot run ssh: {e.strerror}") from None
        self.dump_path = f"{s['dest']}:{remote_dir}"
        return SshSink(proc, name=self.spec, finish=ssh_argv(s, finish))


class S3Target(Target):
    """``s3://BUCKET/PREFIX/``: ``PREFIX/<host>-<date>/vmcore`` uploaded in parts, then
    ``vmcore-dmesg.txt`` and ``manifest.json`` beside it (``s3.py``, ``s3client.py``)."""

    def __init__(self, spec, *, bucket, prefix, credentials_file=None):
        super().__init__(spec)
        self.bucket, self.prefix, self.credentials_file = bucket, prefix, credentials_file
        self.client = self.sink = None

    def _open(self, *, host, when, flat, force, direct=False):
        from .s3 import S3Sink, limits_from_env
        from .s3client import Credentials, S3Client
        if flat:
            raise UsageError("-F writes a stream: an s3:// target stores the dump itself")
        self.client = S3Client(Credentials.load(file=self.credentials_file))
        self.client.check_bucket(self.bucket)   # a missing bucket fails here, before any upload
        self.dir_key = f"{self.prefix}{_stamped(host, when)}/"
        key = self.dir_key + "vmcore"
        if not force and any(k == key for k, _ in self.client.list_objects(self.bucket, key)):
            raise TargetError(f"s3://{self.bucket}/{key} exists (use -f to replace it)")
        self.dump_path = f"s3://{self.bucket}/{key}"
        self.sink = S3Sink(self.client, self.bucket, key, **limits_from_env(os.environ))
        return self.sink

    def after_dump(self, src, stats, warn, *, dmesg=True, erased=None):
        """The kernel log (unless --no-dmesg) and the manifest: a dump already stored
        never fails over them."""
        from .s3 import manifest
        log = None
        try:
            from ..kernel.dmesg import extract_dmesg
            log = extract_dmesg(src, erased=erased) if dmesg else None
        except (ImportError, FastdumpError) as e:
            warn(f"no vmcore-dmesg.txt: {e}")
        try:
            if log is not None:
                self.client.put_object(self.bucket, self.dir_key + "vmcore-dmesg.txt", log.encode(),
                                       "text/plain; charset=utf-8")
            self.client.put_object(self.bucket, self.dir_key + "manifest.json",
                                   manifest(src, stats, log, self.sink, erased), "application/json")
        except FastdumpError as e:
            warn(f"{self.spec}: the dump is stored, but not its log or manifest: {e}")


def _stamped(host, when):
    """``<host>-<YYYY-MM-DD-HH:MM:SS>``: one directory per crash, as kdump-utils names them."""
    return f"{_SAFE_NAME.sub('_', host)}-{time.strftime('%Y-%m-%d-%H:%M:%S', when)}"


class SshSink(FlatSink):
    """A flattened stream into an ssh process; complete only if ssh exits 0."""

    def __init__(self, proc, *, name, finish=None):
        self.proc, self.finish = proc, finish      # finish: the ssh call that names a whole stream
        super().__init__(proc.stdin, name=name)

    def _write(self, data):
        if self.proc.poll() is not None:
            raise TargetError(f"{self.name}: ssh ended early: {self._ssh_error()}")
        try:
            super()._write(data)
        except TargetError:
            import subprocess
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
        if self.finish:
            import subprocess
            try:
                done = subprocess.run(self.finish, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, timeout=SSH_FINISH_SECONDS)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise TargetError(f"{self.name}: the stream arrived, but ssh could not name it "
                                  f"vmcore.flat: {e}") from None
            if done.returncode != 0:
                err = done.stderr.decode(errors="replace").strip().splitlines()
                raise TargetError(f"{self.name}: the stream arrived, but ssh could not name it vmcore.flat: "
                                  f"{err[-1] if err else f'exit status {done.returncode}'}")
        return self.name

    def abandon(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        import subprocess
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self.name


#: a host that accepts the connection and then says nothing (or never answers at all) must
#: not hold the run: the next --target is tried after this long (ssh's ConnectTimeout also
#: bounds the wait for the server's banner)
SSH_CONNECT_SECONDS = 30
SSH_FINISH_SECONDS = 120


def ssh_argv(s, remote_command):
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4", "-o", f"ConnectTimeout={SSH_CONNECT_SECONDS}"]
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
    safefile.require_private(path, "ssh key")


def parse_target(spec, *, ssh_key=None, known_hosts=None, s3_credentials=None):
    """Turn a target string into a Target (no side effects)."""
    if spec.startswith("s3://"):
        from .s3client import check_private, parse_url
        bucket, prefix = parse_url(spec)
        if s3_credentials:
            check_private(s3_credentials)     # before anything runs, as for an ssh key
        return S3Target(spec, bucket=bucket, prefix=prefix + "/" if prefix and not prefix.endswith("/") else prefix,
                        credentials_file=s3_credentials)
    if spec == "-":
        return StdoutTarget(spec)
    if spec.startswith("raw:"):
        return RawTarget(spec, path=spec[4:])
    if spec.startswith("ssh://"):
        m = _SSH.match(spec)
        if not m:
            raise UsageError(f"bad ssh target {spec!r}: use ssh://user@host[:port]/directory")
        if ssh_key:
            check_key(ssh_key)
        user = (m.group("user") or "")
        host = m.group("host").strip("[]")
        return SshTarget(spec, ssh={"dest": f"{user}{host}", "port": m.group("port"), "path": m.group("path"),
                                        "key": ssh_key, "known_hosts": known_hosts})
    if "\0" in spec or not spec:
        raise UsageError("empty or invalid target path")
    if spec.endswith("/") or os.path.isdir(spec):
        return DirTarget(spec, path=spec)   # a missing one fails when opened (next target then)
    try:
        if stat.S_ISBLK(os.stat(spec).st_mode):
            raise UsageError(f"{spec} is a block device: name it raw:{spec} to write a flattened dump over it")
    except OSError:
        pass
    return FileTarget(spec, path=spec)


def host_name(utsname, unerased=None):
    """The crashed host's name for a target's directory: its nodename; "host" when --config
    erased any of it (``unerased``: the utsname read without the erase), so the name neither
    shows the fill nor gives the secret away; else this machine's name."""
    node = utsname[1] if utsname and len(utsname) > 1 else ""
    if unerased is not None and len(unerased) > 1 and unerased[1] != node:
        return "host"
    if node and node != "(none)":
        return node
    return os.uname().nodename or "localhost"      # what gethostname() returns on Linux
