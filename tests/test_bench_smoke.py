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
    again = out / "again.md"                            # rendered again from results.json alone
    r = subprocess.run([sys.executable, "-m", "bench.report", str(out / "results.json"), str(again)],
                       cwd=os.path.dirname(HERE), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and again.read_text() == report, r.stderr


def _run(group, level, codec, wall, ok=True, threads=1, rss_kb=30000):
    return {"ok": ok, "group": group, "level": level, "codec": codec, "wall": wall, "threads": threads,
            "rss_kb": rss_kb}


def test_report_never_counts_a_failed_or_missing_row_as_met():
    """bench/report.py: a target is met only on rows that exist and ran."""
    sys.path.insert(0, os.path.dirname(HERE))
    from bench import report
    inp = {"name": "real-x", "kind": "real", "ram": 2 << 30, "ceilings": {"codec": {}, "read_MBps": 0},
           "runs": {"fastdump zstd -d1 t2": _run("fastdump", 1, "zstd", 0.1, threads=2),
                    "makedumpfile -z -d1": _run("makedumpfile", 1, "zstd", 1.0),
                    "fastdump lzo -d1 t2": _run("fastdump", 1, "lzo", 0.0, ok=False, threads=2),
                    "makedumpfile -l -d1": _run("makedumpfile", 1, "lzo", 1.0)}}
    results = {"machine": {"cores": 2}, "inputs": [inp]}
    rows = {line.split("|")[1].strip(): line.rsplit("|", 2)[1].strip() for line in report.judge_speed(results)}
    assert rows["`-z -d 1`, dense 2 GiB real guests: at least 2.0x the fastest makedumpfile"] == "yes"
    assert rows["`-l -d 1`, dense 2 GiB real guests: at least 2.0x the fastest makedumpfile"] == "–"
    assert all(v == "–" for k, v in rows.items() if "16 GiB" in k)      # no such input: not measured
    rss = report.judge_rss_and_size(results)[0]
    assert rss.endswith("| – |") and "1 fastdump rows failed" in rss      # a failed run has no peak RSS
    assert report.bound_seconds(inp, inp["runs"]["fastdump zstd -d1 t2"], 2) is None   # no speeds: no bound


def test_cpu_cap_is_the_makedumpfile_wall_over_fastdump_cpu_per_core():
    """bench/report.py: the most a row's CPU time allows is makedumpfile's wall over the least
    wall that CPU time can take (one thread outside the dump, every core in it); a failed
    row, or a makedumpfile row without CPU time, gets no cap."""
    sys.path.insert(0, os.path.dirname(HERE))
    from bench import report
    fd = dict(_run("fastdump", 31, "lzo", 0.35, threads=2), cpu=0.5, phases={"outside": 0.1})
    mdf = dict(_run("makedumpfile", 31, "lzo", 0.5), cpu=0.49)
    big = {"name": "real16G-x", "kind": "bigreal", "ram": 16 << 30,
           "runs": {"fastdump lzo -d31 t2": fd, "makedumpfile -l -d31": mdf,
                    "fastdump zlib -d31 t2": dict(_run("fastdump", 31, "zlib", 0.8, ok=False, threads=2), cpu=1),
                    "makedumpfile -c -d31": dict(_run("makedumpfile", 31, "zlib", 2.5), cpu=2.5)}}
    small = {"name": "real-x", "kind": "real", "ram": 2 << 30,
             "runs": {"fastdump zstd -d1 t2": dict(_run("fastdump", 1, "zstd", 0.6, threads=2), cpu=1.1),
                      "makedumpfile -z -d1": _run("makedumpfile", 1, "zstd", 1.2)}}     # no CPU time
    rows = report.cpu_caps({"machine": {"cores": 2}, "inputs": [big, small]})[2:]
    assert len(rows) == 1, rows
    cells = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert cells[1] == "real16G-x" and cells[4] == "1.43x"     # 0.5 s / 0.35 s
    assert cells[5] == "1.67x"                  # 0.5 s / (0.1 s + (0.5 - 0.1) CPU-s / 2 cores)
    assert cells[6] == "0.30"                   # 2.5x: 0.2 s in all, 0.1 s of it outside: 0.1 + 0.1 x 2


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


def test_output_size_is_judged_page_for_page():
    """A page only one tool stores (makedumpfile drops slab pages of the synthetic kernels
    that the truth keeps) counts neither way; every other byte of the files does."""
    sys.path.insert(0, os.path.dirname(HERE))
    from array import array
    from bench import report
    from bench.run import same_pages_ratio
    ours = (array("Q", [1, 2, 3]), array("I", [100, 0, 50]), 1000)     # pfn 2: a zero page, its descriptor only
    theirs = (array("Q", [1, 3, 4]), array("I", [100, 60, 30]), 990)
    assert same_pages_ratio(ours, theirs) == round((1000 - 24) / (990 - 30 - 24), 5)
    assert same_pages_ratio(ours, (array("Q"), array("I"), 0)) is None
    run = dict(_run("fastdump", 31, "lzo", 0.1, threads=2), size_vs={"makedumpfile -l -d31": 1.03},
               size_vs_pages={"makedumpfile -l -d31": 1.0})
    inp = {"name": "kernel-x", "runs": {"fastdump lzo -d31 t2": run}}
    size_row = report.judge_rss_and_size({"inputs": [inp]})[1]
    assert size_row.endswith("| yes |") and "1.03000" in size_row and "kernel-x: 1.00000" in size_row
    run["size_vs_pages"] = {"makedumpfile -l -d31": 1.00001}
    assert report.judge_rss_and_size({"inputs": [inp]})[1].endswith("| no |")


def test_only_comparable_rows_are_read_page_by_page():
    """A dump is read back only where a fastdump row and a makedumpfile row share a codec
    and level: not the 1 TiB input's (70 million kept pages, no lzo fastdump row there)."""
    sys.path.insert(0, os.path.dirname(HERE))
    from bench.run import contenders, size_compared
    builds = [{"name": "makedumpfile", "lzo": True, "zstd": False, "argv": ["mdf"]}]
    def names(kind):
        return size_compared(contenders({"kind": kind, "path": "p", "name": "n", "ram": 2 << 30}, builds, [2],
                                        False, 2))
    assert names("huge") == set()
    assert names("kernel") == {"fastdump lzo -d1 t2", "fastdump lzo -d31 t2", "fastdump zlib -d1 t2",
                               "fastdump zlib -d31 t2", "makedumpfile -l -d1", "makedumpfile -l -d31",
                               "makedumpfile -c -d1", "makedumpfile -c -d31"}
