"""First-kernel workload: fill memory with class-marked pages, arm kdump, crash.

Runs inside the guest under the packed interpreter (stdlib only).  Every marker
page is the tag ``FDMARK:<class>:<index>:`` (see tests/e2e/markers.py) repeated
over the whole page, so the host can count marker pages per class in any dump.

Classes:
  user   private anonymous memory (MAP_PRIVATE|MAP_ANONYMOUS) held by this
         process until the crash                                   (-d 8 drops)
  shmem  shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS): shmem page cache,
         mapped                                                    (-d 2 drops, -d 8 keeps)
  tmpfs  a kept tmpfs file, not mapped                             (-d 2 drops, -d 8 keeps)
  cache  a clean ext4 page-cache file: written, dropped, read back (-d 2 drops)
  free   a tmpfs file deleted after `kexec -p`, so its pages are free (-d 16 drops)
  zero   private anonymous pages that hold zeros (not markable; zero pages, -d 1)

Python's ``mmap.mmap(-1, n)`` maps MAP_SHARED: that is shmem, not anonymous
memory, so the user class asks for MAP_PRIVATE explicitly.

Order matters (Debian kernels zero pages on allocation and reuse freed pages
first): write everything, load the capture kernel, then free the "free" class,
then crash without allocating much (a few pages per CPU, freed again at once so that every
CPU's per-CPU free lists hold pages at the crash).
"""

import json
import mmap
import os
import subprocess
import sys
import time

PAGE = 4096
PCP_REFILL_PAGES = 64       # per CPU, freed just before the crash (refill_per_cpu_lists)


