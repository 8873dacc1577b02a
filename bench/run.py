"""fastdump against makedumpfile and cp, in one run, on the same inputs.

    python3 -m bench.run                 # full suite (about 15 minutes on 2 cores)
    python3 -m bench.run --quick         # small inputs, one repetition (the smoke test)

Inputs (built once into .cache/bench/): a 1 GiB dense synthetic vmcore with the
generator's mix of zero, text, pointer and random pages; 8 GiB and 64 GiB
sparse vmcores of a 6.1-layout kernel that is mostly free memory; the real
vmcores of tests/e2e when they exist.  Contenders run alternately (the order is
shuffled every repetition), each several times; medians are reported with the
ceilings measured in the same run: per-core codec speed on these pages times the
cores, and reading the source into nothing.  Outputs go to a tmpfs, so the disk
is not measured.  Results: bench/out/results.json, results.md, throughput.png.
"""

import argparse
import glob
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

from fastdump.deploy.payload import LAUNCH_CODE

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
CACHE = os.path.join(TOP, ".cache", "bench")
GiB, MiB = 1 << 30, 1 << 20


# -- inputs ---------------------------------------------------------------------
def build_inputs(quick, keep=None):
    from fastdump.testing.generator import SyntheticVmcore, VmcoreSpec, default_ram_ranges, make_vmcore
    from fastdump.testing.kernel_layout import KernelLayout

    os.makedirs(CACHE, exist_ok=True)
    specs = [("dense-128M" if quick else "dense-1G", "dense", (128 * MiB) if quick else GiB)]
    specs += [("sparse-1G", "sparse", GiB)] if quick else [("sparse-8G", "sparse", 8 * GiB),
                                                         ("sparse-64G", "sparse", 64 * GiB),
                                                         ("sparse-1T", "huge", 1024 * GiB),
                                                         ("kernel-2G", "kernel", 2 * GiB),
                                                         ("kernel-8G", "kernel", 8 * GiB)]
    inputs = []
    if keep:
        specs = [sp for sp in specs if sp[0] in keep]
    for name, kind, size in specs:
        path = os.path.join(CACHE, name + ".vmcore")
        if not os.path.exists(path):
            print(f"bench: generating {name}", file=sys.stderr)
            if kind == "dense":
                make_vmcore(path + ".tmp", ram_size=size, seed=2)
            else:  # a mostly free 6.1-layout kernel; sparse and huge: zero pages as file holes
                layout = KernelLayout(default_ram_ranges(size), encoding="6.1", seed=4, sparse=True)
                SyntheticVmcore(VmcoreSpec(ram_size=size, sparse=kind != "kernel"),
                                layout=layout).write(path + ".tmp")
                if kind == "kernel":
                    fill_holes(path + ".tmp")
            os.replace(path + ".tmp", path)
            if os.path.exists(path + ".tmp.truth.json"):
                os.replace(path + ".tmp.truth.json", path + ".truth.json")
        inputs.append({"name": name, "kind": kind, "path": path, "ram": size})
    for raw in sorted(glob.glob(os.path.join(TOP, ".cache", "e2e", "*", "vmcore.raw"))):
        kernel = os.path.basename(os.path.dirname(raw))
        if keep and f"real-{kernel}" not in keep:
            continue
        inputs.append({"name": f"real-{kernel}", "kind": "real", "path": raw, "ram": os.path.getsize(raw)})
    for raw in sorted(glob.glob(os.path.join(BIG_REAL, "*", "vmcore.raw"))):
        name = f"real{round(os.path.getsize(raw) / GiB)}G-{os.path.basename(os.path.dirname(raw))}"
        if not keep or name in keep:
            inputs.append({"name": name, "kind": "bigreal", "path": raw, "ram": os.path.getsize(raw)})
    missing = sorted(set(keep or ()) - {i["name"] for i in inputs})
    if missing:     # a named input that is not there would leave its targets silently unmeasured
        sys.exit(f"bench: no input {', '.join(missing)}: real-<kernel> comes from a tests/e2e run "
                 f"(python3 -m tests.e2e.run), real16G-<kernel> from --make-big-real")
    return inputs


#: the big real guest (``--make-big-real``): its own e2e cache, the kernels shared with tests/e2e
BIG_REAL = os.path.join(CACHE, "e2e")
BIG_REAL_MIB = 16384
#: what the guest's workload fills: 6 GiB user data, 4.5 GiB page cache, some shmem and tmpfs,
#: 1 GiB freed; the rest is the kernel, free memory and the capture kernel's reserve
BIG_REAL_CLASSES = "user=6144,cache=4608,shmem=512,tmpfs=512,free=1024"


