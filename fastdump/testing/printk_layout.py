"""A generator plug-in that puts a kernel log with known messages into a synthetic vmcore.

It wraps another layout (default: the generator's plain page mix) and adds a
printk buffer in the kernel image, with the VMCOREINFO keys the real kernel
exports for it::

    layout = PrintkLayout(KernelLayout(encoding="6.12"), kind="lockless", messages=msgs)
    SyntheticVmcore(VmcoreSpec(ram_size=256 * MiB), layout=layout).write(path)
    layout.expected_dmesg()        # what a correct reader prints

Kinds:

* ``"lockless"`` (5.10+): descriptor ring, printk_info array and text data
  ring, filled by a simulation of the kernel's writer: descriptor ids start
  just below 2**62 and wrap, data positions start at -size and wrap, records
  whose text was overwritten become *reusable*, the tail moves when the
  descriptor ring is full, the last record is *committed* (still open for
  pr_cont), empty records are data-less, and an optional record being written
  at the crash stays *reserved*.  ``variant`` "5.10" (plain clear_seq, 40-byte
  desc ring), "6.1" (latched_seq, 48-byte desc ring) or "7.x" (as 6.1, and a
  block that exactly fits the end of the text ring stays there instead of
  moving to offset 0: the 2025 is_blk_wrapped() change; ``exact_fit``).
* ``"structured"`` (3.5-5.9): variable-length records in ``log_buf`` with
  dictionaries, 4-byte record alignment and the zero-length wrap marker,
  first/next/clear indexes as the kernel's log_store() leaves them.
  ``variant`` "3.5" names the struct ``log`` instead of ``printk_log``;
  ``printk_caller=True`` adds the caller_id field (CONFIG_PRINTK_CALLER).
* ``"plain"`` (3.4 and older): a character ring with log_end.

``dynamic=True`` addresses the buffers through the direct map (as after
``log_buf_len=`` on the command line) instead of the kernel image.
``tamper(layout)`` may corrupt the built buffers (``layout.buffers``) before
they are written; ``extra_keys`` add or override VMCOREINFO lines.
"""

import random
import struct
from dataclasses import dataclass, field

MiB = 1 << 20
KMAP = 0xFFFFFFFF80000000
PAGE_OFFSET = 0xFFFF888000000000
U64 = (1 << 64) - 1
ID_MASK = (1 << 62) - 1
RESERVED, COMMITTED, FINALIZED, REUSABLE = 0, 1, 2, 3
FAILED_LPOS, NO_LPOS = 0x1, 0x3

#: Where the log lives, as an offset from the start of the kernel image (phys).
REGION = 0x1C00000
REGION_SIZE = 0x400000


@dataclass
class Msg:
    """One printk record.  ``cont``: pieces pr_cont() appended to the same record."""
    text: bytes
    ts_nsec: int
    caller_id: int = 1                # T1; CPU context: 0x80000000 | cpu
    level: int = 6
    facility: int = 0
    cont: tuple = ()
    dict: bytes = b""                 # structured log: "SUBSYSTEM=...\\0DEVICE=..."
    subsystem: bytes = b""            # lockless: dev_info
    device: bytes = b""
    flags: int = 0

    @property
    def full_text(self):
        return bytes(self.text) + b"".join(self.cont)


def _b(x):
    return x.encode() if isinstance(x, str) else bytes(x)