def page_of(cls, idx):
    tag = b"FDMARK:%s:%08d:" % (cls.encode(), idx)
    return (tag * (PAGE // len(tag) + 1))[:PAGE]


def log(msg):
    print("e2e-workload: %s" % msg, flush=True)


def crash_marker():
    """Say "CRASHING" where the host is sure to see it before the panic.

    A user write to the serial console sits in the tty's transmit buffer, and sysrq-c can come
    before the UART has sent it (seen under TCG on a loaded host): the host then misses the
    phase although the crash happened.  Wait for the tty to drain, and say it through the
    kernel log too, which the panic path flushes to the console."""
    log("CRASHING")
    try:
        import termios   # not packed into every initrd: the kernel-log line below suffices
    except ImportError:
        termios = None
    if termios is not None:
        try:
            termios.tcdrain(sys.stdout.fileno())
        except (OSError, termios.error):
            pass
    try:
        with open("/dev/kmsg", "w") as f:
            f.write("e2e-workload: CRASHING\n")
    except OSError:
        pass
    time.sleep(0.5)


def refill_per_cpu_lists(pages=PCP_REFILL_PAGES):
    """Leave freed pages on every CPU's per-CPU free lists just before the crash.

    The pages of the deleted "free" files reach those lists, but the kernel may drain them
    again (compaction drains the lists of the CPU it runs on) in the half second the crash
    marker waits: one CI guest crashed with every list empty, and the host's check of the
    per-CPU walk (tests/e2e/test_kernel_types_real.py) then had nothing to check.  On each
    CPU in turn, touch a few private anonymous pages and unmap them: order-0 pages freed by a
    task go to the lists of the CPU it runs on."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return 0
    done = 0
    for cpu in cpus:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            continue
        m = mmap.mmap(-1, pages * PAGE, flags=mmap.MAP_PRIVATE)
        for i in range(pages):
            m[i * PAGE] = 0x5A
        m.close()
        done += 1
    return done


def fill_file(path, cls, npages, chunk=256):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for start in range(0, npages, chunk):
            n = min(chunk, npages - start)
            os.write(fd, b"".join(page_of(cls, start + i) for i in range(n)))
    finally:
        os.close(fd)


def read_all(path):
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass


def snapshot(outdir, tag):
    for name in ("meminfo", "zoneinfo", "buddyinfo", "vmstat", "pagetypeinfo"):
        try:
            with open("/proc/" + name) as f:
                data = f.read()
        except OSError:
            continue
        with open(os.path.join(outdir, "%s.%s" % (name, tag)), "w") as f:
            f.write(data)


def main():
    cfg_path = sys.argv[1]
    with open(cfg_path) as f:
        cfg = json.load(f)
    mib = cfg["classes_mib"]
    outdir = cfg["record_dir"]
    os.makedirs(outdir, exist_ok=True)
    t0 = time.monotonic()
    counts = {}

    snapshot(outdir, "boot")

    # user: private anonymous memory, held by this process
    n = mib.get("user", 0) * 256
    user = mmap.mmap(-1, max(n, 1) * PAGE, flags=mmap.MAP_PRIVATE)
    for i in range(n):
        user[i * PAGE:(i + 1) * PAGE] = page_of("user", i)
    counts["user"] = n

    # shmem: shared anonymous memory (shmem page cache, mapped by this process)
    n = mib.get("shmem", 0) * 256
    shmem = mmap.mmap(-1, max(n, 1) * PAGE, flags=mmap.MAP_SHARED)
    for i in range(n):
        shmem[i * PAGE:(i + 1) * PAGE] = page_of("shmem", i)
    counts["shmem"] = n

    # zero: private anonymous pages that are touched and hold zeros
    nz = mib.get("zero", 0) * 256
    zero = mmap.mmap(-1, max(nz, 1) * PAGE, flags=mmap.MAP_PRIVATE)
    for i in range(nz):
        zero[i * PAGE] = 1
        zero[i * PAGE] = 0
    counts["zero"] = nz

    tmpdir = cfg["tmpfs_dir"]
    os.makedirs(tmpdir, exist_ok=True)
    n = mib.get("tmpfs", 0) * 256
    fill_file(os.path.join(tmpdir, "kept.bin"), "tmpfs", n)
    counts["tmpfs"] = n

    n = mib.get("free", 0) * 256
    free_files = []
    per = 4096  # 16 MiB files
    for start in range(0, n, per):
        p = os.path.join(tmpdir, "free-%06d.bin" % start)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for s in range(start, min(n, start + per), 256):
            os.write(fd, b"".join(page_of("free", i) for i in range(s, min(n, start + per, s + 256))))
        os.close(fd)
        free_files.append(p)
    counts["free"] = n

    # cache: write through write(), push to disk, drop, read back -> clean cache pages
    n = mib.get("cache", 0) * 256
    cpath = cfg["cache_file"]
    fill_file(cpath, "cache", n)
    fd = os.open(cpath, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    read_all(cpath)
    counts["cache"] = n
    log("markers written in %.1f s: %s" % (time.monotonic() - t0, counts))

    snapshot(outdir, "filled")
    with open(os.path.join(outdir, "workload.json"), "w") as f:
        json.dump({"counts": counts, "classes_mib": mib, "seconds": time.monotonic() - t0,
                   "pcp_refill_pages": PCP_REFILL_PAGES}, f)
    os.sync()

    # arm kdump (the shell helper also unmounts the record disk)
    t1 = time.monotonic()
    r = subprocess.run(["/bin/sh", cfg["arm_script"]])
    if r.returncode != 0:
        log("ARM FAILED (exit %d)" % r.returncode)
        return 1
    log("capture kernel loaded in %.1f s" % (time.monotonic() - t1))

    # free the "free" class last, then crash
    for p in free_files:
        os.remove(p)
    with open("/proc/buddyinfo") as f:
        sys.stdout.write("e2e-buddyinfo-after-free:\n" + f.read())
    crash_marker()
    with open("/proc/sys/kernel/sysrq", "w") as f:
        f.write("1")
    refill_per_cpu_lists()
    with open("/proc/sysrq-trigger", "w") as f:
        f.write("c")
    time.sleep(30)
    log("still alive after sysrq-c")
    return 1


if __name__ == "__main__":
    sys.exit(main())
