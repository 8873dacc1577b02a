"""Run the real kdump flow for Debian kernels and keep the results as fixtures.

    python -m tests.e2e.run                      # 6.1 and 6.12
    python -m tests.e2e.run --kernels all        # 5.10, 6.1, 6.12, sid (7.x)
    python -m tests.e2e.run --kernels 6.1 --no-fastdump --levels 31,1

Per kernel KEY the results land in .cache/e2e/KEY/ (FASTDUMP_E2E_CACHE overrides
.cache/e2e): vmcore.raw (the raw /proc/vmcore copy), fastdump-*.kdump,
makedumpfile-*.kdump, first/ (meminfo, zoneinfo, buddyinfo of the first kernel,
workload.json with the marker counts), serial.log, manifest.json (timings,
exit statuses, peak memory, initrd size).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from . import kernels
from .paths import CACHE, HERE, REPO, StepError, run
from .qemu import Phase, base_cmd, choose_accel, log_tail, run_guest

GUEST = os.path.join(HERE, "guest")
MODULES = "virtio_pci,virtio_blk,ext4"
OPTIONAL_MODULES = "crc32c_generic,crc32c_intel"
CLASSES_MIB = {"user": 96, "shmem": 32, "tmpfs": 64, "cache": 64, "free": 256, "zero": 32}


def fastdump_cli_works():
    r = subprocess.run([sys.executable, "-m", "fastdump", "--help"], cwd=REPO,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0


def build_initrd(info, out, with_fastdump, log=print):
    cmd = [sys.executable, "-m", "fastdump.deploy.initrd", "-o", out, "--json",
           "--kmod-root", info["root"], "--kver", info["release"],
           "--module", MODULES, "--module-optional", OPTIONAL_MODULES,
           "--kexec", "auto", "--makedumpfile", os.environ.get("FASTDUMP_E2E_MAKEDUMPFILE", "auto"),
           "--python-module", "subprocess,json,mmap,resource",
           "--add", os.path.join(GUEST, "first-init.sh") + ":/etc/fastdump/first.sh"]
    if not with_fastdump:
        cmd += ["--no-fastdump", "--with-python"]
    r = run(cmd, timeout=600, what="building the initrd", cwd=REPO)
    notes = json.loads(r.stdout[r.stdout.index("{"):])
    log("e2e: initrd %s: %.1f MiB (%d files)" % (out, notes["size"] / 2**20, notes["files"]))
    return notes


def make_ext4(image, label, staging, size_mib):
    if os.path.exists(image):
        os.unlink(image)
    with open(image, "wb") as f:
        f.truncate(size_mib << 20)
    run(["mkfs.ext4", "-F", "-q", "-L", label, "-E", "lazy_itable_init=0,lazy_journal_init=0",
         "-d", staging, image], timeout=300, what="mkfs.ext4 " + label)


def debugfs_ls(image, path):
    r = run(["debugfs", "-R", "ls -p " + path, image], timeout=120, what="debugfs ls")
    names = []
    for line in r.stdout.splitlines():
        parts = line.strip().split("/")  # /inode/mode/uid/gid/name/size/
        if len(parts) >= 6 and parts[5] not in ("", ".", "..", "lost+found"):
            names.append((parts[5], parts[2].startswith("04")))  # (name, is_dir)
    return names


def extract(image, dest):
    """Copy every file of the ext4 image to dest with debugfs (no mount needed)."""
    os.makedirs(dest, exist_ok=True)
    for name, is_dir in debugfs_ls(image, "/"):
        if is_dir:
            run(["debugfs", "-R", "rdump /%s %s" % (name, dest), image], timeout=600,
                what="debugfs rdump " + name)
        else:
            target = os.path.join(dest, name)
            if os.path.exists(target):
                os.unlink(target)
            run(["debugfs", "-R", "dump /%s %s" % (name, target), image], timeout=1200,
                what="debugfs dump " + name)


def runs_for(levels, with_fastdump, fd_compress, md_compress, extra_runs=()):
    lines = ["vmcore.raw|dd if=@VMCORE of=@OUT bs=1M"]
    for lvl in levels:
        if with_fastdump:
            lines.append("fastdump-d%d.kdump|fastdump -d %d %s --stats-json /out/e2e/stats-fastdump-d%d.json @VMCORE @OUT"
                         % (lvl, lvl, fd_compress, lvl))
        lines.append("makedumpfile-d%d.kdump|makedumpfile -d %d %s @VMCORE @OUT"
                     % (lvl, lvl, md_compress))
    lines.extend(extra_runs)
    return lines


def boot_guest(key, cmd, serial, phases, fails, timeout, log):
    """Run the guest; boot once more if the first kernel died before its init ran.

    Under software emulation a kernel can oops while it boots (seen: int3 in
    sched_clock_cpu while 6.12 patches its text on two vCPUs), before anything of the test
    has happened and with both disks untouched: that says nothing about fastdump, so it
    gets one more boot.  Any later failure, and a second early one, is final."""
    try:
        return run_guest(cmd, serial, phases, fails, total_timeout=timeout)
    except StepError as e:
        if e.phase != phases[0].name:
            raise
        shutil.copy(serial, serial + ".first-boot") if os.path.exists(serial) else None
        log("e2e: %s: the first kernel died before its init ran (%s); booting once more"
            % (key, str(e).splitlines()[0]))
    return run_guest(cmd, serial, phases, fails, total_timeout=timeout)


def run_kernel(key, with_fastdump="auto", levels=(31,), mem_mib=2048, crashkernel="256M",
               fd_compress="-z", md_compress="-l", log=print, timeout=3600, extra_runs=(),
               classes_mib=None):
    """The whole flow for one kernel; returns the manifest dict.  ``classes_mib``
    overrides some of the workload's sizes (a big guest filled with user data and cache)."""
    classes_mib = dict(CLASSES_MIB, **(classes_mib or {}))
    t_start = time.monotonic()
    timings = {}
    if with_fastdump == "auto":
        with_fastdump = fastdump_cli_works()
        log("e2e: fastdump CLI %s" % ("works: running it in the capture kernel" if with_fastdump
                                      else "not usable yet: raw copy and makedumpfile only"))
    info = kernels.fetch(key, log=log)
    timings["fetch"] = round(time.monotonic() - t_start, 1)
    outdir = os.path.join(CACHE, key)
    work = os.path.join(CACHE, "work", key)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    os.makedirs(outdir, exist_ok=True)

    t = time.monotonic()
    initrd = os.path.join(work, "initrd.img")
    notes = build_initrd(info, initrd, with_fastdump, log=log)
    timings["initrd"] = round(time.monotonic() - t, 1)

    # work disk: kernel + initrd for kexec -p, the workload, room for the cache file
    stage = os.path.join(work, "work-stage")
    os.makedirs(os.path.join(stage, "boot"))
    os.makedirs(os.path.join(stage, "e2e"))
    shutil.copy(info["vmlinuz"], os.path.join(stage, "boot", "vmlinuz"))
    shutil.copy(initrd, os.path.join(stage, "boot", "initrd.img"))
    for n in ("first.sh", "workload.py", "arm.sh"):
        shutil.copy(os.path.join(GUEST, n), os.path.join(stage, "e2e", n))
    cfg = {"classes_mib": classes_mib, "record_dir": "/out/first", "tmpfs_dir": "/mnt/tmpfs",
           "cache_file": "/work/cache.bin", "arm_script": "/work/e2e/arm.sh"}
    with open(os.path.join(stage, "e2e", "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    work_mib = 64 + classes_mib["cache"] * 2 + (os.path.getsize(initrd) >> 19) + 32
    make_ext4(os.path.join(work, "work.img"), "fdwork", stage, work_mib)

    # out disk: the capture job
    ostage = os.path.join(work, "out-stage")
    os.makedirs(os.path.join(ostage, "e2e"))
    shutil.copy(os.path.join(GUEST, "job.sh"), os.path.join(ostage, "fastdump-job.sh"))
    for n in ("measure.py", "mmapprobe.py"):
        shutil.copy(os.path.join(GUEST, n), os.path.join(ostage, "e2e", n))
    runs = runs_for(levels, with_fastdump, fd_compress, md_compress, extra_runs)
    with open(os.path.join(ostage, "e2e", "runs.txt"), "w") as f:
        f.write("\n".join(runs) + "\n")
    out_img = os.path.join(work, "out.img")
    make_ext4(out_img, "fdout", ostage, mem_mib * 2 + 1024 + 512 * len(runs))

    accel = choose_accel(key, info["vmlinuz"], initrd, log=log)
    append = ("console=ttyS0 crashkernel=%s panic=1 fastdump.out=LABEL=fdout fastdump.fstype=ext4"
              % crashkernel)
    cmd = base_cmd(info["vmlinuz"], initrd, append, mem_mib, accel)
    cmd += ["-drive", "file=%s,format=raw,if=virtio,cache=unsafe" % os.path.join(work, "work.img"),
            "-drive", "file=%s,format=raw,if=virtio,cache=unsafe" % out_img]
    serial = os.path.join(work, "serial.log")
    phases = [
        Phase("first_kernel_up", "e2e-first: kernel", 300),
        Phase("markers_written", "e2e-workload: markers written", 900),
        Phase("kexec_loaded", "e2e-workload: capture kernel loaded", 300),
        Phase("crash", "e2e-workload: CRASHING", 120),
        Phase("capture_kernel_up", "e2e-job: capture kernel", 300),
    ]
    for line in runs:
        name = line.split("|")[0]
        phases.append(Phase("done_" + name, "e2e-job: done " + name, 2400))
    phases.append(Phase("job_done", "e2e-job: DONE", 300))
    fails = [("e2e-arm: kexec -p failed", "kexec -p refused the capture kernel"),
             ("ARM FAILED", "arming kdump failed"),
             ("e2e: work disk", "the first kernel did not find its work disk"),
             ("e2e: out disk", "a kernel did not find the out disk"),
             ("still alive after sysrq-c", "sysrq-c did not crash the kernel"),
             ("Rebooting in 1 seconds", "the kernel panicked without reaching the capture kernel"),
             ("fastdump-init: device", "the capture kernel did not find the out disk")]
    log("e2e: %s: booting %s under %s (serial log %s)" % (key, info["release"], accel, serial))
    t = time.monotonic()
    try:
        seen = boot_guest(key, cmd, serial, phases, fails, timeout, log)
    finally:
        shutil.copy(serial, os.path.join(outdir, "serial.log")) if os.path.exists(serial) else None
    timings["guest"] = round(time.monotonic() - t, 1)
    timings["phases"] = seen

    t = time.monotonic()
    for name in os.listdir(outdir):
        if name not in ("serial.log",):
            p = os.path.join(outdir, name)
            shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
    extract(out_img, outdir)
    timings["extract"] = round(time.monotonic() - t, 1)
    os.unlink(out_img)

    results = {}
    for line in runs:
        name = line.split("|")[0]
        mp = os.path.join(outdir, "e2e", "measure.%s.json" % name)
        if os.path.exists(mp):
            with open(mp) as f:
                results[name] = json.load(f)
        else:
            results[name] = {"rc": None}
        results[name]["command"] = line.split("|", 1)[1]
        if os.path.exists(os.path.join(outdir, name)):
            results[name]["size"] = os.path.getsize(os.path.join(outdir, name))
    workload = {}
    wp = os.path.join(outdir, "first", "workload.json")
    if os.path.exists(wp):
        with open(wp) as f:
            workload = json.load(f)
    manifest = {"key": key, "kernel": info, "accel": accel, "mem_mib": mem_mib,
                "crashkernel": crashkernel, "with_fastdump": with_fastdump,
                "initrd": {k: notes.get(k) for k in ("size", "uncompressed_size", "files",
                                                     "modules", "fastdump")},
                "timings": timings, "runs": results, "workload": workload,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    timings["total"] = round(time.monotonic() - t_start, 1)
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    bad = [n for n, r in results.items() if r.get("rc") != 0]
    if "vmcore.raw" in bad:
        raise StepError("raw copy of /proc/vmcore failed: %s\n%s"
                        % (results["vmcore.raw"], log_tail(os.path.join(outdir, "serial.log"))))
    return manifest


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tests.e2e.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernels", default=",".join(kernels.DEFAULT_KERNELS),
                   help="comma list of %s, or 'all'" % ", ".join(kernels.KERNELS))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fastdump", dest="fastdump", action="store_const", const=True, default="auto",
                   help="run fastdump in the capture kernel (default: if its CLI works)")
    g.add_argument("--no-fastdump", dest="fastdump", action="store_const", const=False)
    p.add_argument("--levels", default="1,31", help="dump levels, comma list (default 1,31)")
    p.add_argument("--mem", type=int, default=2048, help="guest MiB (default 2048)")
    p.add_argument("--crashkernel", default="256M")
    p.add_argument("--classes-mib", default="", metavar="CLASS=MIB,...",
                   help="workload sizes to override, e.g. user=6144,cache=5120 (default %s)"
                        % ",".join("%s=%d" % kv for kv in CLASSES_MIB.items()))
    p.add_argument("--fastdump-args", "--fastdump-compress", dest="fastdump_compress", default="-z",
                   help="fastdump options besides -d (default -z), e.g. '-z --non-mmap'")
    p.add_argument("--makedumpfile-compress", default="-l",
                   help="makedumpfile compression flag (Debian 12's has -c/-l, no -z)")
    p.add_argument("--extra-run", action="append", default=[], metavar="NAME|COMMAND",
                   help="one more capture-kernel step (@VMCORE, @OUT are substituted); e.g. "
                        "'mmapprobe.txt|fdpython /out/e2e/mmapprobe.py @VMCORE'")
    a = p.parse_args(argv)
    sizes = {}
    for item in filter(None, a.classes_mib.split(",")):
        name, _, mib = item.partition("=")
        if name not in CLASSES_MIB or not mib.isdigit():
            p.error("--classes-mib: %r is not CLASS=MIB with CLASS one of %s" % (item, ", ".join(CLASSES_MIB)))
        sizes[name] = int(mib)
    keys = list(kernels.KERNELS) if a.kernels == "all" else [k for k in a.kernels.split(",") if k]
    failed = []
    summary = {}
    for key in keys:
        t = time.monotonic()
        try:
            m = run_kernel(key, a.fastdump, [int(x) for x in a.levels.split(",")], a.mem,
                           a.crashkernel, a.fastdump_compress, a.makedumpfile_compress,
                           extra_runs=a.extra_run, classes_mib=sizes)
            summary[key] = {"seconds": round(time.monotonic() - t, 1), "timings": m["timings"],
                            "runs": {n: {k: r.get(k) for k in ("rc", "seconds", "maxrss_kib", "size")}
                                     for n, r in m["runs"].items()}}
            print("e2e: %s OK in %.0f s: %s" % (key, time.monotonic() - t, json.dumps(summary[key])))
        except (StepError, kernels.FetchError) as e:
            failed.append(key)
            print("e2e: %s FAILED: %s" % (key, e), file=sys.stderr)
    print(json.dumps(summary, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