def make_big_real(kernel, log):
    """Boot ``kernel`` in a 16 GiB QEMU guest (tests/e2e/run.py), fill its memory, crash it
    and keep the capture kernel's raw /proc/vmcore (dense, as dd wrote it): 8-18 minutes
    under TCG, 16 GiB of disk for the vmcore (33 GiB while the guest's disk exists)."""
    os.makedirs(BIG_REAL, exist_ok=True)
    for shared in ("kernels", "apt"):           # the Debian kernels tests/e2e already fetched
        link, target = os.path.join(BIG_REAL, shared), os.path.join(TOP, ".cache", "e2e", shared)
        os.makedirs(target, exist_ok=True)
        if not os.path.lexists(link):
            os.symlink(target, link)
    log(f"booting a {BIG_REAL_MIB} MiB {kernel} guest for the big real vmcore")
    r = subprocess.run([sys.executable, "-m", "tests.e2e.run", "--kernels", kernel, "--mem", str(BIG_REAL_MIB),
                        "--levels", "31", "--no-fastdump", "--classes-mib", BIG_REAL_CLASSES], cwd=TOP,
                       env=dict(os.environ, FASTDUMP_E2E_CACHE=BIG_REAL))
    shutil.rmtree(os.path.join(BIG_REAL, "work"), ignore_errors=True)
    if r.returncode:
        log(f"the big real vmcore of {kernel} could not be made (tests.e2e.run exit {r.returncode})")


def fill_holes(path):
    """Write the file's holes as zeros: /proc/vmcore has no holes, and a reader that
    skips them (fastdump does) would be measured on less than a capture kernel reads."""
    zeros = bytes(8 * MiB)
    with open(path, "r+b") as f:
        fd, size, off = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while off < size:
            hole = os.lseek(fd, off, os.SEEK_HOLE)
            if hole >= size:
                break
            end = min(size, _next_data(fd, hole, size))
            while hole < end:
                hole += os.pwrite(fd, zeros[:min(len(zeros), end - hole)], hole)
            off = end


def _next_data(fd, off, size):
    try:
        return os.lseek(fd, off, os.SEEK_DATA)
    except OSError:      # ENXIO: a hole up to the end
        return size


# -- makedumpfile builds -------------------------------------------------------------
def makedumpfile_builds(log, fetch=True, with_sid=True):
    """The installed makedumpfile; Debian 13's 1.7.6 (which has zstd) unpacked from its .deb;
    and sid's newest (1.7.8 in November 2026: the first Debian build that classifies 6.12's
    pages right), unpacked with the sid C library it needs and run through that library's
    loader (``with_sid``).  Each build: name, argv (the command), version, lzo, zstd."""
    builds = []
    sysmdf = shutil.which("makedumpfile")
    if sysmdf:
        builds.append({"name": "makedumpfile", "argv": [sysmdf]})
    trixie = _unpacked("trixie", ["makedumpfile"], log, fetch)
    if trixie:
        builds.append({"name": "makedumpfile-deb13", "argv": [trixie["exe"]]})
    sid = with_sid and _unpacked("sid", SID_PACKAGES, log, fetch)
    if sid:
        builds.append({"name": "makedumpfile-sid", "argv": [sid["loader"], "--library-path", sid["libs"], sid["exe"]]})
    for b in list(builds):
        out = subprocess.run(b["argv"] + ["-v"], capture_output=True, text=True)
        text = out.stdout + out.stderr
        if "version" not in text:
            log(f"{b['name']} does not run here: {text.strip()[:200]}")
            builds.remove(b)
            continue
        b["version"] = text.split("version", 1)[1].split()[0]
        b["zstd"] = any(line.split()[:2] == ["zstd", "enabled"] for line in text.splitlines())
        b["lzo"] = any(line.split()[:2] == ["lzo", "enabled"] for line in text.splitlines())
    return builds


#: sid's makedumpfile and the libraries of its Depends that Debian 12 has too old (glibc >= 2.38)
SID_PACKAGES = ["makedumpfile", "libc6", "libdw1t64", "libelf1t64", "liblzo2-2", "libzstd1", "zlib1g",
                "libbz2-1.0", "liblzma5"]


