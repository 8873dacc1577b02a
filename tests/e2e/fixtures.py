"""Real-kernel fixtures for tests outside tests/e2e: built on demand, never skipped.

``fixture_dir(key)`` returns .cache/e2e/<key>/ (FASTDUMP_E2E_CACHE overrides)
once it holds a complete run (vmcore.raw, manifest.json, first/workload.json
with the current workload's classes).  When the cache lacks it, the harness
boots the kernel (tests/e2e/run.py, ~3-4 min per kernel under TCG) once per
session; a harness failure is a test failure with the reason.

Kernels: FASTDUMP_E2E_KERNELS (comma list or "all"; default 6.1,6.12), the
same variable the e2e module reads, so one command covers all four:

    FASTDUMP_E2E_KERNELS=all python -m pytest tests/e2e tests/test_classification_real.py
"""

import json
import os

from . import kernels
from .paths import CACHE, StepError

ENV_KEYS = os.environ.get("FASTDUMP_E2E_KERNELS", ",".join(kernels.DEFAULT_KERNELS))
KEYS = list(kernels.KERNELS) if ENV_KEYS == "all" else [k for k in ENV_KEYS.split(",") if k]
LEVELS = [int(x) for x in os.environ.get("FASTDUMP_E2E_LEVELS", "1,31").split(",")]
FASTDUMP_ARGS = os.environ.get("FASTDUMP_E2E_FASTDUMP_ARGS", "-z")
# classes the current guest/workload.py writes; an older fixture without them is rebuilt
REQUIRED_CLASSES = ("user", "shmem", "tmpfs", "cache", "free")

_built = {}


def complete(key):
    """The manifest of a usable fixture for ``key``, or None."""
    d = os.path.join(CACHE, key)
    try:
        with open(os.path.join(d, "manifest.json")) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return None
    if not os.path.exists(os.path.join(d, "vmcore.raw")):
        return None
    if m.get("runs", {}).get("vmcore.raw", {}).get("rc") != 0:
        return None
    counts = m.get("workload", {}).get("counts", {})
    if any(c not in counts for c in REQUIRED_CLASSES):
        return None
    if "pcp_refill_pages" not in m.get("workload", {}):             # lists refilled at the crash
        return None
    if not os.path.exists(os.path.join(d, "first", "nodename")):   # the planted secret (guest/first.sh)
        return None
    return m


def record(key, result):
    """Remember a run made in this session (by the e2e module), or its failure."""
    _built[key] = result


def fixture_dir(key):
    """.cache/e2e/<key>/ with a complete fixture; boots the kernel if needed.
    Raises RuntimeError (with the harness's reason) when that fails."""
    if key not in kernels.KERNELS:
        raise RuntimeError("unknown kernel key %r (known: %s)" % (key, ", ".join(kernels.KERNELS)))
    prev = _built.get(key)
    if isinstance(prev, Exception):
        raise RuntimeError("the %s e2e run failed earlier in this session: %s" % (key, str(prev)[:2000]))
    if complete(key) is None:
        from .run import run_kernel
        try:
            m = run_kernel(key, "auto", LEVELS, fd_compress=FASTDUMP_ARGS)
        except (StepError, kernels.FetchError) as e:
            _built[key] = e
            raise RuntimeError("building the %s fixture (python -m tests.e2e.run --kernels %s) failed: %s"
                               % (key, key, str(e)[:3000])) from None
        _built[key] = m
        if complete(key) is None:
            raise RuntimeError("the %s run finished but left no complete fixture in %s"
                               % (key, os.path.join(CACHE, key)))
    return os.path.join(CACHE, key)
