"""The bench command itself runs and writes its outputs and report (no timing is asserted)."""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_bench_quick_runs(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--inputs", "dense-128M", "--threads", "1",
                        "--no-fetch", "--out", str(out), "--scratch", str(tmp_path / "scratch"),
                        "--results", str(out / "RESULTS.md")],
                       cwd=os.path.dirname(HERE), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    (inp,) = res["inputs"]
    runs = inp["runs"]
    assert runs["fastdump zstd -d1 t1"]["ok"] and runs["fastdump zstd -d1 t1"]["rss_kb"] > 0
    assert any(name.startswith("makedumpfile") and r.get("ok") for name, r in runs.items())
    assert inp["ceilings"]["codec"]["zstd"]["per_core_MBps"] > 0
    assert "| contender |" in (out / "results.md").read_text()
    assert (out / "throughput.png").stat().st_size > 1000
    phases = runs["fastdump zstd -d1 t1"]["phases"]     # from fastdump's own --stats-json
    assert set(phases) == {"outside", "open", "classify", "write"} and phases["write"] > 0
    report = (out / "RESULTS.md").read_text()           # bench/RESULTS.md's generator
    assert "## Targets of the performance issue" in report and "## Where fastdump's time goes" in report
    assert "| peak RSS at most 64 MiB |" in report and "dense-128M" in report


def test_fill_holes_makes_a_dense_file(tmp_path):
    """The bench's kernel-* inputs stand for /proc/vmcore, which has no holes."""
    sys.path.insert(0, os.path.dirname(HERE))
    from bench.run import fill_holes
    path = str(tmp_path / "sparse")
    with open(path, "wb") as f:
        f.write(b"a" * 4096)
        f.seek(20 << 20)
        f.write(b"b" * 4096)
        f.truncate(40 << 20)        # a hole in the middle and one up to the end
    before = (tmp_path / "sparse").read_bytes()
    assert os.stat(path).st_blocks * 512 < 1 << 20
    fill_holes(path)
    assert (tmp_path / "sparse").read_bytes() == before
    assert os.stat(path).st_blocks * 512 >= 40 << 20
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, os.SEEK_HOLE) == 40 << 20
    finally:
        os.close(fd)
