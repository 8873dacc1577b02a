"""``dump.kernel``: symbols and struct layouts of the crashed kernel, checked before use.

    k = fastdump.open("vmcore").kernel
    k.symbol("jiffies")                      # address
    k.sizeof("per_cpu_pages")                # bytes
    k.offsetof("zone", "per_cpu_pageset")    # bytes
    k.read_u64(k.symbol("jiffies"))

The BTF is trusted only after it agrees with every ``OFFSET()`` and ``SIZE()``
in VMCOREINFO that it can answer; the kallsyms address rule only after it puts
VMCOREINFO's ``SYMBOL()``s where VMCOREINFO says.  Anything else raises
:class:`NotAvailable` (a FastdumpError) with one line saying why.
"""

import struct

from ..memory import KernelMemory
from . import Disagreement, NotAvailable
from .btf import Btf, MAX_BTF_BYTES
from .kallsyms import Symbols

#: symbols found in the same pass as the checks (BTF, and what the per-CPU free lists need)
PREFETCH = ("__start_BTF", "__stop_BTF", "nr_cpu_ids", "__cpu_online_mask", "__per_cpu_offset")
#: no kernel struct is near this; a larger answer means a corrupt BTF
MAX_STRUCT_BYTES = 1 << 24


class Member:
    """Where a member lies: ``offset`` in bytes, ``bit_offset``/``bit_size`` for bitfields."""

    __slots__ = ("offset", "size", "bit_offset", "bit_size", "type_id")

    def __init__(self, bit_offset, bit_size, size, type_id):
        self.offset, self.bit_offset, self.bit_size, self.size, self.type_id = (
            bit_offset // 8, bit_offset, bit_size, size, type_id)

    def __repr__(self):
        return f"Member(offset={self.offset}, size={self.size}, bit_size={self.bit_size})"


class Kernel:
    """The crashed kernel of one opened dump.  Tables are read on first use, once."""

    def __init__(self, dump, *, read=None):
        """``read(va, size)``: how kernel virtual memory is read (default: the dump's page tables)."""
        self.dump = dump
        self._read = read
        self._memory = None
        self._symbols = None
        self._btf = None
        self._failed = {}

    # -- memory -------------------------------------------------------------------
    def read(self, va, size):
        """Kernel virtual memory; NotAvailable where the dump does not hold it."""
        if self._read is not None:
            return self._read(va, size)
        if self._memory is None:
            if getattr(self.dump, "vmcoreinfo", None) is None:
                raise NotAvailable("this dump has no VMCOREINFO")
            if getattr(self.dump, "machine", 62) != 62:
                raise NotAvailable("kernel memory reads support x86_64 dumps only")
            self._memory = KernelMemory(self.dump, error=NotAvailable)
        return self._memory.read(va, size)

    def translate(self, va):
        """The physical address of kernel virtual address ``va`` (NotAvailable if none)."""
        self.read(va, 1)               # the same checks (and memory object) as a read
        if self._memory is None:
            raise NotAvailable("this kernel's memory is not read through its page tables")
        return self._memory.translate(va)

    def read_u64(self, va):
        return struct.unpack("<Q", self.read(va, 8))[0]

    def read_u32(self, va):
        return struct.unpack("<I", self.read(va, 4))[0]

    # -- tables, each built once (a failure is remembered, not retried) ----------------
    def _once(self, what, build):
        if what in self._failed:
            raise self._failed[what]
        try:
            return build()
        except NotAvailable as e:
            self._failed[what] = e
            raise

    @property
    def symbols(self):
        if self._symbols is None:
            self._symbols = self._once("symbols", lambda: Symbols(self.read, self.dump.vmcoreinfo,
                                                                  prefetch=PREFETCH))
        return self._symbols

    @property
    def btf(self):
        if self._btf is None:
            self._btf = self._once("btf", self._load_btf)
        return self._btf

    def _load_btf(self):
        start, stop = self.symbols.address("__start_BTF"), self.symbols.address("__stop_BTF")
        self.symbols.compact()          # the name tables are not needed while BTF is in memory
        if not 0 < stop - start <= MAX_BTF_BYTES:
            raise NotAvailable(f"BTF: __stop_BTF - __start_BTF = {stop - start} bytes is not plausible")
        blob = bytearray(stop - start)        # read in pieces: one copy of the blob, not two
        for off in range(0, len(blob), 1 << 20):
            blob[off:off + (1 << 20)] = self.read(start + off, min(1 << 20, len(blob) - off))
        btf = Btf(blob)
        _agree_with_vmcoreinfo(btf, self.dump.vmcoreinfo)
        return btf

    # -- questions ---------------------------------------------------------------------
    def symbol(self, name):
        """Address of a kernel symbol (per-CPU symbols: their offset in the per-CPU area)."""
        return self.symbols.address(name)

    def sizeof(self, struct_name):
        size = self.btf.sizeof(self.btf.struct_id(struct_name))
        if not 0 < size <= MAX_STRUCT_BYTES:
            raise NotAvailable(f"BTF: sizeof({struct_name}) = {size} is not plausible")
        return size

    def member(self, struct_name, path):
        btf = self.btf
        sid = btf.struct_id(struct_name)
        bits, tid, bit_size = btf.member(sid, path)
        size = (bit_size + 7) // 8 if bit_size else btf.sizeof(tid)
        if bits // 8 + size > self.sizeof(struct_name) and "[" not in path:
            raise NotAvailable(f"BTF: {struct_name}.{path} lies outside its struct")
        return Member(bits, bit_size, size, tid)

    def length(self, struct_name, path):
        """Element count of an array member (``pglist_data.node_zones``: MAX_NR_ZONES)."""
        n = self.btf.length(self.member(struct_name, path).type_id)
        if not 0 < n <= 1 << 20:
            raise NotAvailable(f"BTF: {struct_name}.{path} has {n} elements")
        return n

    def enumerator(self, name):
        """The value of an enum constant (``MIGRATE_PCPTYPES``)."""
        value = self.btf.enumerator(name)
        if value is None:
            raise NotAvailable(f"BTF: no enumerator {name}")
        return value

    def offsetof(self, struct_name, path):
        m = self.member(struct_name, path)
        if m.bit_size or m.bit_offset % 8:
            raise NotAvailable(f"{struct_name}.{path} is a bitfield")
        return m.offset

    def forget(self):
        """Let go of the tables (a few MiB): a capture kernel needs that memory for the copy.
        They are read again if asked for."""
        self._symbols = self._btf = None

    def available(self):
        """One line: what this dump can answer."""
        parts = []
        for what, get in (("kallsyms", lambda: f"{len(self.symbols)} symbols"),
                          ("BTF", lambda: f"{len(self.btf) - 1} types")):
            try:
                parts.append(f"{what}: {get()}")
            except NotAvailable as e:
                parts.append(f"{what}: not available ({e})")
        return "; ".join(parts)


def _agree_with_vmcoreinfo(btf, vi):
    """BTF is used only if it gives every OFFSET()/SIZE() of VMCOREINFO it knows the same value."""
    agreed = 0
    for name in list(vi.offsets):
        st, _, path = name.partition(".")
        try:
            want = vi.offsets[name]
            got = btf.member(btf.struct_id(st), path)[0] // 8
        except Exception:        # not in BTF (or a garbled VMCOREINFO line): no witness
            continue
        if got != want:
            raise Disagreement(f"BTF says OFFSET({name})={got}, VMCOREINFO says {want}", name)
        agreed += 1
    for name in list(vi.sizes):
        try:
            want = vi.sizes[name]
            got = btf.sizeof(btf.struct_id(name))
        except Exception:
            continue
        if got != want:
            raise Disagreement(f"BTF says SIZE({name})={got}, VMCOREINFO says {want}", name)
        agreed += 1
    if agreed == 0:
        raise NotAvailable("BTF: nothing in VMCOREINFO to check it against")