def _unpacked(suite, packages, log, fetch):
    """``packages`` of Debian ``suite`` unpacked into .cache/tools/makedumpfile-<suite>/ (once):
    {exe, loader, libs}, or None when they cannot be fetched."""
    dest = os.path.join(TOP, ".cache", "tools", f"makedumpfile-{suite}")
    def found():
        exe = next((p for p in (os.path.join(dest, "usr", d, "makedumpfile") for d in ("sbin", "bin"))
                    if os.path.exists(p)), None)
        return exe and {"exe": exe, "loader": os.path.join(dest, "usr", "lib64", "ld-linux-x86-64.so.2"),
                        "libs": os.path.join(dest, "usr", "lib", "x86_64-linux-gnu")}
    if not fetch:
        return found()
    sys.path.insert(0, TOP)
    from tests.e2e.kernels import Apt
    from tests.e2e.paths import locked
    with locked(dest + ".lock"):    # the test workers unpack it on first use
        if found():
            return found()
        try:
            apt = Apt(suite)
            apt.update()
            for pkg in packages:
                fields = apt.show(pkg)
                deb = apt.download(pkg, fields["Version"], os.path.join(dest, "debs"))
                subprocess.run(["dpkg-deb", "-x", deb, dest], check=True)
        except Exception as e:  # noqa: BLE001 - reported in the results, not fatal
            log(f"makedumpfile from Debian {suite} not available: {e}")
        return found()


# -- one timed run ----------------------------------------------------------------------
#: beside each fastdump dump: its ``--stats-json`` (where its time went, what it read and kept)
STATS = ".stats.json"


def timed(argv, out_path, *, env=None):
    """Run one contender under GNU time: a process forked from this (large) one would
    report this process's memory as its own peak RSS."""
    stats = out_path + ".time"
    t0 = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-o", stats, "-f", "%e %U %S %M"] + argv, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=dict(os.environ, **(env or {})))
    wall = time.monotonic() - t0
    try:
        with open(stats) as f:
            last = f.read().strip().splitlines()[-1].split()
        elapsed, user, system, rss = float(last[0]), float(last[1]), float(last[2]), int(last[3])
    except (OSError, IndexError, ValueError):
        elapsed, user, system, rss = wall, 0.0, 0.0, 0
    err = proc.stderr.decode(errors="replace")
    size = os.path.getsize(out_path) if os.path.exists(out_path) else 0
    r = {"ok": proc.returncode == 0, "code": proc.returncode, "wall": elapsed, "cpu": user + system,
         "rss_kb": rss, "bytes_out": size, "error": "" if proc.returncode == 0 else err.strip()[-300:]}
    try:
        with open(out_path + STATS) as f:
            st = json.load(f)
        r["phases"] = dict(st["phase_seconds"], outside=max(0.0, elapsed - st["seconds"]))
        r.update(bytes_read=st["bytes_read"], pages_kept=st["pages_kept"], pages_scanned=st["pages_scanned"])
    except (OSError, ValueError, KeyError):
        pass          # makedumpfile and cp rows
    return r


