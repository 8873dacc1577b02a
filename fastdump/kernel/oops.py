"""What a crash was, from the kernel log: the panic line and a backtrace signature.

A fleet triages thousands of dumps by grouping those that crashed the same way.
The signature is the first few functions of the crash's call trace (offsets,
modules and unreliable ``?`` frames dropped, as they differ between builds),
so one bug on many machines gives one signature; without a trace it is the
panic line with its numbers masked.
"""

import hashlib
import re

_STAMP = re.compile(r"^\s*\[\s*\d+\.\d+\]\s?")
_PANIC = re.compile(r"Kernel panic - not syncing:")
_FIRST_SIGNS = re.compile(r"(BUG: |Oops: |kernel BUG at |general protection fault|Unable to handle kernel|"
                          r"WARNING: |Kernel panic - not syncing:)")
_FRAME = re.compile(r"^\s*(\?\s+)?([A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+")
_NUMBER = re.compile(r"0x[0-9a-fA-F]+|\d+")
#: frames every crash passes through: they tell nothing about which bug it was
_GENERIC = {"dump_stack", "dump_stack_lvl", "show_stack", "panic", "vpanic", "__warn", "report_bug",
            "handle_bug", "exc_invalid_op", "asm_exc_invalid_op", "die", "oops_end", "crash_kexec",
            "__crash_kexec", "show_trace_log_lvl", "show_regs"}
FRAMES = 5


def summarize(log):
    """{"panic": line, "frames": [...], "signature": short hash, "signature_text": ...}."""
    lines = [_STAMP.sub("", line).rstrip() for line in log.splitlines()]
    first = next((i for i, line in enumerate(lines) if _FIRST_SIGNS.search(line)), None)
    panic = next((line.strip() for line in reversed(lines) if _PANIC.search(line)), None)
    if panic is None and first is not None:
        panic = lines[first].strip()
    frames = _frames(lines, first or 0) if first is not None else []
    text = " | ".join(frames) if frames else _NUMBER.sub("N", panic or "")
    return {"panic": panic, "frames": frames, "signature_text": text,
            "signature": hashlib.sha1(text.encode()).hexdigest()[:12] if text else None}


def _frames(lines, start):
    """The first call trace at or after the first sign of trouble."""
    out, inside = [], False
    for line in lines[start:]:
        if "Call Trace:" in line:
            if out:
                break
            inside = True
            continue
        if not inside:
            continue
        m = _FRAME.match(line)
        if m:
            name = m.group(2)
            if not m.group(1) and name not in _GENERIC:
                out.append(name)
                if len(out) == FRAMES:
                    break
        elif not re.match(r"^\s*<\/?\w+>\s*$", line) and line.strip():
            if out:
                break
    return out
