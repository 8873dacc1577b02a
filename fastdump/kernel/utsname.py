"""The crashed kernel's utsname, read from its memory (for the kdump header).

crash checks ``machine`` and libkdumpfile wants sane fields, so we read the real
``init_uts_ns.name`` when VMCOREINFO says where it is, and otherwise build a
plausible one from OSRELEASE.
"""

from ..errors import FastdumpError

KERNEL_MAP_BASE = 0xFFFFFFFF80000000
FIELD = 65
MACHINES = {62: "x86_64", 3: "i686"}


def _virt_to_phys(source, va):
    """Kernel-image address to physical: through a PT_LOAD that maps it, else phys_base."""
    for p in getattr(source, "loads", ()):
        if p.vaddr <= va < p.vaddr + p.memsz and p.vaddr >= KERNEL_MAP_BASE:
            return p.paddr + (va - p.vaddr)
    vmci = source.vmcoreinfo
    if vmci is not None and vmci.phys_base is not None and va >= KERNEL_MAP_BASE:
        return (va - KERNEL_MAP_BASE + vmci.phys_base) & ((1 << 64) - 1)
    return None


def read_utsname(source):
    """Six strings: sysname, nodename, release, version, machine, domainname."""
    vmci = source.vmcoreinfo
    machine = MACHINES.get(getattr(source, "machine", 62), "x86_64")
    fallback = ["Linux", "(none)", (vmci.osrelease if vmci else None) or "unknown", "#1", machine, "(none)"]
    if vmci is None or "init_uts_ns" not in vmci.symbols:
        return fallback
    try:
        name_off = vmci.offsets.get("uts_namespace.name", 4)
        pa = _virt_to_phys(source, vmci.symbols["init_uts_ns"] + name_off)
    except FastdumpError:   # a garbled key: the header gets the plausible fallback
        return fallback
    if pa is None:
        return fallback
    try:
        raw = source.read_phys(pa, 6 * FIELD)
    except Exception:
        return fallback
    fields = [raw[i * FIELD:(i + 1) * FIELD].split(b"\0", 1)[0].decode("ascii", "replace") for i in range(6)]
    if fields[0] != "Linux" or not fields[2] or not fields[4]:
        return fallback
    return fields
