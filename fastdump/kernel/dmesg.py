"""The crashed kernel's log (dmesg) from a vmcore or dump, using VMCOREINFO only.

``extract_dmesg(dump)`` accepts an opened source (ELF vmcore, or a dump opened
with :func:`fastdump.open`) or a path.  The printk generation is chosen by the
VMCOREINFO keys that exist, never by OSRELEASE:

* ``SYMBOL(prb)``: the lockless ring buffer of 5.10+ (descriptor ring, info
  array, text data ring);
* ``SYMBOL(log_first_idx)``/``SYMBOL(log_next_idx)`` with ``SIZE(printk_log)``
  (``SIZE(log)`` before 3.11): the structured log of 3.5-5.9;
* ``SYMBOL(log_end)``: the plain character ring of 3.4 and older, returned as
  it is stored (it already holds ``<level>[time]`` prefixes), like makedumpfile.

Output is what ``makedumpfile --dump-dmesg`` writes: one ``[%5lu.%06lu] text``
line per record, the lines of a multi-line record indented under the first,
bytes that are neither printable ASCII nor white space shown as ``\\xNN``.
``caller=True`` adds the caller column ``[    T123] `` as makedumpfile 1.7.5+
does.  ``partial=True`` starts where the log was last cleared
(``--partial-dmesg``).

A corrupt buffer gives what can be trusted: bad records are skipped (5.10+) or
the walk stops at the first bad one (3.5-5.9); every size read from the dump is
checked before anything is allocated, and every walk is bounded, so a garbage
buffer can never hang or exhaust memory.  The rings are never read whole: an
array is first checked to be in the dump (counted page by page, without reading
it), then read a window of at most ``WINDOW`` bytes at a time, so a damaged
header (``count_bits``, ``size_bits``, ``log_buf_len``) costs time, not memory;
the text kept is capped at ``MAX_LOG_TEXT`` (the newest records are kept).
When nothing usable is left a :class:`~fastdump.errors.FastdumpError` says why,
in one line (running out of memory too: the dump beside the log is still written).
"""

import collections
import os
import struct

from ..errors import FastdumpError
from .memory import MAX_STRUCT, PAGE, U64, KernelMemory
from .memory import first_line as _first_line
from .vtop import TranslationError

# Lockless ring buffer (kernel/printk/printk_ringbuffer.h).
DESC_FLAGS_SHIFT = 62
DESC_ID_MASK = (1 << DESC_FLAGS_SHIFT) - 1
DESC_COMMITTED, DESC_FINALIZED = 1, 2
CALLER_CPU = 0x80000000

#: Upper bounds for sizes read from the dump (the kernel's own limits are far
#: lower: log_buf_len= is capped at 2 GiB, CONFIG_LOG_BUF_SHIFT at 25).
MAX_DATA_BITS = 30          # 1 GiB of text
MAX_DESC_BITS = 25          # 32 Mi descriptors
#: The most bytes of an array held at once: the rings are read in windows this big.
WINDOW = 1 << 20
#: The most text kept (rendered characters; the plain ring: bytes).  Beyond it the
#: oldest records are dropped: a kernel's own CONFIG_LOG_BUF_SHIFT (25 at most)
#: never gets there, a damaged log_buf_len or crafted records do.
MAX_LOG_TEXT = 64 << 20


class DmesgError(FastdumpError):
    """No kernel log can be extracted from this dump."""


# -- output formatting -----------------------------------------------------------
def _char_table(indent):
    """str.translate table: latin-1 decoded bytes -> makedumpfile's rendering."""
    table = {}
    for b in range(256):
        if b == 0x0A:
            table[b] = "\n" + " " * indent
        elif 0x20 <= b < 0x7F or b in (0x09, 0x0B, 0x0C, 0x0D):
            continue
        else:
            table[b] = "\\x%02x" % b
    return table


_TABLES = {}


def _render(text, indent):
    table = _TABLES.get(indent)
    if table is None:
        table = _TABLES[indent] = _char_table(indent)
    return text.decode("latin-1").translate(table)