def contenders(inp, builds, threads, quick, cores, mdf_threads=()):
    """(name, group, argv-builder) for one input; ``mdf_threads``: makedumpfile
    --num-threads rows too (1.7.6 here: on every synthetic input 8-13x slower than one
    thread, so not by default)."""
    # as the launcher of an installed fastdump and of the capture initrd runs it (python3 -S,
    # the package on PYTHONPATH): this machine's site packages are not part of a dump
    fd = [sys.executable, "-S", "-c", LAUNCH_CODE, "-q", "-f"]
    out = []
    levels = {"dense": [1], "sparse": [31], "huge": [31], "real": [1, 31], "kernel": [1, 31],
              "bigreal": [31]}[inp["kind"]]
    if inp["kind"] == "kernel" and inp["ram"] > 2 * GiB:
        levels = [31]    # kernel-8G stands for cost per GiB at -d 31; -d 1 there is kernel-2G's rows, 4x longer
    codecs = (["zstd", "lz4"] if quick or inp["kind"] == "huge" else ["zstd", "lz4", "lzo", "zlib"]
              if inp["kind"] == "bigreal" else ["zstd", "lz4", "lzo", "zlib", "none"])
    if inp["kind"] == "huge":  # memory across thread counts; one makedumpfile row (about a minute a run)
        builds = builds[:1]
    for level in levels:
        for codec in codecs:
            for t in (threads if codec == "zstd" and inp["kind"] == "dense" else
                      sorted({cores, 8}) if inp["kind"] == "huge" else [cores]):
                out.append((f"fastdump {codec} -d{level} t{t}", "fastdump",
                            lambda o, c=codec, lv=level, t=t: fd + ["--compress", c, "-d", str(lv), "--threads", str(t),
                                                                    "--stats-json", o + STATS, inp["path"], o],
                            {"codec": codec, "level": level, "threads": t}))
        for b in builds:
            flags = (["-l"] if b["lzo"] else []) + ([] if quick else ["-c"]) + (["-z"] if b["zstd"] else [])
            if inp["kind"] == "huge":
                flags = flags[:1]
            for flag in flags:
                codec = {"-l": "lzo", "-c": "zlib", "-z": "zstd"}[flag]
                for t in [1] + list(mdf_threads):
                    more = ["--num-threads", str(t)] if t > 1 else []
                    out.append((f"{b['name']} {' '.join(more + [flag])} -d{level}", b["name"],
                                lambda o, e=b["argv"], fl=flag, lv=level, m=more: e + m + [fl, "-d", str(lv),
                                                                                        inp["path"], o],
                                {"codec": codec, "level": level, "threads": t}))
    if inp["kind"] not in ("sparse", "huge", "bigreal"):      # 16 GiB copied to a tmpfs would not fit
        out.append(("cp", "cp", lambda o: ["cp", "--sparse=never", inp["path"], o], {"codec": "none", "level": 0,
                                                                                      "threads": 1}))
    return out


# -- ceilings -------------------------------------------------------------------------------
READ_CEILING_BYTES = 16 * GiB   # reading the source into nothing: at most this much (1 TiB would take minutes)

