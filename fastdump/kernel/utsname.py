"""The crashed kernel's utsname, read from its memory (for the kdump header).

crash checks ``machine`` and libkdumpfile wants sane fields, so we read the real
``init_uts_ns.name`` when VMCOREINFO says where it is, and otherwise build a
plausible one from OSRELEASE.
"""

from .memory import KernelMemory

FIELD = 65
MACHINES = {62: "x86_64", 3: "i686"}


def read_utsname(source, erased=None):
    """Six strings: sysname, nodename, release, version, machine, domainname; ``erased``
    (--config's EraseList): read as the dump holds them, an erased nodename erased here too."""
    vmci = source.vmcoreinfo
    machine = MACHINES.get(getattr(source, "machine", 62), "x86_64")
    fallback = ["Linux", "(none)", (vmci.osrelease if vmci else None) or "unknown", "#1", machine, "(none)"]
    if vmci is None or "init_uts_ns" not in vmci.symbols:
        return fallback
    try:
        name_off = vmci.offsets.get("uts_namespace.name", 4)
        raw = KernelMemory(source, vmci, erased=erased).read(vmci.symbols["init_uts_ns"] + name_off, 6 * FIELD)
    except Exception:   # a garbled key, memory not in the dump: the header gets the plausible fallback
        return fallback
    fields = [raw[i * FIELD:(i + 1) * FIELD].split(b"\0", 1)[0].decode("ascii", "replace") for i in range(6)]
    if fields[0] != "Linux" or not fields[2] or not fields[4]:
        return fallback
    return fields
