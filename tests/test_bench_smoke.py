"""The bench command itself runs and writes its three outputs (no timing is asserted)."""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_bench_quick_runs(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--inputs", "dense-128M", "--threads", "1",
                        "--no-fetch", "--out", str(out), "--scratch", str(tmp_path / "scratch")],
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
