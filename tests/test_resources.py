"""Every exit path releases the pipeline's threads, buffers and files."""

import os
import subprocess
import threading

import pytest

import fastdump
from fastdump.errors import FastdumpError


def _fds():
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_no_threads_or_files_left_after_success_and_failure(vmcore, tmp_path, small_fs):
    fastdump.dump(vmcore, str(tmp_path / "warm"), level=1, compress="zstd", threads=4)   # imports, caches
    threads, fds = threading.active_count(), _fds()
    fastdump.dump(vmcore, str(tmp_path / "ok"), level=1, compress="zstd", threads=4)
    with pytest.raises(FastdumpError):   # no room on the target
        fastdump.dump(vmcore, str(small_fs / "full"), level=0, compress="none", threads=4)
    with pytest.raises(FastdumpError):   # bad source
        fastdump.dump(str(tmp_path / "missing"), str(tmp_path / "x"), level=1)
    with pytest.raises(FastdumpError):   # existing target
        fastdump.dump(vmcore, str(tmp_path / "ok"), level=1)
    assert threading.active_count() == threads
    assert _fds() == fds