def default_messages(n=120, seed=1):
    """A boot log: banner, multi-line, odd bytes, empty and continued records, CPU-context
    callers, and the crash.  Deterministic from ``seed``."""
    rng = random.Random(seed)
    ts = 0
    msgs = [Msg(b"Linux version 6.1.0-fastdump-synthetic (fastdump@test) #1 SMP PREEMPT_DYNAMIC", 0, 0),
            Msg(b"Command line: console=ttyS0 crashkernel=256M", 0, 0)]
    words = ["pci", "usb", "ext4", "eth0", "ACPI", "memory", "clocksource", "NET", "audit", "zram"]
    for i in range(n):
        ts += rng.randint(1, 40_000_000)
        w = rng.choice(words)
        kind = i % 11
        if kind == 3:
            msgs.append(Msg(b"Call Trace:\n <TASK>\n dump_stack+0x10/0x20\n </TASK>", ts, rng.randint(1, 999)))
        elif kind == 5:
            msgs.append(Msg(b"odd bytes: tab\there, bell\x07, utf8 \xc3\xa9, nul\x00end", ts, 0x80000000 | rng.randint(0, 7)))
        elif kind == 7:
            msgs.append(Msg(b"", ts, rng.randint(1, 999)))          # empty record
        elif kind == 9:
            msgs.append(Msg(b"CPU features:", ts, 0, cont=(b" fpu", b" sse2", b" avx2")))
        else:
            pad = b"x" * rng.randint(0, 90)
            msgs.append(Msg(b"%s: message %d seed %d %s" % (w.encode(), i, seed, pad), ts,
                            rng.choice([1, 42, 1234, 0x80000001]),
                            subsystem=b"pci" if w == "pci" else b"",
                            device=b"+pci:0000:00:0%d.0" % (i % 8) if w == "pci" else b"",
                            dict=b"SUBSYSTEM=pci\0DEVICE=+pci:0000:00:01.0" if w == "pci" else b""))
    ts += 1_000_000_000
    msgs.append(Msg(b"sysrq: Trigger a crash", ts, 900))
    msgs.append(Msg(b"Kernel panic - not syncing: sysrq triggered crash", ts + 1000, 900))
    return msgs


