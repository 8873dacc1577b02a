"""The VMCOREINFO note as a typed object.

The kernel prints one ``KEY=VALUE`` per line.  What a value means depends on the
key's form (SYMBOL is hex without 0x, NUMBER is signed decimal, a few arch
NUMBERs are 0x-hex, ...).  Features are detected from which keys exist, never
from OSRELEASE, so this object answers "is it there" as readily as "what is it".
"""

import re
from collections.abc import Mapping

from ..errors import VmcoreinfoError

_FORM = re.compile(r"^(SYMBOL|NUMBER|OFFSET|SIZE|LENGTH)\((.+)\)$")
U64 = (1 << 64) - 1
#: Every value the kernel prints is one 64-bit word, signed (%ld) or not (%lu, %lx).
MIN_VALUE, MAX_VALUE = -(1 << 63), U64
#: Base page sizes Linux uses for kdump (4 KiB x86 .. 256 KiB hexagon).
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 1 << 12, 1 << 18


def _parse_int(text, key, *, hex_default):
    text = text.strip()
    try:
        if len(text) > 40:   # 64-bit words only; also keeps int() fast on hostile input
            raise ValueError
        if text.lower().startswith(("0x", "-0x")):
            value = int(text, 16)
        elif hex_default:
            value = int(text, 16)
        else:
            try:
                value = int(text, 10)
            except ValueError:
                value = int(text, 16)  # makedumpfile's fallback for NUMBER/OFFSET
    except ValueError:
        raise VmcoreinfoError(f"VMCOREINFO: {key} has a bogus value {text[:40]!r}") from None
    if not MIN_VALUE <= value <= MAX_VALUE:
        raise VmcoreinfoError(f"VMCOREINFO: {key}={text[:40]} does not fit in 64 bits")
    return value


class _Values(Mapping):
    """One form's ``name -> value`` table, parsed on access.

    VMCOREINFO comes from a crashed kernel's memory: one garbled line must only
    fail the code that needs that key, never the whole note (``-d 0`` needs none).
    ``name in table`` says whether the key exists; reading a bogus value raises
    VmcoreinfoError naming it.
    """

    def __init__(self, form, hex_default):
        self.form, self.hex_default, self.text, self.cache = form, hex_default, {}, {}

    def __getitem__(self, name):
        if name not in self.cache:
            self.cache[name] = _parse_int(self.text[name], f"{self.form}({name})",
                                          hex_default=self.hex_default)
        return self.cache[name]

    def __contains__(self, name):
        return name in self.text

    def __iter__(self):
        return iter(self.text)

    def __len__(self):
        return len(self.text)


class VmcoreInfo:
    """Parsed VMCOREINFO.  First occurrence of a key wins (as in makedumpfile).
    Values are checked when they are used, not when the note is read."""

    def __init__(self, text):
        if isinstance(text, (bytes, bytearray, memoryview)):
            text = bytes(text).split(b"\0", 1)[0].decode("ascii", "replace")
        self.text = text
        self.raw = {}
        tables = {form: _Values(form, form == "SYMBOL") for form in ("SYMBOL", "NUMBER", "OFFSET", "SIZE", "LENGTH")}
        self.symbols, self.numbers, self.offsets = tables["SYMBOL"], tables["NUMBER"], tables["OFFSET"]
        self.sizes, self.lengths = tables["SIZE"], tables["LENGTH"]
        for line in text.splitlines():
            if "=" not in line:
                continue
            key, value = line.split("=", 1)
            key = key.strip()
            if not key or key in self.raw:
                continue
            self.raw[key] = value.strip()
            m = _FORM.match(key)
            if m:
                tables[m.group(1)].text.setdefault(m.group(2), value)
        if not self.raw:
            raise VmcoreinfoError("VMCOREINFO note is empty or not text")

    @classmethod
    def from_note(cls, desc):
        """The note's VMCOREINFO, or None when it holds no KEY=VALUE line at all:
        a garbled note is copied as it is, it just cannot be used."""
        try:
            return cls(desc)
        except VmcoreinfoError:
            return None

    # -- plain keys -------------------------------------------------------
    def _plain_int(self, key, *, hex_default=False):
        return _parse_int(self.raw[key], key, hex_default=hex_default)

    def has(self, key):
        """True if the exact key (e.g. ``NUMBER(PG_lru)``) is present."""
        return key in self.raw

    @property
    def osrelease(self):
        return self.raw.get("OSRELEASE")

    @property
    def build_id(self):
        return self.raw.get("BUILD-ID")

    @property
    def page_size(self):
        """PAGESIZE, checked (every page offset depends on it); None when absent."""
        if "PAGESIZE" not in self.raw:
            return None
        size = self._plain_int("PAGESIZE")
        if size <= 0 or size & (size - 1):
            raise VmcoreinfoError(f"VMCOREINFO: PAGESIZE={size} is not a power of two")
        if not MIN_PAGE_SIZE <= size <= MAX_PAGE_SIZE:
            raise VmcoreinfoError(f"VMCOREINFO: PAGESIZE={size} is outside {MIN_PAGE_SIZE}..{MAX_PAGE_SIZE}")
        return size

    @property
    def crashtime(self):
        """Seconds since the epoch; None when absent or not a plausible time_t."""
        if "CRASHTIME" not in self.raw:
            return None
        try:
            value = self._plain_int("CRASHTIME")
        except VmcoreinfoError:   # only the dump header's time stamp: not worth failing a dump
            return None
        return value if 0 <= value < 1 << 63 else None

    @property
    def kerneloffset(self):
        return self._plain_int("KERNELOFFSET", hex_default=True) if "KERNELOFFSET" in self.raw else None

    @property
    def phys_base(self):
        """NUMBER(phys_base) as an unsigned 64-bit value (it may be negative under KASLR);
        None when absent or bogus (the dump header's copy is informational)."""
        try:
            value = self.numbers.get("phys_base")
        except VmcoreinfoError:
            return None
        return None if value is None else value & U64

    # -- typed look-ups that name the missing key --------------------------
    def _need(self, table, form, name):
        try:
            return table[name]
        except KeyError:
            raise VmcoreinfoError(f"VMCOREINFO has no {form}({name})") from None

    def symbol(self, name):
        return self._need(self.symbols, "SYMBOL", name)

    def number(self, name):
        return self._need(self.numbers, "NUMBER", name)

    def offset(self, name):
        """``offset("page.flags")``."""
        return self._need(self.offsets, "OFFSET", name)

    def size(self, name):
        return self._need(self.sizes, "SIZE", name)

    def length(self, name):
        return self._need(self.lengths, "LENGTH", name)

    def summary(self):
        return {"osrelease": self.osrelease, "page_size": self.page_size,
                "crashtime": self.crashtime, "keys": len(self.raw)}
