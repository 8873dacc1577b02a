"""Throughput to a local Ceph RGW next to a file target, and where the time goes.

    python3 -m bench.s3 [--ram-mib 1024] [--reps 3]

Starts the tests' single-node RGW (tests/rgw.py: needs ceph-mon, ceph-osd, radosgw from
.ci/setup-host), writes one generated vmcore to a file and to s3:// at -d 0 (no compression:
the store is the work) and -z -d 1, under GNU time, and prints the median wall time, peak RSS
and, for s3://, the uploader's busy time and the time the copy waited for it (the manifest's
``upload_seconds``).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def timed(argv, env):
    r = subprocess.run(["/usr/bin/time", "-f", "@@ %e %M"] + argv, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {r.stderr[-1500:]}")
    wall, rss = re.findall(r"@@ ([\d.]+) (\d+)", r.stderr)[-1]
    return float(wall), int(rss) // 1024


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m bench.s3")
    p.add_argument("--ram-mib", type=int, default=1024)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    from rgw import Rgw
    from fastdump.targets.s3client import Credentials, S3Client
    from fastdump.testing.generator import MiB, make_vmcore
    work = tempfile.mkdtemp(prefix="fastdump-bench-s3-")
    src = os.path.join(work, "vmcore")
    make_vmcore(src, ram_size=args.ram_mib * MiB, seed=4)
    rgw = Rgw().start()
    try:
        env = rgw.env()
        client = S3Client(Credentials.load(env))
        client.create_bucket("bench")
        fastdump = [sys.executable, "-m", "fastdump", "-f"]
        print(f"| input {args.ram_mib} MiB | target | wall s (median) | MB/s of the dump | peak RSS MiB "
              f"| uploader busy s | copy stalled s |\n|---|---|---|---|---|---|---|")
        for opts in (["-d", "0"], ["-z", "-d", "1"]):
            for kind in ("file", "s3"):
                rows = []
                for rep in range(args.reps):
                    out = os.path.join(work, "out") if kind == "file" else f"s3://bench/r{rep}{''.join(opts)}/"
                    wall, rss = timed(fastdump + opts + [src, out], env)
                    if kind == "file":
                        size, busy, stalled = os.path.getsize(out), None, None
                    else:
                        keys = [k for k, _ in client.list_objects("bench", out[len("s3://bench/"):])]
                        m = json.loads(client.get_object("bench", [k for k in keys if k.endswith(".json")][0]))
                        size, busy, stalled = m["bytes"], m["upload_seconds"]["uploading"], \
                            m["upload_seconds"]["stalled"]
                    rows.append((wall, rss, size, busy, stalled))
                wall = statistics.median(r[0] for r in rows)
                size = rows[0][2]
                busy = "" if rows[0][3] is None else f"{statistics.median(r[3] for r in rows):.2f}"
                stalled = "" if rows[0][4] is None else f"{statistics.median(r[4] for r in rows):.2f}"
                print(f"| {' '.join(opts)} | {kind} | {wall:.2f} | {size / 1e6 / wall:.0f} "
                      f"| {max(r[1] for r in rows)} | {busy} | {stalled} |", flush=True)
    finally:
        rgw.stop()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
