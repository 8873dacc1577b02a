"""The VMCOREINFO note as a typed object.

The kernel prints one ``KEY=VALUE`` per line.  What a value means depends on the
key's form (SYMBOL is hex without 0x, NUMBER is signed decimal, a few arch
NUMBERs are 0x-hex, ...).  Features are detected from which keys exist, never
from OSRELEASE, so this object answers "is it there" as readily as "what is it".
"""

import re

from .errors import VmcoreinfoError

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


class VmcoreInfo:
    """Parsed VMCOREINFO.  First occurrence of a key wins (as in makedumpfile)."""

    def __init__(self, text):
        if isinstance(text, (bytes, bytearray, memoryview)):
            text = bytes(text).split(b"\0", 1)[0].decode("ascii", "replace")
        self.text = text
        self.raw = {}
        self.symbols, self.numbers, self.offsets = {}, {}, {}
        self.sizes, self.lengths = {}, {}
        tables = {"SYMBOL": self.symbols, "NUMBER": self.numbers, "OFFSET": self.offsets,
                  "SIZE": self.sizes, "LENGTH": self.lengths}
        for line in text.splitlines():
            if "=" not in line:
                continue
            key, value = line.split("=", 1)
            key = key.strip()
            if not key or key in self.raw:
                continue
            self.raw[key] = value.strip()
            m = _FORM.match(key)
            if not m:
                continue
            form, name = m.groups()
            if name in tables[form]:
                continue
            tables[form][name] = _parse_int(value, key, hex_default=(form == "SYMBOL"))
        if not self.raw:
            raise VmcoreinfoError("VMCOREINFO note is empty or not text")
        if "PAGESIZE" in self.raw:
            size = self._plain_int("PAGESIZE")
            if size <= 0 or size & (size - 1):
                raise VmcoreinfoError(f"VMCOREINFO: PAGESIZE={size} is not a power of two")
            if not MIN_PAGE_SIZE <= size <= MAX_PAGE_SIZE:
                raise VmcoreinfoError(f"VMCOREINFO: PAGESIZE={size} is outside "
                                      f"{MIN_PAGE_SIZE}..{MAX_PAGE_SIZE}")

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
        return self._plain_int("PAGESIZE") if "PAGESIZE" in self.raw else None

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
        """NUMBER(phys_base) as an unsigned 64-bit value (it may be negative under KASLR)."""
        value = self.numbers.get("phys_base")
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
