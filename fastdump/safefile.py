"""The one way fastdump creates files and directories on the local machine.

Dumps, parts, rebuilt streams, kernel logs, statistics, temporaries and the demo
all come through here, so one rule holds for every name fastdump writes:

* a symlink planted at the name is never followed (it is replaced, not written through);
* nothing that exists is replaced without ``force`` (-f), and with it only the
  name is removed, never the file behind it opened;
* a file another fastdump run is still writing is never taken over, even with
  ``force`` (each file is held under an exclusive ``flock`` while it is written);
* files are created 0600 and directories 0700, whatever the umask;
* a small file appears under its final name only when it is completely written.
"""

import contextlib
import errno
import fcntl
import os
import stat
import time

from .errors import TargetError, UsageError

INCOMPLETE_SUFFIX = ".incomplete"


def exists_error(path):
    return TargetError(f"{path} exists; use -f/--force to overwrite it")


def create(path, *, force=False):
    """A new private file at ``path``, open for writing and locked; returns the fd."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for attempt in range(2):
        try:
            fd = os.open(path, flags, 0o600)
            break
        except FileExistsError:
            if not force or attempt:
                raise exists_error(path) from None
            remove(path)
        except OSError as e:
            raise TargetError(f"cannot create {path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Another run with -f could have removed the name between open and flock.
        if os.fstat(fd).st_ino != os.lstat(path).st_ino:
            raise OSError(errno.EEXIST, "replaced while being created")
        os.fchmod(fd, 0o600)
    except OSError as e:
        os.close(fd)
        raise TargetError(f"cannot create {path}: {e.strerror or e}") from None
    return fd


def remove(path):
    """Remove an existing non-directory at ``path`` unless another run is writing it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    _replaceable(path, st)
    if stat.S_ISREG(st.st_mode) and _in_use(path):
        raise TargetError(f"{path} is being written by another fastdump run")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise TargetError(f"cannot remove {path}: {e.strerror}") from None


def _replaceable(path, st):
    """Only files (and symlinks, which are replaced, not followed) give way to -f."""
    if stat.S_ISDIR(st.st_mode):
        raise TargetError(f"{path} is a directory")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise TargetError(f"{path} is not a regular file; fastdump replaces only files")


def _in_use(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _identity(path, *, follow):
    """(st_dev, st_ino) of what is at ``path`` or open as the fd ``path`` (a block device
    also by its device number), or None when nothing is there."""
    try:
        st = os.fstat(path) if isinstance(path, int) else os.stat(path) if follow else os.lstat(path)
    except OSError:
        return None
    ids = {(st.st_dev, st.st_ino)}
    if stat.S_ISBLK(st.st_mode):
        ids.add(("blk", st.st_rdev))
    return ids


def _name(path):
    """A written name as the file system resolves its directory (``./a`` and ``a`` are one)."""
    head, tail = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.realpath(head), tail)


def refuse_clashes(outputs, inputs=()):
    """Refuse, ``-f`` or not, an output name that is one of the inputs (or whose
    ``.incomplete`` name is), and two outputs that are one name: a run must never
    replace what it reads, nor write one part over another.  ``outputs`` are names
    written (a file target, a part, the statistics file, a raw device), ``inputs``
    the files read (paths, or fds such as standard input's); a name that does not exist
    yet clashes only by name."""
    seen = {}
    for out in outputs:
        if out is None:
            continue
        name = _name(out)
        if name in seen:
            raise UsageError(f"{out} is named twice as an output ({seen[name]})")
        seen[name] = out
    wanted = [("standard input" if isinstance(src, int) else f"the input {src}", _identity(src, follow=True),
               None if isinstance(src, int) else _name(src)) for src in inputs if src is not None]
    for out in seen.values():
        for candidate in (out, out + INCOMPLETE_SUFFIX):
            ids = _identity(candidate, follow=False) or set()
            for src, src_ids, src_name in wanted:
                if _name(candidate) == src_name or (src_ids and ids & src_ids):
                    raise UsageError(f"{candidate} is {src}: a dump cannot be written over "
                                     f"what it is read from, even with -f")


def check_free(path, *, force=False):
    """Refuse early (before any work) a final name that exists, unless forced."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise TargetError(f"{path}: {e.strerror}") from None
    if not force:
        raise exists_error(path)
    _replaceable(path, st)


def publish(temp, path, *, force=False):
    """Move the finished ``temp`` to ``path`` (never replacing one without ``force``)
    and make the new name durable."""
    try:
        if force:
            os.rename(temp, path)
        else:
            try:
                os.link(temp, path)       # atomic: fails if the name appeared meanwhile
            except FileExistsError:
                raise exists_error(path) from None
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                    raise
                check_free(path)          # a file system without hard links (vfat)
                os.rename(temp, path)
            else:
                os.unlink(temp)
    except OSError as e:
        raise TargetError(f"cannot move {temp} to {path}: {e.strerror}") from None
    fsync_dir(os.path.dirname(os.path.abspath(path)))
    return path


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file(path, data, *, force=False, executable=False):
    """``data`` (bytes) into ``path``, written as ``path.incomplete`` and then published;
    ``executable`` makes it 0700 (a script only root runs) instead of 0600."""
    check_free(path, force=force)
    temp = path + INCOMPLETE_SUFFIX
    fd = create(temp, force=force)
    try:
        if executable:
            os.fchmod(fd, 0o700)
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
        os.fsync(fd)
    except OSError as e:
        raise TargetError(f"{temp}: write failed: {e.strerror}") from None
    finally:
        os.close(fd)
    return publish(temp, path, force=force)


def make_dir(path, *, reuse=False):
    """A private directory at ``path``.  An existing one is used only when ``reuse``
    allows it (-f, or this run made it), and only if it is a real directory."""
    created = True
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not reuse:
            raise TargetError(f"{path} exists; use -f/--force to write into it") from None
        created = False
    except OSError as e:
        raise TargetError(f"cannot create {path}: {e.strerror}") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise TargetError(f"{path} is not a directory fastdump can use: {e.strerror}") from None
    try:
        if created:
            os.fchmod(fd, 0o700)    # whatever the umask said
    finally:
        os.close(fd)
    if created:
        fsync_dir(os.path.dirname(os.path.abspath(path)))   # the new name survives a reboot
    return path


TEMPDIR_PREFIX = ".fastdump-tmp-"
STALE_AFTER = 60     # seconds: a temporary directory younger than this may still be being locked


@contextlib.contextmanager
def private_tempdir(beside):
    """A fresh 0700 directory for temporaries, in ``beside``; removed afterwards.
    It is locked while in use, so one that a killed run (SIGKILL) left behind is
    found unlocked and removed by the next run that makes one there."""
    import shutil                   # here: only convert needs them, and they cost start-up
    import tempfile
    _sweep_tempdirs(beside)
    try:
        d = tempfile.mkdtemp(prefix=TEMPDIR_PREFIX, dir=beside)
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise TargetError(f"cannot create a temporary directory in {beside}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
        os.close(fd)


def _sweep_tempdirs(beside):
    import shutil
    try:
        names = [n for n in os.listdir(beside) if n.startswith(TEMPDIR_PREFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(beside, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid() or st.st_mtime > time.time() - STALE_AFTER:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # held: a live run's directory
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass
        finally:
            os.close(fd)


def require_private(path, what):
    """A secret file (an ssh key, S3 credentials) that others may read is refused, as ssh
    refuses such a key, with a one-line UsageError naming ``what`` it is."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise UsageError(f"{what} {path}: {e.strerror}") from None
    if st.st_mode & 0o077:
        raise UsageError(f"{what} {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); chmod 600 it")