def ceilings(inp, cores):
    import array

    from fastdump import _core
    from fastdump.sources.vmcore import ElfSource
    with ElfSource(inp["path"]) as src:
        # 256 MiB in 1 MiB pieces spread over the whole memory: the first 256 MiB are the
        # kernel's own, which compress unlike the rest
        sample = bytearray()
        total = sum(end - start for start, end, _ in src.extents)
        step = -(-total // (256 * MiB)) * MiB          # rounded up: at most 256 pieces
        for start, end, off in src.extents:
            for at in range(0, end - start, step):
                take = min(MiB, end - start - at, 256 * MiB - len(sample))
                take -= take % 4096
                if take > 0:
                    sample += os.pread(src.fd, take, off + at)
        kept = bytes(sample)
    pages = [kept[i:i + 4096] for i in range(0, len(kept), 4096)]
    nonzero = b"".join(p for p in pages if p.count(0) != 4096)
    core_src = _core.Source(-1, array.array("Q"), 4096)
    speeds = {}
    for name, codec in (("zstd", _core.CODEC_ZSTD), ("lz4", _core.CODEC_LZ4), ("lzo", _core.CODEC_LZO),
                        ("zlib", _core.CODEC_ZLIB)):
        job = _core.Job(core_src, codec, 1)
        t0 = time.monotonic()
        job.compress_pages(nonzero)
        dt = max(1e-9, time.monotonic() - t0)
        speeds[name] = {"per_core_MBps": len(nonzero) / dt / 1e6, "ceiling_MBps": cores * len(nonzero) / dt / 1e6}
    read = max(_read_speed(inp["path"]) for _ in range(2))     # the second pass from the page cache
    return {"codec": speeds, "read_MBps": read, "sample_nonzero_fraction": len(nonzero) / max(1, len(kept))}


def _read_speed(path):
    """MB/s of reading the file (its first READ_CEILING_BYTES) into one reused buffer: the
    kernel's copy out of the page cache, with no new memory touched on each read."""
    buf = bytearray(8 * MiB)
    t0 = time.monotonic()
    n = 0
    with open(path, "rb", buffering=0) as f:
        while n < READ_CEILING_BYTES:
            got = f.readinto(buf)
            if not got:
                break
            n += got
    return n / max(1e-9, time.monotonic() - t0) / 1e6


# -- the run -----------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small inputs, one repetition")
    p.add_argument("--reps", type=int)
    p.add_argument("--threads", default=None, help="thread counts for fastdump zstd -d 1 (default 1,2,..,8)")
    p.add_argument("--out", default=os.path.join(HERE, "out"))
    p.add_argument("--scratch", default="/dev/shm/fastdump-bench", help="where dumps are written (tmpfs)")
    p.add_argument("--inputs", help="comma-separated input names to keep")
    p.add_argument("--no-fetch", action="store_true", help="do not download Debian 13's makedumpfile")
    p.add_argument("--make-big-real", metavar="KERNEL", nargs="?", const="6.12",
                   help="first make the 16 GiB real vmcore of a filled guest (default kernel 6.12; 8-18 min under TCG)")
    p.add_argument("--mdf-threads", default="", help="also makedumpfile --num-threads N rows (comma-separated)")
    p.add_argument("--results", metavar="PATH", nargs="?", const=os.path.join(HERE, "RESULTS.md"),
                   help="also write the whole report (targets, time split, bounds) there (default bench/RESULTS.md)")
    args = p.parse_args(argv)
    command = " ".join(["python3 -m bench.run"] + list(sys.argv[1:] if argv is None else argv))
    mdf_threads = [int(t) for t in args.mdf_threads.split(",") if t]
    # an installed fastdump (and the capture initrd, fastdump.deploy.initrd) has its .pyc files:
    # compiling the sources on every run (PYTHONDONTWRITEBYTECODE) is not part of a dump
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPATH"] = TOP + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(CACHE, "pyc"))
    subprocess.run([sys.executable, "-m", "fastdump", "--help"], stdout=subprocess.DEVNULL, check=False)
    cores = len(os.sched_getaffinity(0))
    reps = args.reps or (1 if args.quick else 3)
    threads = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, 2, cores, 4, 8})
    if args.quick and not args.threads:
        threads = sorted({1, cores})
    notes = []
    log = lambda m: (notes.append(m), print(f"bench: {m}", file=sys.stderr))  # noqa: E731
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.scratch, exist_ok=True)
    if args.make_big_real and not glob.glob(os.path.join(BIG_REAL, args.make_big_real, "vmcore.raw")):
        make_big_real(args.make_big_real, log)
    inputs = build_inputs(args.quick, args.inputs.split(",") if args.inputs else None)
    builds = makedumpfile_builds(log, fetch=not args.no_fetch)
    if not any(b["zstd"] for b in builds):
        log("no makedumpfile here has zstd: fastdump zstd is compared with makedumpfile -l (lzo)")
    results = {"command": command, "date": time.strftime("%Y-%m-%d"), "scratch": args.scratch,
               "machine": {"cores": cores, "python": sys.version.split()[0], "os": os_name()}, "notes": notes,
               "makedumpfile": builds, "inputs": []}
    rng = random.Random(1)
    for inp in inputs:
        print(f"bench: {inp['name']}", file=sys.stderr)
        entry = dict(inp, runs={})
        cands = contenders(inp, builds, threads, args.quick, cores, mdf_threads)
        samples = {name: [] for name, *_ in cands}
        stored = {}         # name -> what its first run's dump stores, page by page
        sized = size_compared(cands)
        for rep in range(1 if inp["kind"] == "huge" else reps):
            order = list(cands)
            rng.shuffle(order)
            for name, group, make, meta in order:
                out = os.path.join(args.scratch, "out")
                for f in glob.glob(out + "*"):
                    os.unlink(f)
                r = timed(make(out), out)
                r.update(meta, group=group)
                if rep == 0 and r["ok"] and name in sized:
                    stored[name] = stored_pages(out)
                samples[name].append(r)
                if not r["ok"]:
                    log(f"{inp['name']}: {name} failed: {r['error']}")
        for name, runs in samples.items():
            ok = [r for r in runs if r["ok"]]
            if not ok:
                entry["runs"][name] = {"ok": False, "error": runs[0]["error"], **{k: runs[0][k] for k in
                                                                                  ("codec", "level", "threads", "group")}}
                continue
            med = {k: statistics.median(r[k] for r in ok) for k in ("wall", "cpu", "rss_kb", "bytes_out")}
            med.update({k: ok[0][k] for k in ("codec", "level", "threads", "group")}, ok=True, reps=len(ok))
            if all("phases" in r for r in ok):
                med["phases"] = {k: statistics.median(r["phases"][k] for r in ok) for k in ok[0]["phases"]}
                med.update({k: ok[0][k] for k in ("bytes_read", "pages_kept", "pages_scanned")})
            med["source_MBps"] = inp_bytes(inp) / med["wall"] / 1e6
            entry["runs"][name] = med
        entry["ceilings"] = ceilings(inp, cores)   # after the runs: the source as warm in the page cache as they had it
        derive(entry, cores, stored)
        results["inputs"].append(entry)
    for f in glob.glob(os.path.join(args.scratch, "out*")):
        os.unlink(f)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    md = markdown(results)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    plot(results, os.path.join(args.out, "throughput.png"), log)
    plot_cost_per_gib(results, os.path.join(args.out, "cost_per_gib.png"), log)
    if args.results:
        from bench.report import render
        with open(args.results, "w") as f:
            f.write(render(results))
    print(md)
    return 0


