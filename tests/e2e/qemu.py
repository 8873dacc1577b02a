"""Run a QEMU guest with a serial log and per-phase deadlines."""

import json
import os
import shutil
import subprocess
import time

from .paths import CACHE, StepError


def qemu_binary():
    q = shutil.which("qemu-system-x86_64")
    if not q:
        raise StepError("qemu-system-x86_64 not found (run .ci/setup-e2e)")
    return q


def log_tail(path, n=60):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return "(no serial log)"
    lines = data.decode("utf-8", "replace").replace("\r", "").splitlines()
    return "\n".join(lines[-n:])


def base_cmd(kernel, initrd, append, mem_mib, accel, smp=2):
    cmd = [qemu_binary(), "-nodefaults", "-display", "none", "-no-reboot",
           "-m", str(mem_mib), "-smp", str(smp),
           "-kernel", kernel, "-initrd", initrd, "-append", append,
           "-net", "none"]
    if accel == "kvm":
        cmd += ["-accel", "kvm", "-cpu", "host"]
    else:
        cmd += ["-accel", "tcg,thread=multi", "-cpu", "max,la57=off"]
    return cmd


class Phase:
    def __init__(self, name, pattern, timeout):
        self.name, self.pattern, self.timeout = name, pattern, timeout


def run_guest(cmd, serial_log, phases, fail_patterns=(), total_timeout=3600, exit_timeout=120):
    """Start QEMU and wait for each phase's pattern in the serial log in order.

    Returns {phase: seconds since start}.  Raises StepError naming the phase that
    did not arrive in time (with the serial log tail) or a fail pattern seen.
    """
    if os.path.exists(serial_log):
        os.unlink(serial_log)
    cmd = cmd + ["-serial", "file:" + serial_log]
    errlog = serial_log + ".qemu-stderr"
    t0 = time.monotonic()
    with open(errlog, "w") as err:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT)
    seen = {}
    idx = 0
    phase_start = t0
    try:
        while True:
            time.sleep(1)
            now = time.monotonic()
            text = ""
            try:
                with open(serial_log, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                pass
            for pat, why in fail_patterns:
                if pat in text:
                    time.sleep(2)
                    raise StepError("%s (serial log shows %r)\n--- serial log tail ---\n%s"
                                    % (why, pat, log_tail(serial_log)),
                                    phase=phases[idx].name if idx < len(phases) else None)
            while idx < len(phases) and phases[idx].pattern in text:
                seen[phases[idx].name] = round(now - t0, 1)
                idx += 1
                phase_start = now
            rc = p.poll()
            if rc is not None:
                if idx < len(phases):
                    with open(errlog) as f:
                        qerr = f.read()[-2000:]
                    raise StepError("QEMU exited (status %d) before phase %r (waiting for %r)\n"
                                    "--- qemu stderr ---\n%s\n--- serial log tail ---\n%s"
                                    % (rc, phases[idx].name, phases[idx].pattern, qerr,
                                       log_tail(serial_log)), phase=phases[idx].name)
                seen["exit"] = round(now - t0, 1)
                return seen
            if idx < len(phases):
                if now - phase_start > phases[idx].timeout:
                    raise StepError("phase %r: %r not seen within %d s\n--- serial log tail ---\n%s"
                                    % (phases[idx].name, phases[idx].pattern, phases[idx].timeout,
                                       log_tail(serial_log)), phase=phases[idx].name)
            elif now - phase_start > exit_timeout:
                raise StepError("QEMU did not power off within %d s after the last phase\n%s"
                                % (exit_timeout, log_tail(serial_log)))
            if now - t0 > total_timeout:
                raise StepError("guest run exceeded %d s\n%s" % (total_timeout, log_tail(serial_log)))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def choose_accel(key, kernel, initrd, log=print):
    """'kvm' if a KVM boot of this kernel reaches user space quickly, else 'tcg'.

    FASTDUMP_E2E_ACCEL=tcg|kvm forces a choice.  The probe result is cached.
    """
    forced = os.environ.get("FASTDUMP_E2E_ACCEL")
    if forced in ("tcg", "kvm"):
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    cache = os.path.join(CACHE, "accel-%s.json" % key)
    if os.path.exists(cache):
        with open(cache) as f:
            return json.load(f)["accel"]
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    probe_log = os.path.join(CACHE, "accel-probe-%s.log" % key)
    cmd = base_cmd(kernel, initrd, "console=ttyS0 panic=1 fastdump.final=poweroff", 512, "kvm")
    accel = "tcg"
    try:
        run_guest(cmd, probe_log, [Phase("userspace", "Run /init as init process", 45)],
                  total_timeout=60, exit_timeout=1)
        accel = "kvm"
    except StepError as e:
        first = str(e).splitlines()[0]
        if "did not power off" in first:
            accel = "kvm"  # reached user space; it waits for a disk we did not give it
        else:
            log("e2e: KVM probe failed (%s); using TCG" % first)
    with open(cache, "w") as f:
        json.dump({"accel": accel}, f)
    return accel
