"""The kernel fetcher resolves a release's kernel the way an up-to-date machine of that release
would (release, -updates and -security suites), whatever this machine has installed."""

import os
import subprocess

import pytest

from . import aptsources, kernels
from .fixtures import KEYS


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_suites_from_deb822_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTDUMP_E2E_MIRROR", raising=False)
    monkeypatch.delenv("FASTDUMP_E2E_SECURITY_MIRROR", raising=False)
    etc = str(tmp_path)
    _write(os.path.join(etc, "sources.list.d", "a-thirdparty.sources"),
           "Types: deb\nURIs: https://vendor.example/apt\nSuites: stable\nComponents: main\n")
    _write(os.path.join(etc, "sources.list.d", "debian.sources"),
           "Types: deb\nURIs: http://mirror.test/debian\nSuites: bookworm bookworm-updates\n"
           "Components: main\n\n"
           "Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\n"
           "Components: main\n")
    assert aptsources.suites("trixie", etc) == [
        ("http://mirror.test/debian", "trixie"),
        ("http://mirror.test/debian", "trixie-updates"),
        ("http://mirror.test/debian-security", "trixie-security")]
    assert aptsources.suites("sid", etc) == [("http://mirror.test/debian", "sid")]


def test_suites_from_one_line_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTDUMP_E2E_MIRROR", raising=False)
    monkeypatch.delenv("FASTDUMP_E2E_SECURITY_MIRROR", raising=False)
    etc = str(tmp_path)
    _write(os.path.join(etc, "sources.list"),
           "deb [arch=amd64] http://m.test/debian/ bullseye main\n"
           "deb http://s.test/debian-security bullseye-security main\n")
    assert [s for _, s in aptsources.suites("bullseye", etc)] == [
        "bullseye", "bullseye-updates", "bullseye-security"]
    assert aptsources.archives(etc) == ("http://m.test/debian", "http://s.test/debian-security")


def test_no_mirror_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTDUMP_E2E_MIRROR", raising=False)
    with pytest.raises(aptsources.NoMirror):
        aptsources.archives(str(tmp_path))


def _newer(a, b):
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0


@pytest.mark.parametrize("key", KEYS)
def test_kernel_resolves_to_the_newest_downloadable_version(key):
    """The private apt sees every suite of the release and nothing installed here: the kernel
    it picks is the newest any suite offers, and apt can download exactly that version."""
    apt = kernels.Apt(kernels.KERNELS[key])
    with open(apt.sources) as f:
        listed = [line.split()[-2] for line in f if line.startswith("deb ")]
    assert listed == [s for _, s in aptsources.suites(apt.suite)]
    assert os.path.getsize(apt.status) == 0
    apt.update()
    pkgs = kernels.kernel_packages(apt)
    image = [(n, v) for n, v in pkgs if n.startswith("linux-image-")]
    assert image, pkgs
    r = subprocess.run(["apt-cache"] + apt.opts + ["madison", "linux-image-amd64"],
                       capture_output=True, text=True, check=True)
    offered = [line.split("|")[1].strip() for line in r.stdout.splitlines() if "|" in line]
    meta = apt.show("linux-image-amd64")["Version"]
    assert not any(_newer(v, meta) for v in offered), (meta, offered)
    for name, version in pkgs:
        r = subprocess.run(["apt-get", "-q"] + apt.opts + ["download", "--print-uris",
                                                          "%s=%s" % (name, version)],
                           capture_output=True, text=True)
        assert r.returncode == 0 and ".deb" in r.stdout, r.stdout + r.stderr
