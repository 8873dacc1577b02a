"""Kallsyms tables and BTF blobs of a made-up kernel, for tests and fuzzing of fastdump.kernel.types.

``kallsyms_tables(symbols, ...)`` lays out the five kallsyms tables the way the
kernel's build does (token-compressed names with a length byte, big-symbol
lengths, a token index, s32 offsets under one of the address rules), and
``BtfBuilder`` writes a BTF blob type by type.
"""

import struct

U64 = (1 << 64) - 1


def _tokens():
    """256 tokens: a few multi-character ones (so expansion is exercised), the rest one byte each."""
    multi = [b"kallsyms_", b"per_cpu", b"_start", b"__", b"init"]
    tokens = [bytes([i]) for i in range(256)]
    for i, t in enumerate(multi, start=1):     # bytes 1..5 never occur in names
        tokens[i] = t
    tokens[0] = b""
    return tokens


def _encode_name(text, tokens):
    out, i = [], 0
    multi = sorted(((t, n) for n, t in enumerate(tokens) if len(t) > 1), key=lambda x: -len(x[0]))
    while i < len(text):
        for t, n in multi:
            if text.startswith(t, i):
                out.append(n)
                i += len(t)
                break
        else:
            out.append(text[i])
            i += 1
    return bytes(out)


def kallsyms_tables(symbols, *, base, table_va, rule="absolute-percpu"):
    """``symbols``: [(name, type letter, address)] in address order.  Returns
    {VMCOREINFO symbol name: (va, bytes)} for the tables, laid out from ``table_va``."""
    tokens = _tokens()
    names = bytearray()
    for name, kind, _ in symbols:
        enc = _encode_name((kind + name).encode(), tokens)
        if len(enc) < 0x80:
            names.append(len(enc))
        else:
            names += bytes([0x80 | (len(enc) & 0x7F), len(enc) >> 7])
        names += enc
    table, index = bytearray(), []
    for t in tokens:
        index.append(len(table))
        table += t + b"\0"
    va = table_va
    layout = {}
    for key, data in (("kallsyms_num_syms", struct.pack("<I", len(symbols))),
                      ("kallsyms_relative_base", struct.pack("<Q", base)),
                      ("kallsyms_token_index", struct.pack("<256H", *index)),
                      ("kallsyms_token_table", bytes(table)),
                      ("kallsyms_names", bytes(names)),
                      ("kallsyms_offsets", None)):
        if key == "kallsyms_offsets":
            offs = []
            for i, (_, _, addr) in enumerate(symbols):
                if rule == "absolute-percpu":
                    offs.append(addr if addr < 1 << 31 else base - 1 - addr)
                elif rule == "relative":
                    offs.append((addr - base) - (1 << 32) if addr - base >= 1 << 31 else addr - base)
                else:                                  # place-relative
                    offs.append(addr - (va + 4 * i))
            data = struct.pack(f"<{len(offs)}i", *[((o + (1 << 31)) % (1 << 32)) - (1 << 31) for o in offs])
        layout[key] = (va, data)
        va += (len(data) + 63) & ~63
    if rule == "place-relative":
        del layout["kallsyms_relative_base"]
    return layout


class BtfBuilder:
    """Types appended one at a time; ids start at 1 (0 is void)."""

    def __init__(self):
        self.strings = bytearray(b"\0")
        self.types = bytearray()
        self.count = 0

    def _name(self, name):
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def _add(self, kind, name, vlen, size_or_type, extra=b"", kflag=0):
        self.types += struct.pack("<III", self._name(name), (kflag << 31) | (kind << 24) | vlen, size_or_type) + extra
        self.count += 1
        return self.count

    def int(self, name, size):
        return self._add(1, name, 0, size, struct.pack("<I", size * 8))

    def ptr(self, to):
        return self._add(2, "", 0, to)

    def array(self, of, n, index_type):
        return self._add(3, "", 0, 0, struct.pack("<III", of, index_type, n))

    def struct(self, name, size, members, union=False):
        """``members``: [(name, type id, bit offset[, bitfield size])]."""
        kflag = int(any(len(m) > 3 for m in members))
        extra = b"".join(struct.pack("<III", self._name(m[0]), m[1],
                                     (((m[3] if len(m) > 3 else 0) << 24) | m[2]) if kflag else m[2]) for m in members)
        return self._add(5 if union else 4, name, len(members), size, extra, kflag)

    def enum(self, name, values, size=4):
        """``values``: [(name, value)]; an ENUM64 when a value does not fit 32 bits signed."""
        if all(-(1 << 31) <= v < 1 << 31 for _, v in values):
            extra = b"".join(struct.pack("<Ii", self._name(n), v) for n, v in values)
            return self._add(6, name, len(values), size, extra)
        extra = b"".join(struct.pack("<IIi", self._name(n), v & 0xFFFFFFFF, v >> 32) for n, v in values)
        return self._add(19, name, len(values), 8, extra)

    def typedef(self, name, to):
        return self._add(8, name, 0, to)

    def const(self, to):
        return self._add(10, "", 0, to)

    def var(self, name, type_id):
        """A global variable (linkage 1: global allocated), as pahole's global_var encodes it."""
        return self._add(14, name, 0, type_id, struct.pack("<I", 1))

    def datasec(self, name, size, entries):
        """``entries``: [(var id, offset, size)]."""
        return self._add(15, name, len(entries), size, b"".join(struct.pack("<III", *e) for e in entries))

    def blob(self):
        hdr_len = 24
        return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, hdr_len, 0, len(self.types), len(self.types),
                           len(self.strings)) + bytes(self.types) + bytes(self.strings)