def os_name():
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        return fields.get("PRETTY_NAME", "").strip('"')
    except OSError:
        return ""


def inp_bytes(inp):
    from fastdump.sources.vmcore import ElfSource
    with ElfSource(inp["path"]) as s:
        return sum(e - a for a, e, _ in s.extents)


def size_compared(cands):
    """Names of the contenders whose output size is compared page for page: fastdump and
    makedumpfile rows at a codec and level both have (sparse-1T has none: its 70 million
    kept pages would cost the bench gigabytes and minutes for nothing)."""
    def key(meta):
        return meta["codec"], meta["level"]
    have = {g: {key(m) for _, grp, _, m in cands if grp.startswith(g)} for g in ("fastdump", "makedumpfile")}
    both = have["fastdump"] & have["makedumpfile"]
    return {name for name, grp, _, m in cands if grp != "cp" and key(m) in both}


def stored_pages(path):
    """(pfns, bytes each stores, file size) of a kdump dump: a page pointing at the
    shared zero block stores none of its own."""
    from array import array
    from fastdump.formats.kdump import KdumpReader
    with KdumpReader(path) as d:
        pfns = array("Q", d.pfns())
        descs = d.read_descriptors(0, len(pfns))
        zero = d.zero_page_offset()
        sizes = array("I", (0 if off == zero else size for off, size in zip(descs.offsets, descs.sizes)))
        return pfns, sizes, d.file_size


def same_pages_ratio(ours, theirs):
    """Our file's size over theirs, each without the pages only it stores (their data
    and descriptors): the comparison page for page, where two tools keep different
    page sets (makedumpfile releases disagree on partial and slab pages)."""
    def without(a, b):
        keep = set(b[0])
        only = [s for p, s in zip(a[0], a[1]) if p not in keep]
        return a[2] - sum(only) - 24 * len(only)
    base = without(theirs, ours)
    return round(without(ours, theirs) / base, 5) if base > 0 else None


def derive(entry, cores, stored=None):
    """Ratios against the baselines and thread scaling efficiency."""
    stored = stored or {}
    runs = entry["runs"]
    base = {}
    for name, r in runs.items():
        if r.get("ok") and (r["group"].startswith("makedumpfile") or name == "cp"):
            base[name] = r["wall"]
    for name, r in runs.items():
        if not r.get("ok") or r["group"] != "fastdump":
            continue
        r["speedup"] = {b: round(w / r["wall"], 2) for b, w in base.items()
                        if b == "cp" or runs[b]["level"] == r["level"]}
        r["size_vs"] = {b: round(r["bytes_out"] / runs[b]["bytes_out"], 5) for b in base
                        if b != "cp" and runs[b]["bytes_out"] and runs[b]["level"] == r["level"]
                        and runs[b]["codec"] == r["codec"]}
        pages = {b: same_pages_ratio(stored[name], stored[b]) for b in r["size_vs"] if name in stored and b in stored}
        r["size_vs_pages"] = {b: v for b, v in pages.items() if v is not None}
    one = next((r for n, r in runs.items() if r.get("ok") and r["group"] == "fastdump" and r["codec"] == "zstd"
                and r["level"] == 1 and r["threads"] == 1), None)
    if one:
        for r in runs.values():
            if r.get("ok") and r["group"] == "fastdump" and r["codec"] == "zstd" and r["level"] == 1:
                ideal = min(r["threads"], cores)
                r["thread_efficiency"] = round(one["wall"] / r["wall"] / ideal, 3)


