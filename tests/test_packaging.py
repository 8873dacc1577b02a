"""What is shipped and how it is checked: the sdist holds every tracked file and the tests pass
from it, the wheel holds every module with its type information, one version number, the
declared Python version is true (vermin), the lint rules (ruff) and the public API's types
(mypy) hold, and `fastdump demo` leaves `git status` clean."""

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

import fastdump

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the oldest Python fastdump runs on: RHEL 9's python3 (pyproject.toml's requires-python)
OLDEST_PYTHON = "3.9"


def tracked_files():
    """The repository's tracked files, or a skip when the tests run outside a git checkout
    (from an unpacked sdist there is nothing to compare it with)."""
    if not os.path.exists(os.path.join(TOP, ".git")):
        pytest.skip("not a git checkout: no list of tracked files")
    r = subprocess.run(["git", "ls-files", "-z"], cwd=TOP, capture_output=True, text=True, check=True)
    return {n for n in r.stdout.split("\0") if n and os.path.exists(os.path.join(TOP, n))}


def run_tool(module, *args):
    """Run a checking tool that .ci/setup-host installs; a missing one fails with the reason."""
    assert importlib.util.find_spec(module), f"{module} is not installed: run `bash .ci/setup-host`"
    how = ["-c", f"import sys, {module}; sys.exit({module}.main())"] if module == "vermin" else ["-m", module]
    return subprocess.run([sys.executable, *how, *args], cwd=TOP, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(unpacked sdist root, wheel path): the sdist built from this tree, the wheel built from it.
    The egg-info goes to a fresh directory: setuptools adds the files an old SOURCES.txt lists,
    which would hide what MANIFEST.in and pyproject.toml leave out."""
    tmp = tmp_path_factory.mktemp("dist")
    egg = tmp / "egg-info"
    egg.mkdir()
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(egg), "sdist", "-d", str(tmp)],
                   cwd=TOP, check=True, capture_output=True)
    (sdist,) = tmp.glob("fastdump-*.tar.gz")
    with tarfile.open(sdist) as t:
        root = t.getnames()[0].split("/")[0]
        t.extractall(tmp / "unpacked")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp / "wheels"), str(sdist)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp / "wheels").glob("fastdump-*.whl")
    return tmp / "unpacked" / root, wheel


def test_sdist_holds_every_tracked_file(built):
    root, _ = built
    shipped = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    missing = sorted(tracked_files() - shipped)
    assert not missing, f"MANIFEST.in leaves out tracked files: {missing[:20]}"
    assert not [n for n in shipped if n.endswith((".so", ".pyc"))], "build products in the sdist"


def test_sdist_tests_pass_from_the_unpacked_tree(built, tmp_path):
    """A few fast tests that read the fuzz corpus, the fault shim's source and the synthetic
    generator run from the unpacked sdist, with the compiled core of the wheel built from it."""
    root, wheel = built
    with zipfile.ZipFile(wheel) as z:
        for n in z.namelist():
            if n.endswith(".so"):
                (root / n).write_bytes(z.read(n))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                        f"--basetemp={tmp_path / 'inner'}", "tests/fuzz/test_fuzz.py::test_corpus_replay",
                        "tests/fuzz/test_regressions.py", "tests/test_unreadable.py"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert f"{root}/fastdump" in subprocess.run(
        [sys.executable, "-c", "import fastdump; print(fastdump.__file__)"], cwd=root, env=env,
        capture_output=True, text=True).stdout


def test_sdist_wheel_holds_every_module_typed(built):
    root, wheel = built
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(root)) for p in (root / "fastdump").rglob("*.py")}
    assert modules and not modules - names, f"modules missing from the wheel: {sorted(modules - names)}"
    so = [n for n in names if n.endswith(".so")]
    assert all(any(m in n for n in so) for m in ("_core", "_pagescan", "_kerneltables")), so
    for typed in ("fastdump/py.typed", "fastdump/_core.pyi", "fastdump/_pagescan.pyi", "fastdump/_pageclass.pyi",
                  "fastdump/_kerneltables.pyi",
                  "fastdump/deploy/dracut/99fastdump/module-setup.sh"):
        assert typed in names, typed
    assert any(n.endswith("entry_points.txt") for n in names)


def test_sdist_one_version_number(built):
    """fastdump/__init__.py holds the version; the wheel's metadata and --version agree."""
    root, wheel = built
    with zipfile.ZipFile(wheel) as z:
        (meta,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        fields = dict(line.split(": ", 1) for line in z.read(meta).decode().splitlines() if ": " in line)
    assert fields["Version"] == fastdump.__version__
    assert fields["Requires-Python"] == f">={OLDEST_PYTHON}"
    r = subprocess.run([sys.executable, "-m", "fastdump", "--version"], cwd=TOP, capture_output=True, text=True)
    assert r.stdout.strip() == f"fastdump {fastdump.__version__}"
    # nowhere else: no version literal in the build files
    for name in ("pyproject.toml", "setup.py"):
        with open(os.path.join(TOP, name)) as f:
            assert fastdump.__version__ not in f.read(), f"{name} repeats the version"


def test_requires_python_is_true():
    """No syntax, module or member newer than the declared oldest Python (vermin; annotations
    are evaluated at run time too).  vermin cannot know every receiver's type, so int.bit_count
    is also searched for by name (its use on 3.9 is a crash on the dump path)."""
    r = run_tool("vermin", f"--target={OLDEST_PYTHON}-", "--no-tips", "--violations", "--eval-annotations",
                 "fastdump", "setup.py", "tests", "bench")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]
    found = []
    for dirpath, _, files in os.walk(os.path.join(TOP, "fastdump")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(dirpath, name)) as f:
                    tree = ast.parse(f.read())
                found += [f"{name}:{n.lineno}" for n in ast.walk(tree)
                          if isinstance(n, ast.Attribute) and n.attr == "bit_count"]
    assert not found, f"int.bit_count is Python 3.10+: {found}"
    with open(os.path.join(TOP, "pyproject.toml")) as f:
        assert f'requires-python = ">={OLDEST_PYTHON}"' in f.read()


@pytest.mark.parametrize("parsers", [("tomllib",), ("tomllib", "tomli")])
def test_config_file_before_python_3_11(tmp_path, parsers):
    """Python 3.9/3.10 have no tomllib: --settings reads TOML with the tomli package, and without
    it says so in one line (exit 2), never a traceback."""
    cfg = tmp_path / "fastdump.toml"
    cfg.write_text(f'source = "/nonexistent/vmcore"\ntargets = ["{tmp_path / "out"}"]\n')
    hide = "".join(f"sys.modules[{m!r}] = None; " for m in parsers)   # an import of them fails
    r = subprocess.run([sys.executable, "-c", f"import sys; {hide}from fastdump.commands.cli import main; "
                        f"sys.exit(main(['--settings', {str(cfg)!r}]))"],
                       cwd=TOP, capture_output=True, text=True, timeout=60)
    if "tomli" in parsers:
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == f"fastdump: error: --settings {cfg}: reading TOML needs Python 3.11 or the tomli package"
    else:
        assert importlib.util.find_spec("tomli"), "tomli is not installed: run `bash .ci/setup-host`"
        assert r.returncode == 1 and "/nonexistent/vmcore" in r.stderr, r.stderr   # the file was read


def test_lint():
    """ruff with the rules pyproject.toml chooses (real bugs: pyflakes, syntax, bugbear)."""
    r = run_tool("ruff", "check", "--no-cache", "--output-format=concise", ".")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]


