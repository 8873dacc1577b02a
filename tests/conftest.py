import os

import pytest

from fastdump.testing.generator import MiB, make_vmcore


@pytest.fixture(scope="session")
def vmcore(tmp_path_factory):
    """A 96 MiB-RAM synthetic vmcore: PC-like holes, partial page, kernel-text duplicate."""
    path = str(tmp_path_factory.mktemp("src") / "vmcore")
    make_vmcore(path, ram_size=96 * MiB, seed=7)
    return path


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
    "slow": "takes tens of seconds on its own (packaging, dropped-connection, bench, kill tests)",
}
E2E_FIXTURES = {"real", "real_dir"}           # the e2e harness's real vmcores, built on demand
E2E_MODULES = {"test_classification_real.py", "test_deploy_kdump_tools.py"}
SLOW = ("test_packaging.py::", "test_bench_smoke.py::", "test_ssh.py::test_dropped_connection",
        "test_deploy_dracut.py::",
        "test_faults.py::test_sigkill", "test_files.py::test_concurrent", "tests/fuzz/test_fuzz.py::",
        "test_source.py::test_many_pt_loads")


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


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


def pytest_report_header(config):
    import fastdump._core as core
    return f"fastdump core libraries: {core.library_versions()}; cpus: {os.cpu_count()}"
