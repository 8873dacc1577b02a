"""The kernel's symbol table (kallsyms), decoded from the dump itself.

6.0+ kernels put the addresses of the kallsyms tables into VMCOREINFO.  The
tables are the ones ``/proc/kallsyms`` is made from:

* ``kallsyms_num_syms``: a u32;
* ``kallsyms_names``: one entry per symbol, a length (one byte; with bit 7 set,
  a second byte holds bits 7..14, "big symbols", 6.1+) and that many token
  numbers;
* ``kallsyms_token_index`` (256 u16) and ``kallsyms_token_table``: each token
  number expands to a NUL-terminated string; the first character of an
  expanded name is its type letter (``T``, ``d``, ...);
* ``kallsyms_offsets``: one s32 per symbol.  How an offset becomes an address
  has changed over the years: relative to ``kallsyms_relative_base``, with
  per-CPU symbols stored as absolute values (x86_64 before 6.15); or plainly
  relative to that base; or, on kernels without a relative base, relative to
  the offset's own place.

Which rule this kernel uses is not guessed from its version: each candidate is
tried, and only one that puts every VMCOREINFO ``SYMBOL()`` that names a plain
kernel variable at the address VMCOREINFO gives is taken.  When none does, or
any table is out of bounds, the symbols are "not available" — never wrong.
"""

import struct

from ..vtop import U64
from . import NotAvailable

#: far more than any kernel has (a 7.x allyesconfig has about 400,000)
MAX_SYMBOLS = 4_000_000
#: kallsyms_names is at most a few bytes per token per symbol
MAX_NAMES_BYTES = 64 << 20
KSYM_NAME_LEN = 512
#: VMCOREINFO symbols that are not the address of a same-named kallsyms symbol:
#: arrays given by value (mem_section, vmemmap), and x86's alias swapper_pg_dir.
_NOT_ADDRESSES = {"mem_section", "vmemmap", "swapper_pg_dir", "node_data", "contig_page_data"}
_TABLES = ("kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table", "kallsyms_token_index",
           "kallsyms_offsets")


class Symbols:
    """Name -> address (and type letter) for every kallsyms symbol of the crashed kernel."""

    def __init__(self, read, vmcoreinfo):
        """``read(va, size)`` returns kernel virtual memory (raising on what is missing)."""
        vi = vmcoreinfo
        missing = [t for t in _TABLES if vi is None or t not in vi.symbols]
        if missing:
            raise NotAvailable(f"kallsyms: VMCOREINFO has no SYMBOL({missing[0]}) (kernels before 6.0 do not export it)")
        try:
            where = {t: vi.symbols[t] for t in _TABLES + ("kallsyms_relative_base",) if t in vi.symbols}
        except Exception as e:      # a bogus value: VmcoreinfoError names it
            raise NotAvailable(f"kallsyms: {e}") from None
        self._read = read
        count = struct.unpack("<I", _read(read, where["kallsyms_num_syms"], 4))[0]
        if not 0 < count <= MAX_SYMBOLS:
            raise NotAvailable(f"kallsyms: kallsyms_num_syms={count} is not plausible")
        tokens = self._tokens(where)
        names, types = self._names(where["kallsyms_names"], count, tokens)
        offsets = struct.unpack(f"<{count}i", _read(read, where["kallsyms_offsets"], 4 * count))
        base = None
        if "kallsyms_relative_base" in where:
            base = struct.unpack("<Q", _read(read, where["kallsyms_relative_base"], 8))[0]
        self.rule, addresses = _choose_rule(offsets, base, where["kallsyms_offsets"], names, vi)
        self.count = count
        self._by_name = {}
        self._type = {}
        for name, kind, addr in zip(names, types, addresses):
            if name not in self._by_name:          # the first of same-named statics, as kallsyms_lookup_name
                self._by_name[name] = addr
                self._type[name] = kind

    def _tokens(self, where):
        index = struct.unpack("<256H", _read(self._read, where["kallsyms_token_index"], 512))
        span = max(index) + KSYM_NAME_LEN
        table = _read(self._read, where["kallsyms_token_table"], span, partial=True)
        tokens = []
        for off in index:
            end = table.find(b"\0", off)
            if off >= len(table) or end < 0:
                raise NotAvailable("kallsyms: the token table is cut short")
            tokens.append(table[off:end])
        return tokens

    def _names(self, va, count, tokens):
        names, types = [], []
        buf = _Stream(self._read, va)
        for _ in range(count):
            length = buf.take(1)[0]
            if length & 0x80:
                length = (length & 0x7F) | (buf.take(1)[0] << 7)
            if length == 0:
                raise NotAvailable("kallsyms: a kallsyms_names entry is empty")
            full = b"".join(tokens[t] for t in buf.take(length))
            if len(full) < 2 or len(full) > KSYM_NAME_LEN:
                raise NotAvailable("kallsyms: a symbol name has an impossible length")
            types.append(chr(full[0]))
            names.append(full[1:].decode("ascii", "replace"))
        return names, types

    # -- look-ups -------------------------------------------------------------
    def address(self, name):
        """The address of ``name``; NotAvailable when the kernel has no such symbol."""
        try:
            return self._by_name[name]
        except KeyError:
            raise NotAvailable(f"kallsyms: no symbol {name!r}") from None

    def kind(self, name):
        """The type letter /proc/kallsyms shows (``T`` text, ``D`` data, ``b`` local bss...)."""
        self.address(name)
        return self._type[name]

    def __contains__(self, name):
        return name in self._by_name

    def __len__(self):
        return len(self._by_name)


