"""Locations and a subprocess helper shared by the harness."""

import contextlib
import fcntl
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CACHE = os.environ.get("FASTDUMP_E2E_CACHE") or os.path.join(REPO, ".cache", "e2e")


class StepError(RuntimeError):
    """A harness step failed; the message says which and why (``phase``: the guest phase
    that was awaited, where there was one)."""

    def __init__(self, message, phase=None):
        super().__init__(message)
        self.phase = phase


def run(cmd, timeout, what=None, cwd=None, env=None, check=True):
    """Run ``cmd`` with a time limit; raise StepError with its output tail on failure."""
    what = what or " ".join(cmd[:3])
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout, cwd=cwd, env=env, errors="replace")
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"")
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        raise StepError("%s: timed out after %d s\n%s" % (what, timeout, out[-3000:]))
    except FileNotFoundError as e:
        raise StepError("%s: %s (run .ci/setup-e2e)" % (what, e))
    if check and r.returncode != 0:
        raise StepError("%s: exit status %d\n%s" % (what, r.returncode, r.stdout[-3000:]))
    return r


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive lock on the file ``path`` while the block runs: the test workers
    (pytest-xdist) and a bench run share the caches they fill on first use."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