def reference_line(ts_nsec, text, caller_id=None):
    """An independent rendering of one record (as makedumpfile prints it)."""
    prefix = "[%5d.%06d] " % (ts_nsec // 10**9, ts_nsec % 10**9 // 1000)
    if caller_id is not None:
        prefix += "[%8s] " % (("C%d" if caller_id & 0x80000000 else "T%d") % (caller_id & 0x7FFFFFFF))
    return prefix + reference_text(text, len(prefix)) + "\n"


def reference_text(text, indent=0):
    body = ""
    for c in text:
        if c == 10:
            body += "\n" + " " * indent
        elif 32 <= c < 127 or c in (9, 11, 12, 13):
            body += chr(c)
        else:
            body += "\\x%02x" % c
    return body


@dataclass
class _Rec:
    msg: Msg
    seq: int
    id: int = 0                # lockless: unbounded id (stored & ID_MASK)
    begin: int = NO_LPOS
    next: int = NO_LPOS
    state: int = FINALIZED
    idx: int = 0               # structured: index in log_buf
    live: bool = True
    extra: dict = field(default_factory=dict)


class PrintkLayout:
    def __init__(self, base=None, *, kind="lockless", messages=None, variant=None, count_bits=5,
                 size_bits=11, log_buf_len=4096, dynamic=False, clear_at=None, in_flight=True,
                 printk_caller=False, exact_fit=None, seed=1, tamper=None, extra_keys=(), drop_keys=()):
        if kind not in ("lockless", "structured", "plain"):
            raise ValueError(f"unknown printk kind {kind!r}")
        self.base = base
        self.kind = kind
        self.messages = list(messages) if messages is not None else default_messages(seed=seed)
        self.variant = variant or {"lockless": "6.1", "structured": "5.4", "plain": "3.4"}[kind]
        self.count_bits, self.size_bits = count_bits, size_bits
        self.log_buf_len = log_buf_len
        self.dynamic = dynamic
        self.clear_at = clear_at
        self.in_flight = in_flight
        self.printk_caller = printk_caller
        #: A text block that exactly reaches the end of the ring stays there (kernels with
        #: is_blk_wrapped(), 2025); before, such a block was moved to offset 0.
        self.exact_fit = (self.variant == "7.x") if exact_fit is None else exact_fit
        self.seed = seed
        self.tamper = tamper
        self.extra_keys = list(extra_keys)
        self.drop_keys = set(drop_keys)
        self.kernel_text = (16 * MiB, 48 * MiB)
        self.phys_base = None
        self._built = False

    # -- generator plug-in ------------------------------------------------------
    def bind(self, spec, ram_ranges, generator=None):
        if self.base is None:
            from .generator import _DefaultClasses
            self.base = _DefaultClasses(spec, ram_ranges)
        if hasattr(self.base, "bind"):
            self.base.bind(spec, ram_ranges, generator)
        self.kernel_text = tuple(getattr(self.base, "kernel_text", None) or spec.kernel_text)
        if generator is not None and hasattr(generator, "phys_base"):
            self.phys_base = generator.phys_base
        if self.kernel_text[0] + REGION + REGION_SIZE > self.kernel_text[1]:
            raise ValueError("kernel_text is too small for the printk buffers (needs 32 MiB)")

    @property
    def suppress_keys(self):
        return set(getattr(self.base, "suppress_keys", ())) | self.drop_keys

    def class_runs(self):
        return self.base.class_runs()

    def metadata_writes(self):
        self._build()
        return list(self.base.metadata_writes()) + self._writes()

    def vmcoreinfo_lines(self):
        self._build()
        lines = list(self.base.vmcoreinfo_lines()) + self._lines
        over = {l.split("=", 1)[0]: l for l in self.extra_keys}
        out = [over.pop(l.split("=", 1)[0], l) for l in lines
               if l.split("=", 1)[0] not in self.drop_keys]
        return out + list(over.values())

    def __getattr__(self, name):          # truth queries of the base layout (dropped_pfns, ...)
        if name.startswith("_") or name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    # -- addresses ----------------------------------------------------------------
    def _pa(self, off):
        return self.kernel_text[0] + off

    def va_image(self, pa):
        pb = self.phys_base if self.phys_base is not None else self.kernel_text[0] - 0x1000000
        return KMAP + pa - pb

    def va_direct(self, pa):
        return PAGE_OFFSET + pa

    def _va(self, pa):
        return self.va_direct(pa) if self.dynamic else self.va_image(pa)

    # -- building ------------------------------------------------------------------
    def _build(self):
        if self._built:
            return
        self._built = True
        self.rng = random.Random(self.seed * 31 + 5)
        self.vars_pa = self._pa(REGION)                 # pointer/int variables
        self.static_pa = self._pa(REGION + 0x200)       # printk_rb_static / __log_buf header
        self.arrays_pa = self._pa(REGION + (0x200000 if self.dynamic else 0x1000))
        self.vars = bytearray(0x200)
        self.buffers = {}
        self._lines = []
        if self.kind == "lockless":
            self._build_lockless()
        elif self.kind == "structured":
            self._build_structured()
        else:
            self._build_plain()
        if self.tamper is not None:
            self.tamper(self)

    def _writes(self):
        out = [(self.vars_pa, bytes(self.vars))]
        for pa, buf in self.buffers.values():
            out.append((pa, bytes(buf)))
        return out

    def _garbage(self, n):
        """Stale bytes: what an old log leaves behind in a ring."""
        line = b"stale stale stale old log text \x00\xff "
        return bytearray((line * (n // len(line) + 1))[:n])

    # 5.10+ --------------------------------------------------------------------------
    def _build_lockless(self):
        v510 = self.variant == "5.10"
        count, dsize = 1 << self.count_bits, 1 << self.size_bits
        sz_desc, sz_info = 24, 88
        sz_dring = 40 if v510 else 48
        sz_rb = sz_dring + 32 + 8
        descs = bytearray(count * sz_desc)
        infos = bytearray(count * sz_info)
        data = self._garbage(dsize)
        if (count * (sz_desc + sz_info) + dsize + 0x3000 > REGION_SIZE - 0x200000):
            raise ValueError("printk ring too large for the synthetic kernel image")
        descs_pa = self.arrays_pa
        infos_pa = descs_pa + _round(len(descs), 4096)
        data_pa = infos_pa + _round(len(infos), 4096)

        desc0 = (-(count + 1)) & ID_MASK                  # DESC0_ID
        first = desc0 + 1
        tail, head = first - 1, first - 1                 # unbounded ids
        head_lpos = tail_lpos = 2**64 - dsize             # BLK0_LPOS, kept unbounded
        recs = {}
        # the initial descriptor: reusable, failed lpos
        self._put_desc(descs, count, desc0, REUSABLE, FAILED_LPOS, FAILED_LPOS)
        msgs = list(self.messages)
        if self.in_flight:
            msgs.append(Msg(b"half-written record at the crash", msgs[-1].ts_nsec + 5 if msgs else 0, 7))
        for i, m in enumerate(msgs):
            rid = first + i
            if rid - count == tail:                       # descriptor ring full: push its tail
                tail += 1
                for r in recs.values():
                    if r.id < tail:
                        r.live = False
            text = m.full_text
            r = _Rec(m, seq=i, id=rid)
            if text:
                size = _round(8 + len(text), 8)
                if size > dsize // 2:
                    raise ValueError("record too large for the data ring")
                begin, nxt = head_lpos, head_lpos + size
                if begin >> self.size_bits != (nxt - 1 if self.exact_fit else nxt) >> self.size_bits:
                    nxt = ((nxt >> self.size_bits) << self.size_bits) + size
                for old in recs.values():                 # data_push_tail
                    if old.live and old.begin != NO_LPOS and old.begin < nxt - dsize:
                        old.live = False
                        old.state = REUSABLE
                        self._put_desc(descs, count, old.id, REUSABLE, old.begin, old.next)
                tail_lpos = max(tail_lpos, nxt - dsize)
                head_lpos = nxt
                r.begin, r.next = begin, nxt
                struct.pack_into("<Q", data, begin & (dsize - 1), rid & ID_MASK)
                blk = begin & (dsize - 1)
                if begin >> self.size_bits != (nxt - 1) >> self.size_bits:
                    blk = 0                               # wrapped: the block lives at offset 0
                    struct.pack_into("<Q", data, 0, rid & ID_MASK)
                data[blk + 8:blk + 8 + len(text)] = text
            r.state = FINALIZED
            if i == len(msgs) - 1 - (1 if self.in_flight else 0):
                r.state = COMMITTED                       # the last record is still open
            if self.in_flight and i == len(msgs) - 1:
                r.state = RESERVED
            recs[rid] = r
            head = rid
            self._put_desc(descs, count, rid, r.state, r.begin, r.next)
            o = (rid & (count - 1)) * sz_info
            infos[o:o + sz_info] = bytes(sz_info)
            struct.pack_into("<QQHBBI", infos, o, i, m.ts_nsec, len(text), m.facility,
                             (m.level << 5) | (m.flags & 31), m.caller_id & 0xFFFFFFFF)
            infos[o + 24:o + 24 + len(m.subsystem[:15])] = m.subsystem[:15]
            infos[o + 40:o + 40 + len(m.device[:47])] = m.device[:47]
        self.records = [recs[k] for k in sorted(recs)]
        self.tail_id, self.head_id = tail & ID_MASK, head & ID_MASK
        # structures
        rb_pa = self.static_pa
        rb = bytearray(sz_rb)
        struct.pack_into("<IxxxxQQQQ", rb, 0, self.count_bits, self._va(descs_pa), self._va(infos_pa),
                         head & ID_MASK, tail & ID_MASK)
        struct.pack_into("<IxxxxQQQ", rb, sz_dring, self.size_bits, self._va(data_pa),
                         head_lpos & U64, tail_lpos & U64)
        self.buffers = {"rb": (rb_pa, rb), "descs": (descs_pa, descs), "infos": (infos_pa, infos),
                        "data": (data_pa, data)}
        prb_va = self.va_image(rb_pa)
        if self.dynamic:                                  # a second, dynamic ring: *prb points to it
            dyn_pa = self.arrays_pa - 0x1000
            self.buffers["rb"] = (dyn_pa, rb)
            prb_va = self._va(dyn_pa)
            self.buffers["rb_static"] = (rb_pa, bytearray(sz_rb))   # emptied static ring
        struct.pack_into("<Q", self.vars, 0, prb_va)
        self.clear_seq = 0
        if self.clear_at is not None:
            self.clear_seq = self.clear_at
        if v510:
            struct.pack_into("<Q", self.vars, 0x40, self.clear_seq)
        else:                                             # latched_seq: latch odd -> val[1]
            struct.pack_into("<QQQ", self.vars, 0x40, 3, 0xDEAD, self.clear_seq)
        sym = self.va_image
        L = [f"SYMBOL(prb)={sym(self.vars_pa):x}", f"SYMBOL(printk_rb_static)={sym(rb_pa):x}",
             f"SYMBOL(clear_seq)={sym(self.vars_pa + 0x40):x}",
             f"SIZE(printk_ringbuffer)={sz_rb}", "OFFSET(printk_ringbuffer.desc_ring)=0",
             f"OFFSET(printk_ringbuffer.text_data_ring)={sz_dring}",
             f"OFFSET(printk_ringbuffer.fail)={sz_dring + 32}",
             f"SIZE(prb_desc_ring)={sz_dring}", "OFFSET(prb_desc_ring.count_bits)=0",
             "OFFSET(prb_desc_ring.descs)=8", "OFFSET(prb_desc_ring.infos)=16",
             "OFFSET(prb_desc_ring.head_id)=24", "OFFSET(prb_desc_ring.tail_id)=32",
             "SIZE(prb_desc)=24", "OFFSET(prb_desc.state_var)=0", "OFFSET(prb_desc.text_blk_lpos)=8",
             "SIZE(prb_data_blk_lpos)=16", "OFFSET(prb_data_blk_lpos.begin)=0",
             "OFFSET(prb_data_blk_lpos.next)=8",
             "SIZE(printk_info)=88", "OFFSET(printk_info.seq)=0", "OFFSET(printk_info.ts_nsec)=8",
             "OFFSET(printk_info.text_len)=16", "OFFSET(printk_info.caller_id)=20",
             "OFFSET(printk_info.dev_info)=24",
             "SIZE(dev_printk_info)=64", "OFFSET(dev_printk_info.subsystem)=0",
             "LENGTH(printk_info_subsystem)=16", "OFFSET(dev_printk_info.device)=16",
             "LENGTH(printk_info_device)=48",
             "SIZE(prb_data_ring)=32", "OFFSET(prb_data_ring.size_bits)=0", "OFFSET(prb_data_ring.data)=8",
             "OFFSET(prb_data_ring.head_lpos)=16", "OFFSET(prb_data_ring.tail_lpos)=24",
             "SIZE(atomic_long_t)=8", "OFFSET(atomic_long_t.counter)=0"]
        if not v510:
            L += ["SIZE(latched_seq)=24", "OFFSET(latched_seq.val)=8"]
        self._lines = L

    @staticmethod
    def _put_desc(descs, count, rid, state, begin, nxt):
        o = (rid & (count - 1)) * 24
        struct.pack_into("<QQQ", descs, o, (state << 62) | (rid & ID_MASK), begin & U64, nxt & U64)

    # 3.5 .. 5.9 -----------------------------------------------------------------------
    def _build_structured(self):
        name = "log" if self.variant == "3.5" else "printk_log"
        hdr = 20 if self.printk_caller else 16
        blen = self.log_buf_len
        buf = self._garbage(blen)
        first_idx = next_idx = 0
        first_seq = next_seq = 0
        recs = []
        by_seq = {}

        def rec_len(idx):
            return struct.unpack_from("<H", buf, idx + 8)[0]

        def log_next(idx):
            n = rec_len(idx)
            return rec_len(0) if n == 0 else idx + n

        def has_space(size):
            if next_idx > first_idx or first_seq == next_seq:
                free = max(blen - next_idx, first_idx)
            else:
                free = first_idx - next_idx
            return free >= size + hdr

        for i, m in enumerate(self.messages):
            text = m.full_text
            size = _round(hdr + len(text) + len(m.dict), 4)
            if size + hdr > blen:
                raise ValueError("record too large for log_buf")
            while first_seq < next_seq and not has_space(size):
                by_seq[first_seq].live = False
                first_idx = log_next(first_idx)
                first_seq += 1
            if next_idx + size + hdr > blen:
                buf[next_idx:next_idx + hdr] = bytes(hdr)     # wrap marker
                next_idx = 0
            rec = bytearray(size)
            struct.pack_into("<QHHHBB", rec, 0, m.ts_nsec, size, len(text), len(m.dict), m.facility,
                             (m.flags & 31) | (m.level << 5))
            if self.printk_caller:
                struct.pack_into("<I", rec, 16, m.caller_id & 0xFFFFFFFF)
            rec[hdr:hdr + len(text)] = text
            rec[hdr + len(text):hdr + len(text) + len(m.dict)] = m.dict
            buf[next_idx:next_idx + size] = rec
            r = _Rec(m, seq=next_seq, idx=next_idx)
            recs.append(r)
            by_seq[next_seq] = r
            next_idx += size
            next_seq += 1
        self.records = recs
        self.first_idx, self.next_idx = first_idx, next_idx
        self.clear_seq = self.clear_at if self.clear_at is not None else 0
        clear_idx = first_idx
        if self.clear_at is not None and self.clear_at >= first_seq and self.clear_at in by_seq:
            clear_idx = by_seq[self.clear_at].idx
        elif self.clear_at is not None and self.clear_at >= next_seq:
            clear_idx = next_idx
        self.clear_seq = max(self.clear_seq, first_seq)
        buf_pa = self.arrays_pa
        self.buffers = {"log_buf": (buf_pa, buf)}
        v = self.vars
        struct.pack_into("<Q", v, 0x80, self._va(buf_pa))
        struct.pack_into("<IxxxxIIIxxxx", v, 0x88, blen, first_idx, next_idx, clear_idx)
        sym = self.va_image
        L = [f"SYMBOL(log_buf)={sym(self.vars_pa + 0x80):x}", f"SYMBOL(log_buf_len)={sym(self.vars_pa + 0x88):x}",
             f"SYMBOL(log_first_idx)={sym(self.vars_pa + 0x90):x}",
             f"SYMBOL(clear_idx)={sym(self.vars_pa + 0x98):x}",
             f"SYMBOL(log_next_idx)={sym(self.vars_pa + 0x94):x}",
             f"SIZE({name})={hdr}", f"OFFSET({name}.ts_nsec)=0", f"OFFSET({name}.len)=8",
             f"OFFSET({name}.text_len)=10", f"OFFSET({name}.dict_len)=12"]
        if self.printk_caller:
            L.append(f"OFFSET({name}.caller_id)=16")
        self._lines = L

    # 3.4 and older ------------------------------------------------------------------------
    def _build_plain(self):
        blen = self.log_buf_len
        buf = bytearray(blen)
        end = 0
        for m in self.messages:
            line = b"<%d>[%5d.%06d] %s\n" % (m.level, m.ts_nsec // 10**9, m.ts_nsec % 10**9 // 1000, m.full_text)
            for c in line:
                buf[end & (blen - 1)] = c
                end += 1
        self.log_end = end
        self.records = []
        buf_pa = self.arrays_pa
        self.buffers = {"log_buf": (buf_pa, buf)}
        struct.pack_into("<Q", self.vars, 0x80, self._va(buf_pa))
        struct.pack_into("<I", self.vars, 0x88, blen)
        struct.pack_into("<I", self.vars, 0xA0, end & 0xFFFFFFFF)
        sym = self.va_image
        self._lines = [f"SYMBOL(log_buf)={sym(self.vars_pa + 0x80):x}",
                       f"SYMBOL(log_buf_len)={sym(self.vars_pa + 0x88):x}",
                       f"SYMBOL(log_end)={sym(self.vars_pa + 0xA0):x}",
                       f"SYMBOL(logged_chars)={sym(self.vars_pa + 0xA8):x}"]

    # -- truth ---------------------------------------------------------------------------
    def expected_dmesg(self, *, caller=False, partial=False):
        """What ``makedumpfile --dump-dmesg`` prints for this buffer (before any tamper)."""
        self._build()
        if self.kind == "plain":
            blen = self.log_buf_len
            text = b""
            for m in self.messages:
                text += b"<%d>[%5d.%06d] %s\n" % (m.level, m.ts_nsec // 10**9, m.ts_nsec % 10**9 // 1000,
                                                   m.full_text)
            text = text[-blen:] if len(text) > blen else text
            return text.decode("latin-1")
        out = []
        for r in self.records:
            if not r.live:
                continue
            if self.kind == "lockless" and (r.state not in (COMMITTED, FINALIZED) or not r.msg.full_text):
                continue
            if partial and r.seq < self.clear_seq:
                continue
            cid = r.msg.caller_id if caller and (self.kind == "lockless" or self.printk_caller) else None
            out.append(reference_line(r.msg.ts_nsec, r.msg.full_text, cid))
        return "".join(out)

    def live_messages(self):
        """Texts of the records a reader should return, oldest first."""
        return [r.msg.full_text for r in self.records if r.live and
                (self.kind != "lockless" or (r.state in (COMMITTED, FINALIZED) and r.msg.full_text))]


def _round(n, a):
    return -(-n // a) * a
