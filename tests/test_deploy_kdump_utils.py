"""`fastdump setup kdump-utils` on a scratch root: what it installs, prints, writes and undoes.

The dracut build with the installed module and kdump-utils' crash-time calls in the unpacked
image are tests/test_deploy_dracut.py (a throwaway Debian root with real dracut)."""

import os
import subprocess

import pytest

CONF = "# kdump.conf\npath /var/crash\ncore_collector makedumpfile -l --message-level 7 -d 31\n"


def setup(root, *more):
    return subprocess.run(["python3", "-m", "fastdump", "setup", "kdump-utils", "--root", str(root), *more],
                          capture_output=True, text=True, timeout=120)


def tree(root):
    """{relative path: bytes or 'dir'} of everything under ``root``."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(d, name), root)] = "dir"
        for name in files:
            with open(os.path.join(d, name), "rb") as f:
                out[os.path.relpath(os.path.join(d, name), root)] = f.read()
    return out


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    for d in ("usr/lib/dracut/modules.d", "usr/sbin", "usr/bin", "etc"):
        (r / d).mkdir(parents=True)
    (r / "etc/kdump.conf").write_text(CONF)
    return r


def test_setup_apply_then_undo_restores_everything(root):
    before = tree(root)
    s = setup(root, "--apply")
    assert s.returncode == 0, s.stderr
    conf = (root / "etc/kdump.conf").read_text().splitlines()
    active = [line.split("  #")[0] for line in conf if line and not line.startswith("#")]
    assert active == ["path /var/crash", "core_collector fastdump -l --message-level 7 -d 31",
                      "dracut_args --add fastdump"], conf
    module = root / "usr/lib/dracut/modules.d/99fastdump"
    assert sorted(os.listdir(module)) == ["module-setup.sh", "python"]
    # the module's interpreter lists the payload; the shim on kdump-utils' path runs fastdump
    r = subprocess.run([str(module / "python"), "-m", "fastdump.deploy.payload", "--launcher"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "fastdump.commands.cli" in r.stdout, r.stderr
    r = subprocess.run([str(root / "usr/sbin/fastdump"), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("fastdump "), r.stderr
    again = setup(root, "--apply")          # idempotent: no second pair of lines, backup kept
    assert again.returncode == 0, again.stderr
    assert (root / "etc/kdump.conf").read_text().splitlines() == conf
    assert (root / "etc/kdump.conf.fastdump-backup").read_text() == CONF
    u = setup(root, "--undo")
    assert u.returncode == 0, u.stderr
    assert tree(root) == before
    assert "nothing to undo" in setup(root, "--undo").stdout


def test_without_apply_prints_lines_and_leaves_kdump_conf(root):
    s = setup(root, "--collector", "-z -d 31")
    assert s.returncode == 0, s.stderr
    assert "    core_collector fastdump -z -d 31\n    dracut_args --add fastdump\n" in s.stdout
    assert (root / "etc/kdump.conf").read_text() == CONF


def test_no_shim_when_fastdump_is_on_kdump_utils_path(root):
    (root / "usr/bin/fastdump").write_text("#!/bin/sh\n")
    (root / "usr/bin/fastdump").chmod(0o755)
    assert setup(root).returncode == 0
    assert not (root / "usr/sbin/fastdump").exists()


def test_foreign_module_directory_is_left_alone(root):
    foreign = root / "usr/lib/dracut/modules.d/99fastdump"
    foreign.mkdir()
    (foreign / "module-setup.sh").write_text("# someone else's\n")
    for args in ((), ("--undo",)):
        s = setup(root, *args)
        assert s.returncode == 1 and "left alone" in s.stderr and len(s.stderr.splitlines()) == 1, s.stderr
    assert (foreign / "module-setup.sh").read_text() == "# someone else's\n"


def test_no_dracut_is_one_line_error(tmp_path):
    s = setup(tmp_path)
    assert s.returncode == 1 and "install kdump-utils" in s.stderr and len(s.stderr.splitlines()) == 1, s.stderr


def test_a_listing_that_fails_is_reported_at_setup(tmp_path):
    """Setup runs what the module runs at build time (the payload listing) with the module's
    interpreter script; when it fails, setup fails with its last line, not kdumpctl later."""
    from fastdump.deploy import kdump_utils
    from fastdump.errors import FastdumpError
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 'Traceback...' >&2\necho 'fastdump payload: error: no zlib' >&2\nexit 1\n")
    python.chmod(0o700)
    with pytest.raises(FastdumpError, match="cannot list what to pack: fastdump payload: error: no zlib"):
        kdump_utils._check_listing(str(python))


def test_the_sysadmins_dracut_args_stay(root):
    (root / "etc/kdump.conf").write_text(CONF + "dracut_args --omit-drivers nouveau\n")
    before = tree(root)
    for _ in range(2):      # applying twice still gives one merged line
        assert setup(root, "--apply").returncode == 0
        active = [line.split("  #")[0] for line in (root / "etc/kdump.conf").read_text().splitlines()
                  if line.startswith("dracut_args")]
        assert active == ["dracut_args --omit-drivers nouveau --add fastdump"], active
    assert setup(root, "--undo").returncode == 0
    assert tree(root) == before


def test_apply_without_kdump_conf_changes_nothing(root):
    (root / "etc/kdump.conf").unlink()
    before = tree(root)
    s = setup(root, "--apply")
    assert s.returncode == 1 and "kdump.conf is missing" in s.stderr and len(s.stderr.splitlines()) == 1, s.stderr
    assert tree(root) == before
