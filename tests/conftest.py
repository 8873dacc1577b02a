import inspect
import os
import shutil

import pytest

from fastdump.testing.generator import MiB, make_vmcore


class _Generated:
    """Synthetic vmcores made once per spec and shared (``get(spec, write)``: ``write(path)``
    makes one and returns what the caller needs beside the path).  Only for tests that read them:
    the run fails at its end if one was changed (a test that alters its source makes its own).

    They are dense files of up to 1 GiB, so they do not all stay for the whole run: past
    ``budget`` bytes, the least recently asked for are deleted (and made again if asked for
    again), except those asked for by the module that runs now (its module-scoped fixtures hold
    their paths) and the pinned ones (held by session-scoped fixtures)."""

    def __init__(self, tmp_path_factory, budget=1536 * MiB):
        self.tmp = tmp_path_factory
        self.budget = budget
        self.made = {}          # key -> (path, extra, identity, module that last asked, pinned, disk bytes)
        self.module = None      # the module whose tests run now (set by _generated_module)

    def get(self, spec, write, *, pin=False):
        key = repr(sorted(spec.items()))
        if key not in self.made:
            path = str(self.tmp.mktemp("generated") / "vmcore")
            extra = write(path)
            self.made[key] = path, extra, _identity(path), self.module, pin, os.stat(path).st_blocks * 512
        path, extra, ident, _, pinned, used = self.made.pop(key)
        self.made[key] = path, extra, ident, self.module, pinned or pin, used    # most recent last
        self._evict()
        return path, extra

    def _evict(self):
        total = sum(entry[5] for entry in self.made.values())    # disk used: a sparse one counts little
        for key, (path, _, ident, module, pinned, used) in list(self.made.items()):
            if total <= self.budget:
                break
            if pinned or module == self.module:
                continue
            assert _identity(path) == ident, f"a test changed a shared generated vmcore: {path}"
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
            del self.made[key]
            total -= used

    def check_unchanged(self):
        changed = [path for path, _, ident, *_ in self.made.values() if _identity(path) != ident]
        assert not changed, f"tests changed shared generated vmcores: {changed}"


@pytest.fixture(scope="session")
def _generated(tmp_path_factory):
    made = _Generated(tmp_path_factory)
    yield made
    made.check_unchanged()


@pytest.fixture(scope="module", autouse=True)
def _generated_module(request, _generated):
    """Which module runs now: the shared vmcores it asked for are not deleted under it."""
    _generated.module = request.module.__name__


@pytest.fixture(scope="session")
def generated_vmcore(_generated):
    """``generated_vmcore(**spec)``: the path of a synthetic vmcore (make_vmcore's keywords),
    generated once per spec for the whole run; never to be changed by a test."""
    def get(**spec):
        return _generated.get(spec, lambda path: make_vmcore(path, **spec))[0]
    return get


@pytest.fixture(scope="session")
def generated_kernel(_generated):
    """``generated_kernel(ram_size, printk=None, sparse=False, **layout)``: (path, layout) of a
    synthetic vmcore of a kernel (``KernelLayout`` keywords: encoding, seed, ...; ``printk`` a
    kernel-log kind), generated once per spec for the whole run; never to be changed by a test."""
    from support import write_kernel_vmcore

    def get(ram_size, **spec):
        return _generated.get(dict(spec, ram_size=ram_size, kernel=True),
                              lambda path: write_kernel_vmcore(path, ram_size, **spec))
    return get


def _identity(path):
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode


@pytest.fixture(scope="session")
def rgw():
    """A single-node Ceph RGW on 127.0.0.1 (tests/rgw.py), started once for the whole run."""
    from rgw import Rgw
    r = Rgw()
    try:
        yield r.start()
    finally:
        r.stop()


@pytest.fixture(scope="session")
def vmcore(_generated):
    """A 96 MiB-RAM synthetic vmcore: PC-like holes, partial page, kernel-text duplicate."""
    spec = {"ram_size": 96 * MiB, "seed": 7}
    return _generated.get(spec, lambda path: make_vmcore(path, **spec), pin=True)[0]


@pytest.fixture(scope="session")
def source_pages(vmcore):
    from support import elf_pages
    return elf_pages(vmcore)


@pytest.fixture
def out(tmp_path):
    return str(tmp_path / "dump")


