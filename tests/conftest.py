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


def pytest_report_header(config):
    import fastdump._core as core
    return f"fastdump core libraries: {core.library_versions()}; cpus: {os.cpu_count()}"