def test_public_api_types():
    """mypy over the public API, the reader interface and a script using them (untyped calls
    refused there, see pyproject.toml)."""
    r = run_tool("mypy", "--no-incremental", "--cache-dir=/dev/null", "fastdump/__init__.py", "fastdump/errors.py",
                 "fastdump/sources/opener.py", "fastdump/_core.pyi", "fastdump/_pagescan.pyi",
                 "tests/typing/api_usage.py")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]


def test_compiled_stubs_match_the_built_modules():
    """Every name the compiled modules define is in their stub, with the same parameters."""
    r = run_tool("mypy.stubtest", "--mypy-config-file", "pyproject.toml", "--ignore-disjoint-bases",
                 "--allowlist", "tests/stubtest-allowlist.txt", "fastdump._core", "fastdump._pagescan", "fastdump._pageclass",
                 "fastdump._kerneltables")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]


def test_demo_leaves_git_status_clean(tmp_path):
    """The README's first command runs `fastdump demo` in the checkout: its output, and what
    setup-host and the test runs leave there, are ignored by the repository's .gitignore."""
    assert shutil.which("git")
    shutil.copy(os.path.join(TOP, ".gitignore"), tmp_path / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    env = dict(os.environ, PYTHONPATH=TOP)
    r = subprocess.run([sys.executable, "-m", "fastdump", "demo", "--size", "64"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert os.path.exists(tmp_path / "fastdump-demo" / "dump.kdump")
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    assert [s for s in status if s] == ["?? .gitignore"], status
    made = ["build/lib/x.py", "fastdump.egg-info/PKG-INFO", "fastdump/_core.cpython-39-x86_64-linux-gnu.so",
            "src/_core.c", ".pytest_cache/README.md", ".hypothesis/x", ".ruff_cache/x", ".mypy_cache/x",
            "fastdump/__pycache__/x.pyc", "dist/fastdump-1.tar.gz"]
    r = subprocess.run(["git", "check-ignore", "--no-index", *made], cwd=tmp_path, capture_output=True, text=True)
    assert sorted(r.stdout.split()) == sorted(made)
