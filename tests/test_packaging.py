"""An sdist built from the repo holds everything needed to build, and a wheel builds from it."""

import os
import subprocess
import sys
import tarfile
import zipfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sdist_then_wheel(tmp_path):
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)], cwd=TOP, check=True,
                   capture_output=True)
    (sdist,) = tmp_path.glob("fastdump-*.tar.gz")
    names = tarfile.open(sdist).getnames()
    root = names[0].split("/")[0]
    for need in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "src/_core.pyx", "src/_pagescan.pyx",
                 "fastdump/commands/cli.py", "fastdump/kernel/judge.py", "fastdump/testing/generator.py", ".ci/run"):
        assert f"{root}/{need}" in names, need
    assert not any(n.endswith((".so", ".pyc")) for n in names)
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(wheels), str(sdist)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = wheels.glob("fastdump-*.whl")
    so = [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".so")]
    assert any("_core" in n for n in so) and any("_pagescan" in n for n in so)
    assert any(n.endswith("entry_points.txt") for n in zipfile.ZipFile(wheel).namelist())
    packed = zipfile.ZipFile(wheel).namelist()
    for need in ("fastdump/commands/cli.py", "fastdump/sources/vmcore.py", "fastdump/copy/pipeline.py",
                 "fastdump/targets/kinds.py", "fastdump/deploy/dracut/99fastdump/module-setup.sh"):
        assert need in packed, need