class _Stream:
    """Bytes of kernel memory read forward in large pieces, bounded by MAX_NAMES_BYTES."""

    CHUNK = 1 << 20

    def __init__(self, read, va):
        self.read, self.va, self.data, self.pos, self.fetched = read, va, b"", 0, 0

    def take(self, n):
        if len(self.data) - self.pos < n:
            if self.fetched >= MAX_NAMES_BYTES:
                raise NotAvailable("kallsyms: kallsyms_names runs past any plausible size")
            more = _read(self.read, self.va + self.fetched, self.CHUNK, partial=True)
            self.data, self.pos = self.data[self.pos:] + more, 0
            self.fetched += len(more)
            if len(self.data) < n:
                raise NotAvailable("kallsyms: kallsyms_names is cut short")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def _read(read, va, size, *, partial=False):
    """``size`` bytes at ``va``; ``partial``: as much as is readable from ``va`` on (at least 1 page)."""
    try:
        return read(va, size)
    except Exception as e:
        if not partial:
            raise NotAvailable(f"kallsyms: kernel address {va:#x} is not in the dump ({_line(e)})") from None
    out, step = bytearray(), 4096
    while len(out) < size:
        n = min(step - ((va + len(out)) % step), size - len(out))
        try:
            out += read(va + len(out), n)
        except Exception as e:
            if not out:
                raise NotAvailable(f"kallsyms: kernel address {va:#x} is not in the dump ({_line(e)})") from None
            break
    return bytes(out)


def _line(e):
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _rules(offsets, base, offsets_va):
    """Candidate address rules: (name, function of (index, offset))."""
    if base is not None:
        yield "relative, absolute per-CPU", lambda i, o: o if o >= 0 else (base - 1 - o) & U64
        yield "relative", lambda i, o: (base + (o & 0xFFFFFFFF)) & U64
    yield "place-relative", lambda i, o: (offsets_va + 4 * i + o) & U64


def _choose_rule(offsets, base, offsets_va, names, vi):
    """The one rule under which VMCOREINFO's own symbols are where it says."""
    checks = []
    for name in vi.symbols:
        if name in _NOT_ADDRESSES:
            continue
        try:
            checks.append((name, vi.symbols[name]))
        except Exception:           # a garbled VMCOREINFO line: not a witness
            continue
    index = {}
    for i, n in enumerate(names):
        index.setdefault(n, i)
    witnesses = [(index[n], va) for n, va in checks if n in index]
    if len(witnesses) < 3:
        raise NotAvailable("kallsyms: too few VMCOREINFO symbols to check the tables against")
    for rule, addr_of in _rules(offsets, base, offsets_va):
        if all(addr_of(i, offsets[i]) == va for i, va in witnesses):
            return rule, [addr_of(i, o) for i, o in enumerate(offsets)]
    raise NotAvailable("kallsyms: no address rule puts VMCOREINFO's symbols where it says")
