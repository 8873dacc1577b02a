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
import sys
from array import array

from ..._kerneltables import TableError, kallsyms_entries, kallsyms_find
from ..vtop import U64
from . import NotAvailable

#: far more than any kernel has (a 7.x allyesconfig has about 400,000)
MAX_SYMBOLS = 4_000_000
#: kallsyms_names is at most a few bytes per token per symbol
MAX_NAMES_BYTES = 64 << 20
KSYM_NAME_LEN = 512
#: kallsyms_names is read in pieces of this size
NAMES_CHUNK = 1 << 20
#: VMCOREINFO symbols that are not the address of a same-named kallsyms symbol:
#: arrays given by value (mem_section, vmemmap), and x86's alias swapper_pg_dir.
_NOT_ADDRESSES = {"mem_section", "vmemmap", "swapper_pg_dir", "node_data", "contig_page_data"}
_TABLES = ("kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table", "kallsyms_token_index",
           "kallsyms_offsets")


class Symbols:
    """Name -> address (and type letter) of the crashed kernel's kallsyms symbols.

    Memory stays small (a capture kernel has little): the tables are kept as they are in
    the dump (a few MiB) and the names asked are found in one pass over the table per
    batch (milliseconds, compiled: a name's tokens are compared with a wanted name of its
    decoded length, without decoding the rest); answers are remembered."""

    def __init__(self, read, vmcoreinfo, *, prefetch=()):
        """``read(va, size)`` returns kernel virtual memory (raising on what is missing);
        ``prefetch``: names looked up in the same pass as VMCOREINFO's own symbols."""
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
        self.count = count
        self._where = where
        self._tokens = self._token_strings(where)
        self._names, self._starts = self._names_table(where["kallsyms_names"], count)
        self._offsets = array("i", _read(read, where["kallsyms_offsets"], 4 * count))
        if sys.byteorder != "little":
            self._offsets.byteswap()
        base = None
        if "kallsyms_relative_base" in where:
            base = struct.unpack("<Q", _read(read, where["kallsyms_relative_base"], 8))[0]
        self._found = {}            # name -> (index, type letter); None: not a symbol
        self.rule, self._addr_of = _choose_rule(self._offsets, base, where["kallsyms_offsets"], self, vi,
                                                prefetch)

    def _token_strings(self, where):
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

    def _names_table(self, va, count):
        """kallsyms_names as read (every entry checked to lie inside it) and where each entry
        starts, read forward in pieces until ``count`` entries are whole."""
        raw, starts = bytearray(), array("I", bytes(4 * count))
        done = pos = 0
        while done < count:
            if len(raw) >= MAX_NAMES_BYTES:
                raise NotAvailable("kallsyms: kallsyms_names runs past any plausible size")
            more = _read(self._read, va + len(raw), NAMES_CHUNK, partial=True)
            raw += more
            try:
                done, pos = kallsyms_entries(raw, count, starts, done, pos)
            except TableError as e:
                raise NotAvailable(f"kallsyms: {e}") from None
            if done < count and len(more) < NAMES_CHUNK:
                raise NotAvailable("kallsyms: kallsyms_names is cut short")
        del raw[pos:]
        return raw, starts      # not bytes(raw): a second 2 MiB of fresh pages, about 1.5 ms

    def find(self, names):
        """Look ``names`` up in one pass over the table (the first of same-named statics wins,
        as kallsyms_lookup_name); remembers the answers.  The decoding loop is compiled
        (fastdump/_kerneltables): a pass over a 6.12 kernel's 170,000 names takes
        milliseconds, not the 0.2 s it took in Python."""
        wanted = {n.encode("ascii", "replace") for n in names if n not in self._found}
        if wanted:
            self._tables()
            try:
                hits = kallsyms_find(self._names, self._starts, self._tokens, wanted)
            except TableError as e:
                raise NotAvailable(f"kallsyms: {e}") from None
            for name in wanted:
                self._found[name.decode("ascii", "replace")] = hits.get(name)
        return {n: self._found.get(n) for n in names}

    def compact(self):
        """Keep only the names already found; the tables (a few MiB) go, and a name not asked
        before is then read from the dump again (once, all the tables)."""
        self._names = None

    def _tables(self):
        if self._names is None:
            self._names, self._starts = self._names_table(self._where["kallsyms_names"], self.count)

    # -- look-ups -------------------------------------------------------------
    def address(self, name):
        """The address of ``name``; NotAvailable when the kernel has no such symbol."""
        hit = self.find([name])[name]
        if hit is None:
            raise NotAvailable(f"kallsyms: no symbol {name!r}")
        return self._addr_of(hit[0], self._offsets[hit[0]])

    def kind(self, name):
        """The type letter /proc/kallsyms shows (``T`` text, ``D`` data, ``b`` local bss...)."""
        self.address(name)
        return self._found[name][1]

    def extent(self, name):
        """Bytes from ``name`` to the next higher symbol address (the most its object can
        take), or None when no symbol lies above it."""
        at = self.address(name)
        above = [a for a in (self._addr_of(i, o) for i, o in enumerate(self._offsets)) if a > at]
        return min(above) - at if above else None

    def __contains__(self, name):
        return self.find([name])[name] is not None

    def __len__(self):
        return self.count


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


def _choose_rule(offsets, base, offsets_va, symbols, vi, prefetch=()):
    """The one rule under which VMCOREINFO's own symbols are where it says."""
    checks = []
    for name in vi.symbols:
        if name in _NOT_ADDRESSES:
            continue
        try:
            checks.append((name, vi.symbols[name]))
        except Exception:           # a garbled VMCOREINFO line: not a witness
            continue
    found = symbols.find([n for n, _ in checks] + list(prefetch))      # one pass over the names
    witnesses = [(found[n][0], va) for n, va in checks if found[n] is not None]
    if len(witnesses) < 3:
        raise NotAvailable("kallsyms: too few VMCOREINFO symbols to check the tables against")
    for rule, addr_of in _rules(offsets, base, offsets_va):
        if all(addr_of(i, offsets[i]) == va for i, va in witnesses):
            return rule, addr_of
    raise NotAvailable("kallsyms: no address rule puts VMCOREINFO's symbols where it says")