def markdown(results):
    lines = [f"# fastdump bench ({results['machine']['cores']} cores)", ""]
    for note in results["notes"]:
        lines.append(f"- {note}")
    for b in results["makedumpfile"]:
        lines.append(f"- {b['name']} {b['version']}: lzo {'yes' if b['lzo'] else 'no'}, zstd {'yes' if b['zstd'] else 'no'}")
    for inp in results["inputs"]:
        c = inp["ceilings"]
        lines += ["", f"## {inp['name']} ({inp['ram'] / GiB:.0f} GiB RAM)", "",
                  "ceilings: " + ", ".join(f"{k} {v['ceiling_MBps']:.0f} MB/s ({v['per_core_MBps']:.0f}/core)"
                                           for k, v in c["codec"].items()) + f", read {c['read_MBps']:.0f} MB/s",
                  "", "| contender | wall s | cpu s | peak RSS MiB | output MB | source MB/s | vs baselines | thread eff. |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in sorted(inp["runs"].items(), key=lambda kv: kv[1].get("wall", 1e9)):
            if not r.get("ok"):
                lines.append(f"| {name} | failed: {r.get('error', '')[:60]} | | | | | | |")
                continue
            vs = ", ".join(f"{k} {v}x" for k, v in r.get("speedup", {}).items())
            lines.append(f"| {name} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['rss_kb'] / 1024:.0f} | "
                         f"{r['bytes_out'] / 1e6:.1f} | {r['source_MBps']:.0f} | {vs} | "
                         f"{r.get('thread_efficiency', '')} |")
    return "\n".join(lines) + "\n"


def plot(results, path, log):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no plot (pip install matplotlib)")
        return
    dense = [i for i in results["inputs"] if i["kind"] == "dense"]
    if not dense:
        return
    inp = dense[0]
    pts = sorted((r["threads"], r["source_MBps"]) for r in inp["runs"].values()
                 if r.get("ok") and r["group"] == "fastdump" and r["codec"] == "zstd" and r["level"] == 1)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if pts:
        ax.plot([t for t, _ in pts], [v for _, v in pts], "o-", label="fastdump zstd -d 1")
    ceil = inp["ceilings"]["codec"]["zstd"]["per_core_MBps"]
    cores = results["machine"]["cores"]
    xs = sorted({t for t, _ in pts} | {1})
    ax.plot(xs, [ceil * min(t, cores) for t in xs], "--", label="zstd ceiling (per-core x cores)")
    for name, r in inp["runs"].items():
        if r.get("ok") and r["group"] != "fastdump":
            ax.axhline(r["source_MBps"], linestyle=":", color="gray")
            ax.text(xs[-1], r["source_MBps"], f" {name}", va="center", fontsize=8)
    ax.set_xlabel("threads")
    ax.set_ylabel("source MB/s")
    ax.set_title(f"{inp['name']}: throughput vs threads")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def cost_per_gib(results):
    """{series: [(RAM GiB, wall seconds per GiB of RAM, input kind)]} of the -d 31 rows: fastdump
    per codec at the machine's thread count, makedumpfile per build and flag."""
    cores = results["machine"]["cores"]
    series = {}
    for inp in results["inputs"]:
        gib = inp["ram"] / GiB
        for name, r in inp["runs"].items():
            if not r.get("ok") or r["level"] != 31:
                continue
            if r["group"] == "fastdump":
                if r["threads"] != cores:
                    continue
                label = f"fastdump {r['codec']}"
            else:
                label = name.replace(" -d31", "")
            series.setdefault(label, []).append((gib, r["wall"] / gib, inp["kind"]))
    return {k: sorted(v) for k, v in sorted(series.items())}


def plot_cost_per_gib(results, path, log):
    """Seconds per GiB of RAM at -d 31 against RAM size, log-log, every contender of the run.
    Inputs whose zero pages are file holes (sparse-*) have hollow markers: fastdump skips the
    holes, /proc/vmcore has none."""
    series = cost_per_gib(results)
    if not any(len(v) > 1 for v in series.values()):
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no plot (pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, pts in series.items():
        style = "-" if label.startswith("fastdump") else "--"
        line, = ax.plot([g for g, _, _ in pts], [c for _, c, _ in pts], style, label=label)
        for g, c, kind in pts:
            hollow = kind in ("sparse", "huge")
            ax.plot([g], [c], "o", color=line.get_color(), markerfacecolor="none" if hollow else line.get_color())
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("RAM of the dumped machine, GiB (hollow: zero pages are file holes)")
    ax.set_ylabel("wall seconds per GiB of RAM, -d 31")
    ax.set_title("cost per GiB at -d 31")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