# Test tiers.  The README's test command (and CI) runs everything; a developer gets the whole
# logic in a few minutes with:  python3 -m pytest -m "not e2e and not slow" tests
MARKERS = {
    "e2e": "boots real Debian kernels in QEMU or fetches Debian packages (tests/e2e, real vmcores)",
    "slow": "takes tens of seconds on its own (packaging, dropped-connection, bench, kill tests, "
            "the whole Debian 12 guest)",
    "tools": "runs a program outside Python that .ci/setup-host installs (makedumpfile, crash, gdb, "
             "libkdumpfile's python3, sshd, gcc): everything support.need_tool finds",
}
E2E_FIXTURES = {"real", "real_dir"}           # the e2e harness's real vmcores, built on demand
E2E_MODULES = {"test_classification_real.py", "test_deploy_kdump_tools.py"}
SLOW = ("test_packaging.py::test_sdist", "test_bench_smoke.py::", "test_ssh.py::test_dropped_connection",
        "test_deploy_dracut.py::", "test_distro_kdump_tools.py::",
        "test_faults.py::test_sigkill", "test_files.py::test_concurrent", "tests/fuzz/test_fuzz.py::",
        "test_source.py::test_many_pt_loads", "test_s3.py::test_radosgw_", "test_s3.py::test_quota",
        "test_s3.py::test_dropped", "test_s3.py::test_interrupted")


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    # Temp files on the checkout's disk, not /tmp: Debian 13 mounts /tmp as a tmpfs of half the
    # RAM, which the suite's vmcores and throwaway Debian roots outgrow.  As pytest's temp root,
    # not as --basetemp: a given basetemp is emptied by every run (two runs in one checkout
    # would delete each other's files) and never cleaned up after a passing one.
    if not config.option.basetemp and "PYTEST_DEBUG_TEMPROOT" not in os.environ:
        root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "pytest")
        os.makedirs(root, exist_ok=True)
        os.environ["PYTEST_DEBUG_TEMPROOT"] = root


@pytest.hookimpl(tryfirst=True)     # before xdist's, which reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """Mark each test with its tier from where it lives and what it uses, so no test file
    has to remember to."""
    for item in items:
        nodeid = item.nodeid
        if "tests/e2e/" in nodeid or os.path.basename(str(item.fspath)) in E2E_MODULES \
                or E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker("e2e")
        if any(s in nodeid for s in SLOW):
            item.add_marker("slow")
        fixtures = getattr(item, "_fixtureinfo", None)
        funcs = [getattr(item, "function", None)] + [d.func for defs in (fixtures.name2fixturedefs.values()
                                                                        if fixtures else ()) for d in defs]
        if any(_runs_tools(f, set()) for f in funcs if f is not None):
            item.add_marker("tools")
        item.add_marker(pytest.mark.xdist_group(_worker_group(item)))


def _worker_group(item):
    """Which tests one pytest-xdist worker runs together (pyproject's addopts: ``-n 2 --dist
    loadgroup``).  Every real-kernel test is one group: they share the harness's caches of
    kernels, Debian package lists and guest runs (.cache/e2e), which are built on first use and
    must not be built twice at once; the rest is grouped by module, so that a module-scoped
    fixture (a built sdist, a dracut root, a radosgw) is made once."""
    if item.get_closest_marker("e2e"):
        return "e2e"
    return item.nodeid.split("::", 1)[0]


def _runs_tools(func, seen):
    """Whether ``func`` calls support.need_tool (every tool runner does), itself or through the
    functions of its own module and of support; names are resolved in its globals (or support's,
    when it imports from there), so an attribute that merely has a tool's name does not count."""
    import support

    func = inspect.unwrap(func)
    code = getattr(func, "__code__", None)
    if code is None or code in seen:
        return False
    seen.add(code)
    names, stack = set(), [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack += [k for k in c.co_consts if inspect.iscode(k)]
    for name in names:
        obj = func.__globals__.get(name)
        if obj is None and "support" in names:   # imported from support inside the function
            obj = getattr(support, name, None)
        if obj is support.need_tool:
            return True
        if inspect.isfunction(obj) and obj.__module__ in (func.__module__, "support") and _runs_tools(obj, seen):
            return True
    return False


def pytest_report_header(config):
    import fastdump._core as core
    return f"fastdump core libraries: {core.library_versions()}; cpus: {os.cpu_count()}"
