"""The test tiers of conftest.py: a test that runs a real tool is marked ``tools`` whether it
calls the tool runner itself, through a helper of its module or through a fixture, and a test
that runs none is not."""

import os
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def collected(marker, *paths):
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                        "-m", marker, *paths], cwd=TOP, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return {line.split("[")[0] for line in r.stdout.splitlines() if "::" in line}


def test_tools_marker_follows_what_a_test_runs():
    tools = collected("tools", "tests/test_kdump.py", "tests/test_faults.py", "tests/test_unreadable.py")
    assert "tests/test_kdump.py::test_libkdumpfile_reads_every_page" in tools             # support runner
    assert "tests/test_faults.py::test_rebuild_killed_leaves_a_readable_flagged_dump" in tools  # module helper
    assert "tests/test_unreadable.py::test_mmap_failure_falls_back_to_pread" in tools       # fixture (gcc)
    assert not {"tests/test_kdump.py::test_header_fields",
                "tests/test_faults.py::test_mode_0600_whatever_the_umask"} & tools


def test_shared_vmcores_stay_within_their_budget(tmp_path_factory):
    """conftest's shared generated vmcores: past the budget the least recently asked for go,
    never one the running module asked for, never a pinned one; one asked for again is made again."""
    from conftest import _Generated
    made = []

    def write(path):
        made.append(path)
        with open(path, "wb") as f:
            f.write(bytes(1 << 20))
        return len(made)

    g = _Generated(tmp_path_factory, budget=(2 << 20) + 1)
    g.module = "a"
    pinned, _ = g.get({"n": 0}, write, pin=True)
    first, _ = g.get({"n": 1}, write)
    second, _ = g.get({"n": 2}, write)            # over budget, but module a asked for every one
    assert all(os.path.exists(p) for p in (pinned, first, second))
    g.module = "b"
    third, _ = g.get({"n": 3}, write)
    assert not os.path.exists(first) and not os.path.exists(second)   # oldest of module a: gone
    assert os.path.exists(pinned) and os.path.exists(third)
    again, extra = g.get({"n": 1}, write)
    assert os.path.exists(again) and extra == 5 and len(made) == 5
    g.check_unchanged()


GROUPS_PLUGIN = """
import pytest
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    for i in items:
        (g,) = [m.args[0] for m in i.iter_markers("xdist_group")]
        print("GROUP", i.nodeid, g, "e2e" if i.get_closest_marker("e2e") else "-",
              "slow" if i.get_closest_marker("slow") else "-", sep="\\t")
"""


def test_real_kernel_tests_share_one_worker(tmp_path):
    """Every test on a real kernel is in the one xdist group "e2e" (they fill the harness's
    caches on first use), whatever marked it: its folder, its module or its fixture; the others
    are grouped by module.  The whole Debian 12 guest is in the slow tier (CI's Debian 13 pass
    leaves it out)."""
    (tmp_path / "print_groups.py").write_text(GROUPS_PLUGIN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "--collect-only", "-p", "no:cacheprovider",
                        "-p", "print_groups", "tests"], cwd=TOP, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = [line.split("\t")[1:] for line in r.stdout.splitlines() if line.startswith("GROUP\t")]
    assert len(rows) > 500, r.stdout[-2000:]
    real = {nodeid.split("[")[0] for nodeid, group, e2e, _ in rows if e2e == "e2e"}
    assert {group for _, group, e2e, _ in rows if e2e == "e2e"} == {"e2e"}
    assert all(group == nodeid.split("::")[0] for nodeid, group, e2e, _ in rows if e2e != "e2e")
    assert {"tests/e2e/test_e2e.py::test_fastdump_page_for_page",           # its folder
            "tests/test_classification_real.py::test_dropped_pages",        # its module
            "tests/test_dmesg.py::test_real_vmcore"} <= real, sorted(real)   # its fixture
    distro = [slow for nodeid, _, _, slow in rows if "test_distro_kdump_tools" in nodeid]
    assert distro and set(distro) == {"slow"}


def test_a_module_runs_on_one_worker():
    """The groups reach pytest-xdist (conftest's marks come before its own hook reads them):
    each module's tests all run on one worker."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-v", "-n", "2", "-p", "no:cacheprovider",
                        "tests/test_vtop.py", "tests/test_pcp.py"], cwd=TOP, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    workers = {}
    for line in r.stdout.splitlines():
        if line.startswith("[gw") and " PASSED " in line:
            nodeid = line.split(" PASSED ")[1].strip()
            workers.setdefault(nodeid.split("::")[0], set()).add(line.split("]")[0])
    assert set(workers) == {"tests/test_vtop.py", "tests/test_pcp.py"}, r.stdout[-2000:]
    assert all(len(w) == 1 for w in workers.values()), workers