# -- one made-up kernel, shared by the unit tests and the fuzz target -------------------------
BASE = 0xFFFFFFFF81000000
TABLES = 0xFFFFFFFF82000000
BTF_AT = BASE + 0x40000
SYMBOLS = [("__per_cpu_start", "D", 0x0), ("runqueues", "D", 0x31C40),
           ("_stext", "T", BASE + 0x1000), ("init_uts_ns", "D", BASE + 0x20000),
           ("jiffies", "D", BASE + 0x30000), ("a_static", "t", BASE + 0x31000), ("a_static", "t", BASE + 0x32000),
           ("x" * 300, "t", BASE + 0x33000),                 # a "big symbol": two length bytes
           ("init_top_pgt", "D", BASE + 0x50000)]
#: VMCOREINFO's own SYMBOL()s, the witnesses kallsyms is checked against
WITNESSES = ("_stext", "init_uts_ns", "init_top_pgt")


def sample_btf():
    """struct page with an anonymous union holding an anonymous struct, an array and
    bitfields; a typedef of a const page; struct per_cpu_pages."""
    b = BtfBuilder()
    u64 = b.int("unsigned long", 8)
    u32 = b.int("unsigned int", 4)
    arr = b.array(u64, 3, u32)
    inner = b.struct("", 8, [("count", u32, 0), ("high", u32, 32)])
    anon = b.struct("", 8, [("lru", u64, 0), ("", inner, 0)], union=True)
    page = b.struct("page", 64, [("flags", u64, 0), ("", anon, 64), ("priv", arr, 128),
                                 ("order", u32, 384, 4), ("mapcount", u32, 388, 28)])
    b.typedef("page_t", b.const(page))
    b.struct("per_cpu_pages", 16, [("count", u32, 0), ("lists", b.ptr(page), 64)])
    return b


def made_up_kernel(*, rule="absolute-percpu", symbols=SYMBOLS, btf=True,
                   vmcoreinfo_extra="OFFSET(page.lru)=8\nSIZE(page)=64\n"):
    """(VMCOREINFO text, {table name: (va, bytes)}) of a kernel whose tables lie at TABLES
    and whose BTF (if ``btf``) lies at BTF_AT."""
    syms = [s for s in symbols if rule != "place-relative" or s[2] >= BASE]
    regions = {}
    if btf:
        blob = sample_btf().blob()
        syms += [("__start_BTF", "R", BTF_AT), ("__stop_BTF", "R", BTF_AT + len(blob))]
        regions["btf"] = (BTF_AT, blob)
    syms.sort(key=lambda s: s[2])
    layout = kallsyms_tables(syms, base=BASE, table_va=TABLES, rule=rule)
    by_name = {n: a for n, _, a in syms}
    lines = [f"SYMBOL({k})={va:x}" for k, (va, _) in layout.items()]
    lines += [f"SYMBOL({n})={by_name[n]:x}" for n in WITNESSES] + ["OSRELEASE=6.12.0"]
    layout.update(regions)
    return "\n".join(lines) + "\n" + vmcoreinfo_extra, layout


class PageMemory:
    """Kernel virtual memory in 4 KiB pages, made of byte regions; a page no region touches is missing."""

    def __init__(self, regions):
        self.pages = {}
        for start, data in regions:
            for i in range(0, len(data)):
                self.pages.setdefault((start + i) >> 12, bytearray(4096))[(start + i) & 4095] = data[i]

    def read(self, va, size):
        from ..kernel.types import NotAvailable
        out = bytearray()
        while len(out) < size:
            page = self.pages.get((va + len(out)) >> 12)
            if page is None:
                raise NotAvailable(f"no memory at {va + len(out):#x}")
            off = (va + len(out)) & 4095
            out += page[off:off + size - len(out)]
        return bytes(out)