def format_record(ts_nsec, text, caller_id=None):
    """One record as makedumpfile prints it (with its trailing newline)."""
    secs, nsec = divmod(ts_nsec, 1_000_000_000)
    prefix = "[%5d.%06d] " % (secs, nsec // 1000)
    if caller_id is not None:
        cid = "%s%d" % ("C" if caller_id & CALLER_CPU else "T", caller_id & ~CALLER_CPU & 0xFFFFFFFF)
        prefix += "[%8s] " % cid
    return prefix + _render(text, len(prefix)) + "\n"


def _u16(buf, off):
    return struct.unpack_from("<H", buf, off)[0]


def _u32(buf, off):
    return struct.unpack_from("<I", buf, off)[0]


def _u64(buf, off):
    return struct.unpack_from("<Q", buf, off)[0]


# -- bounded reads ---------------------------------------------------------------------
def _absent(mem, va, size):
    """How many bytes of kernel virtual ``[va, va+size)`` the dump does not hold: counted
    from the translation and the source's page map (``is_dumped``), nothing is read;
    a source without a page map is probed a window at a time.  Memory use is bounded
    whatever ``size`` is: this is what is checked before a ring is read."""
    src = mem.source
    is_dumped = getattr(src, "is_dumped", None)
    psize = getattr(src, "page_size", None) or PAGE
    present = 0
    for _, pa, n in mem.runs(va, size, skip_unmapped=True):
        if is_dumped is not None:
            end = pa + n
            for pfn in range(pa // psize, (end - 1) // psize + 1):
                if is_dumped(pfn):
                    present += min(end, (pfn + 1) * psize) - max(pa, pfn * psize)
            continue
        p, end = pa, pa + n
        while p < end:
            m = min(end - p, WINDOW)
            try:
                mem.read_phys(p, m)
                present += m
            except FastdumpError:
                q = p
                while q < p + m:                  # page by page: which of them are there
                    k = min(p + m, (q | (PAGE - 1)) + 1) - q
                    try:
                        mem.read_phys(q, k)
                        present += k
                    except FastdumpError:
                        pass
                    q += k
            p += m
    return size - present


class _Region:
    """``size`` bytes of kernel memory at ``va``, read one window (``WINDOW`` bytes, or
    the piece asked for if larger) at a time; missing bytes read as zeros, and are not
    counted again in ``mem.missing`` (``_absent`` counted them)."""

    def __init__(self, mem, va, size):
        self.mem, self.va, self.size = mem, va, size
        self.lo = self.hi = 0
        self.buf = b""

    def view(self, off, n):
        """``(buf, pos)``: ``buf[pos:pos + n]`` are the region's bytes ``off..off+n``
        (fewer past its end, as a slice would give)."""
        if self.lo <= off and off + n <= self.hi:
            return self.buf, off - self.lo
        n = max(0, min(n, self.size - off))
        start = off & ~(PAGE - 1)
        end = min(self.size, max(start + WINDOW, off + n))
        self.buf = b""                            # one window alive at a time
        missing = self.mem.missing
        self.buf = self.mem.read(self.va + start, end - start, strict=False)
        self.mem.missing = missing
        self.lo, self.hi = start, start + len(self.buf)
        return self.buf, off - start

    def get(self, off, n):
        buf, pos = self.view(off, n)
        return buf[pos:pos + n]


class _Kept:
    """The rendered records, the newest ``MAX_LOG_TEXT`` characters of them at most."""

    def __init__(self):
        self.lines = collections.deque()
        self.chars = self.dropped = 0

    def append(self, line):
        self.lines.append(line)
        self.chars += len(line)
        while self.chars > MAX_LOG_TEXT and len(self.lines) > 1:
            self.chars -= len(self.lines.popleft())
            self.dropped += 1

    def __bool__(self):
        return bool(self.lines)

    def text(self, problems):
        if self.dropped:
            problems.append(f"kernel log is longer than {MAX_LOG_TEXT >> 20} MiB: "
                            f"the oldest {self.dropped} record(s) left out")
        return "".join(self.lines)


# -- 5.10+: lockless ring buffer ------------------------------------------------------
def _lockless(mem, vi, *, caller, partial, problems):
    k = mem.keys("printk ring buffer")
    o_dr, o_tr = k.off("printk_ringbuffer.desc_ring"), k.off("printk_ringbuffer.text_data_ring")
    o_bits, o_descs = k.off("prb_desc_ring.count_bits"), k.off("prb_desc_ring.descs")
    o_infos, o_head, o_tail = (k.off("prb_desc_ring.infos"), k.off("prb_desc_ring.head_id"),
                               k.off("prb_desc_ring.tail_id"))
    sz_desc, o_sv, o_lpos = k.size("prb_desc"), k.off("prb_desc.state_var"), k.off("prb_desc.text_blk_lpos")
    o_begin, o_next = k.off("prb_data_blk_lpos.begin"), k.off("prb_data_blk_lpos.next")
    sz_info, o_tlen = k.size("printk_info"), k.off("printk_info.text_len")
    if "printk_info.ts_nsec" in vi.offsets:
        o_ts = k.off("printk_info.ts_nsec")
    else:  # proposed rename: printk_info.ts is a struct whose .mono is the old ts_nsec
        o_ts = k.off("printk_info.ts") + vi.offsets.get("ktime_timestamps.mono", 0)
    o_seq = vi.offsets.get("printk_info.seq")
    o_cid = vi.offsets.get("printk_info.caller_id") if caller else None
    o_sbits, o_data = k.off("prb_data_ring.size_bits"), k.off("prb_data_ring.data")
    o_ctr = vi.offsets.get("atomic_long_t.counter", 0)
    sz_rb = vi.sizes.get("printk_ringbuffer", max(o_dr, o_tr) + 64)
    if not 0 < sz_rb <= MAX_STRUCT:
        raise DmesgError(f"printk ring buffer: SIZE(printk_ringbuffer)={sz_rb} is out of range")
    if o_lpos + max(o_begin, o_next) + 8 > sz_desc or o_sv + o_ctr + 8 > sz_desc:
        raise DmesgError("printk ring buffer: prb_desc offsets do not fit SIZE(prb_desc)")
    if max(o_ts + 8, o_tlen + 2, (o_cid or 0) + 4, (o_seq or 0) + 8) > sz_info:
        raise DmesgError("printk ring buffer: printk_info offsets do not fit SIZE(printk_info)")

    # The ring: *prb, falling back to the static one if the pointer is unusable.
    candidates = []
    try:
        candidates.append(mem.u64(k.sym("prb")))
    except DmesgError as e:
        if "printk_rb_static" not in vi.symbols:
            raise
        problems.append(f"prb pointer unreadable ({e})")
    static = vi.symbols.get("printk_rb_static")
    if static is not None and static not in candidates:
        candidates.append(static)
    candidates = [a for a in candidates if a]
    if not candidates:
        raise DmesgError("printk ring buffer: SYMBOL(prb) points nowhere (null pointer)")
    for i, rb_addr in enumerate(candidates):
        try:
            rb = mem.read(rb_addr, max(sz_rb, o_dr + o_tail + o_ctr + 8, o_tr + o_data + 8))
            count_bits = _u32(rb, o_dr + o_bits)
            size_bits = _u32(rb, o_tr + o_sbits)
            if not 0 < count_bits <= MAX_DESC_BITS:
                raise DmesgError(f"printk ring buffer at {rb_addr:#x}: descriptor count_bits "
                                 f"{count_bits} is out of range")
            if not 3 < size_bits <= MAX_DATA_BITS:
                raise DmesgError(f"printk ring buffer at {rb_addr:#x}: text size_bits "
                                 f"{size_bits} is out of range")
            break
        except DmesgError as e:
            if i == len(candidates) - 1:
                raise
            problems.append(f"{e}; trying printk_rb_static")

    count, data_size = 1 << count_bits, 1 << size_bits
    descs_va, infos_va = _u64(rb, o_dr + o_descs), _u64(rb, o_dr + o_infos)
    data_va = _u64(rb, o_tr + o_data)
    head_id = _u64(rb, o_dr + o_head + o_ctr) & DESC_ID_MASK
    tail_id = _u64(rb, o_dr + o_tail + o_ctr) & DESC_ID_MASK

    n = ((head_id - tail_id) & DESC_ID_MASK) + 1
    behind = None
    if n > count:
        behind = (f"printk ring buffer: tail id {tail_id:#x} is {n - 1} records behind head "
                  f"{head_id:#x} (ring holds {count}); reading the last {count}")
        tail_id, n = (head_id - count + 1) & DESC_ID_MASK, count

    # Checked before anything is read, and only ever read a window at a time: a damaged
    # count_bits/size_bits makes these arrays up to a few GiB.  Of the descriptor and info
    # arrays, only the slots of records tail..head are looked at (all of them when the
    # ring is full), and only those are checked (which keeps a damaged count_bits quick).
    slots = _slots(tail_id, n, count)
    lost = 0
    arrays = []
    for name, va, size, unit in (("descriptor array", descs_va, count * sz_desc, sz_desc),
                                 ("info array", infos_va, count * sz_info, sz_info),
                                 ("text data ring", data_va, data_size, None)):
        if unit is None:
            absent, used = _absent(mem, va, size), size
        else:
            absent = sum(_absent(mem, va + first * unit, k * unit) for first, k in slots)
            used = n * unit
        if absent >= used:
            raise DmesgError(f"printk ring buffer: the {name} at {va:#x} is not in this dump")
        lost += absent
        arrays.append(_Region(mem, va, size))
    descs, infos, data = arrays
    if lost:
        problems.append(f"{lost} bytes of the printk ring buffer are not in the dump")

    clear_seq = None
    if partial:
        clear_seq = _clear_seq(mem, vi, problems)
    if behind:
        problems.append(behind)

    out = _Kept()
    bad = cleared = 0
    id_mask, mask = count - 1, data_size - 1
    for i in range(n):
        rid = (tail_id + i) & DESC_ID_MASK
        dbuf, d = descs.view((rid & id_mask) * sz_desc, sz_desc)
        sv = _u64(dbuf, d + o_sv + o_ctr)
        if sv & DESC_ID_MASK != rid:
            continue                     # not (or no longer) this record's descriptor
        if sv >> DESC_FLAGS_SHIFT not in (DESC_COMMITTED, DESC_FINALIZED):
            continue                     # reserved (being written) or reusable
        begin = _u64(dbuf, d + o_lpos + o_begin)
        nxt = _u64(dbuf, d + o_lpos + o_next)
        ibuf, inf = infos.view((rid & id_mask) * sz_info, sz_info)
        if clear_seq is not None and o_seq is not None and _u64(ibuf, inf + o_seq) < clear_seq:
            cleared += 1
            continue
        if begin & 1 or nxt & 1:
            continue                     # data-less record (empty text or failed allocation)
        length = (nxt - begin) & U64
        if length == 0:
            continue
        if begin & 7 or nxt & 7 or length > data_size:
            bad += 1
            continue
        bi = begin & mask
        if bi + length <= data_size:     # regular block
            blk, blen = bi, length
        else:                            # wrapped: the whole block lives at offset 0
            blk, blen = 0, nxt & mask
            if blen >= length:
                bad += 1
                continue
        if blen < 8:
            bad += 1
            continue
        text_len = min(_u16(ibuf, inf + o_tlen), blen - 8)
        ts = _u64(ibuf, inf + o_ts)
        cid = _u32(ibuf, inf + o_cid) if o_cid is not None else None
        tbuf, t = data.view(blk, 8 + text_len)
        if _u64(tbuf, t) & DESC_ID_MASK != rid:
            bad += 1
            continue
        out.append(format_record(ts, tbuf[t + 8:t + 8 + text_len], cid))
    if bad:
        problems.append(f"printk ring buffer: skipped {bad} corrupt record(s)")
    if not out:
        if cleared and not bad:
            return ""                    # everything was cleared
        raise DmesgError("printk ring buffer holds no readable record"
                         + (f" ({problems[-1]})" if problems else ""))
    return out.text(problems)


def _slots(first_id, n, count):
    """``[(first, k)]``: the slots of ``n`` consecutive ids from ``first_id`` in a ring
    of ``count`` (a power of two) slots, in at most two runs."""
    if n >= count:
        return [(0, count)]
    first = first_id & (count - 1)
    if first + n <= count:
        return [(first, n)]
    return [(first, count - first), (0, first + n - count)]


def _clear_seq(mem, vi, problems):
    addr = vi.symbols.get("clear_seq")
    if addr is None:
        problems.append("VMCOREINFO has no SYMBOL(clear_seq): printing the whole log")
        return None
    try:
        if "latched_seq" in vi.sizes:            # 5.13+: struct latched_seq
            latch = mem.u64(addr)
            return mem.u64(addr + vi.offsets.get("latched_seq.val", 8) + (latch & 1) * 8)
        return mem.u64(addr)
    except DmesgError as e:
        problems.append(f"clear_seq unreadable ({e}): printing the whole log")
        return None


# -- 3.5 .. 5.9: structured log -------------------------------------------------------
def _structured(mem, vi, *, caller, partial, problems):
    name = "printk_log" if "printk_log" in vi.sizes else "log"
    k = mem.keys("printk log_buf")
    hdr = k.size(name)
    o_ts, o_len, o_tlen = k.off(f"{name}.ts_nsec"), k.off(f"{name}.len"), k.off(f"{name}.text_len")
    o_cid = vi.offsets.get(f"{name}.caller_id") if caller else None
    if max(o_ts + 8, o_len + 2, o_tlen + 2, (o_cid or 0) + 4) > hdr:
        raise DmesgError(f"printk log_buf: {name} offsets do not fit SIZE({name})={hdr}")
    log_buf = mem.u64(k.sym("log_buf"))
    buf_len = mem.u32(k.sym("log_buf_len"))
    first_sym = "log_first_idx"
    if partial:
        if "clear_idx" in vi.symbols:
            first_sym = "clear_idx"
        else:
            problems.append("VMCOREINFO has no SYMBOL(clear_idx): printing the whole log")
    first = mem.u32(k.sym(first_sym))
    nxt = mem.u32(k.sym("log_next_idx"))
    if not hdr < buf_len <= 1 << MAX_DATA_BITS:
        raise DmesgError(f"printk log_buf: log_buf_len {buf_len} is out of range")
    if first >= buf_len or nxt >= buf_len:
        raise DmesgError(f"printk log_buf: indexes {first_sym}={first}, log_next_idx={nxt} are "
                         f"outside log_buf_len {buf_len}")
    # checked before anything is read, then read a window at a time (log_buf_len may be damaged)
    absent = _absent(mem, log_buf, buf_len)
    if absent >= buf_len:
        raise DmesgError(f"printk log_buf at {log_buf:#x} is not in this dump")
    if absent:
        problems.append(f"{absent} bytes of log_buf are not in the dump")
    buf = _Region(mem, log_buf, buf_len)

    out = _Kept()
    pos, wrapped = first, False
    # each record is at least one header long: the walk has a hard bound.  It only
    # moves forward, from first to the end of the buffer, then (once) from 0: it can
    # come back to a record only after the wrap, at or past where it started.
    for _ in range(buf_len // hdr + 2):
        if pos == nxt:
            break
        if wrapped and pos >= first:
            problems.append(f"printk log_buf: cycle at index {pos}; the buffer is corrupt")
            break
        if pos + hdr > buf_len:
            if pos == buf_len and not wrapped:
                pos, wrapped = 0, True
                continue
            problems.append(f"printk log_buf: record at index {pos} runs past the end; the buffer is corrupt")
            break
        rec, r = buf.view(pos, hdr)
        rlen = _u16(rec, r + o_len)
        if rlen == 0:                        # end-of-buffer marker: wrap to 0
            if pos == 0 or wrapped:
                problems.append(f"printk log_buf: empty record at index {pos}; the buffer is corrupt")
                break
            pos, wrapped = 0, True
            continue
        if rlen < hdr or pos + rlen > buf_len:
            problems.append(f"printk log_buf: record at index {pos} has bad length {rlen}; "
                            "the buffer is corrupt")
            break
        text_len = min(_u16(rec, r + o_tlen), rlen - hdr)
        ts, cid = _u64(rec, r + o_ts), _u32(rec, r + o_cid) if o_cid is not None else None
        out.append(format_record(ts, buf.get(pos + hdr, text_len), cid))
        pos += rlen
    else:
        problems.append("printk log_buf: walk did not reach log_next_idx; the buffer is corrupt")
    if not out:
        if pos == nxt and not problems:
            return ""
        raise DmesgError("printk log_buf holds no readable record"
                         + (f" ({problems[-1]})" if problems else ""))
    return out.text(problems)


# -- 3.4 and older: plain character ring ------------------------------------------------
def _plain(mem, vi, *, problems):
    k = mem.keys("printk log_buf")
    log_buf = mem.u64(k.sym("log_buf"))
    buf_len = mem.u32(k.sym("log_buf_len"))
    if not 0 < buf_len <= 1 << MAX_DATA_BITS:
        raise DmesgError(f"printk log_buf: log_buf_len {buf_len} is out of range")
    release = (vi.osrelease or "").split("-")[0].split(".")
    try:
        old = tuple(int(x) for x in release[:3]) < (2, 6, 25)
    except ValueError:
        old = False
    log_end = mem.u64(k.sym("log_end")) if old else mem.u32(k.sym("log_end"))
    if log_end < buf_len:
        pieces = [(log_buf, log_end)]
    else:
        idx = log_end & (buf_len - 1) if buf_len & (buf_len - 1) == 0 else log_end % buf_len
        pieces = [(log_buf + idx, buf_len - idx), (log_buf, idx)]
    total = sum(n for _, n in pieces)
    if total > MAX_LOG_TEXT:             # the newest MAX_LOG_TEXT bytes: those before log_end
        cut = total - MAX_LOG_TEXT
        problems.append(f"printk log_buf: {total} bytes is more than {MAX_LOG_TEXT >> 20} MiB: "
                        f"the oldest {cut} left out")
        kept = []
        for va, n in pieces:
            drop = min(cut, n)
            cut -= drop
            if n > drop:
                kept.append((va + drop, n - drop))
        pieces, total = kept, MAX_LOG_TEXT
    # checked before anything is read, then read a window at a time
    absent = sum(_absent(mem, va, n) for va, n in pieces)
    if total and absent >= total:
        raise DmesgError(f"printk log_buf at {log_buf:#x} is not in this dump")
    text = bytearray()
    for va, n in pieces:
        for off in range(0, n, WINDOW):
            text += mem.read(va + off, min(WINDOW, n - off), strict=False)
    if absent:
        problems.append(f"{absent} bytes of log_buf are not in the dump")
    # makedumpfile writes this ring as it is: the text already holds "<level>[time] "
    # prefixes.  Bytes map 1:1 to characters (latin-1), so writing it back is exact.
    return text.decode("latin-1")


# -- entry points ---------------------------------------------------------------------
def generation(vi):
    """Which printk layout the VMCOREINFO describes: "lockless", "structured", "plain" or None."""
    if vi is None:
        return None
    if "prb" in vi.symbols:
        return "lockless"
    if "log_buf" in vi.symbols and "log_end" not in vi.symbols and "log_first_idx" in vi.symbols:
        return "structured"
    if "log_buf" in vi.symbols and "log_end" in vi.symbols:
        return "plain"
    return None


def extract_dmesg(dump, *, caller=False, partial=False, problems=None, erased=None):
    """The kernel log of ``dump`` (an opened source/dump, or a path) as text.

    ``erased``: the run's erase.EraseList (--config): the log read as the dump holds it,
    so a file beside the dump keeps no erased byte.  ``problems``, if a list, receives one line per thing that was skipped or
    repaired (corrupt records, missing pages).  Raises FastdumpError when no
    log can be extracted."""
    if isinstance(dump, (str, bytes, os.PathLike)):
        from ..sources.opener import open_dump
        with open_dump(dump) as d:
            return extract_dmesg(d, caller=caller, partial=partial, problems=problems, erased=erased)
    problems = problems if problems is not None else []
    vi = getattr(dump, "vmcoreinfo", None)
    if vi is None:
        raise DmesgError("this dump has no VMCOREINFO: the kernel log cannot be located")
    kind = generation(vi)
    if kind is None:
        raise DmesgError("VMCOREINFO has neither SYMBOL(prb) nor SYMBOL(log_buf): "
                         "the kernel log cannot be located")
    machine = getattr(dump, "machine", None)
    if machine is not None and machine != 62:     # EM_X86_64
        raise DmesgError(f"kernel log extraction supports x86_64 dumps only (ELF machine {machine})")
    mem = KernelMemory(dump, vi, error=DmesgError, erased=erased)
    try:
        if kind == "lockless":
            return _lockless(mem, vi, caller=caller, partial=partial, problems=problems)
        if kind == "structured":
            return _structured(mem, vi, caller=caller, partial=partial, problems=problems)
        return _plain(mem, vi, problems=problems)
    except TranslationError as e:
        raise DmesgError(f"kernel log: {_first_line(e)}") from None
    except struct.error as e:   # a buffer shorter than a field: corrupt beyond use
        raise DmesgError(f"kernel log: truncated structure ({e})") from None
    except MemoryError:
        pass                    # raised below, once the traceback (and what it holds) is gone
    # the reads are bounded, but the machine may be smaller still (a capture kernel): a log
    # that does not fit is one line, and the dump beside it is still written
    raise DmesgError("kernel log: out of memory while reading it")

