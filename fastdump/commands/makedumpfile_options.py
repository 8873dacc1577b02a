"""makedumpfile 1.7.9's command line, option by option: what fastdump does with each.

Distribution scripts pass their makedumpfile options unchanged (kdump-tools' MAKEDUMP_ARGS,
kdump-utils' core_collector, mkdumprd's ``makedumpfile --check-params``).  So every option
makedumpfile accepts is either implemented by the main parser (``cli.build_parser``), accepted
with a one-line note when it only tunes makedumpfile's own memory use or debug output, or
refused with one line when fastdump cannot honour it.  makedumpfile's rules between options
(its check_param_for_*) are enforced here and in ``DumpOptions.check``, so ``--check-params``
answers as makedumpfile would.  fastdump is more lenient in four places only: ``--num-threads``
with ``--split`` or ``-E``, ``--non-cyclic`` (gone from makedumpfile), ``--config`` without ``-x``
(the dump's own kallsyms and BTF locate the data), and no target without ``-F`` when stdout is
not a terminal (kdump-utils' ssh form for a collector not named makedumpfile).
"""

import argparse
import re
import sys

from ..errors import UsageError

#: options that only tune makedumpfile's internals: (flags, takes a value, what fastdump does instead)
TUNING = (
    (("-b",), True, "fastdump's buffers are sized by itself"),
    (("--cyclic-buffer",), True, "fastdump's buffers are sized by itself"),
    (("--non-cyclic",), False, "fastdump's bitmaps are bounded by itself"),
    (("--work-dir",), True, "fastdump keeps its bitmaps in memory (bounded) and needs no work directory"),
    (("-D",), False, "fastdump has no debug messages (FASTDUMP_DEBUG=1 shows a traceback on error)"),
    (("-e",), False, ("fastdump keeps every page of the mem_map (the struct pages are kernel data), "
                      "so a dump may be a little larger than makedumpfile's with -e")),
)

#: options fastdump refuses: (flags, takes a value, why)
REFUSED = (
    (("--eppic",), True, "eppic filter scripts are not supported by fastdump"),
    (("-X", "--exclude-xen-dom"), False, "Xen dumps are not supported by fastdump"),
    (("--xen-syms",), True, "Xen dumps are not supported by fastdump"),
    (("--xen-vmcoreinfo",), True, "Xen dumps are not supported by fastdump"),
    (("--xen_phys_start",), True, "Xen dumps are not supported by fastdump"),
    (("--diskset",), True, "sadump disk sets are not supported by fastdump"),
    (("-g",), True, ("generating VMCOREINFO from a vmlinux needs its debug info, which fastdump does not "
                     "read; run makedumpfile -g, then fastdump -i FILE")),
)

_WHY = {flag: why for flags, _, why in TUNING + REFUSED for flag in flags}


class _Note(argparse.Action):
    """A tuning option: accepted, named in one note."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.tuning = [*namespace.tuning, option_string]
        if option_string == "--work-dir":
            namespace.work_dir = values


class _Refuse(argparse.Action):
    """An option fastdump cannot honour: recorded, refused after parsing (rules between
    options come first, as makedumpfile checks them before anything else)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.refused = [*namespace.refused, (option_string, values)]


def add_arguments(p):
    """makedumpfile's options that fastdump does not otherwise implement."""
    for flags, value in [(f, v) for f, v, _ in TUNING]:
        p.add_argument(*flags, action=_Note, nargs=None if value else 0, metavar="X" if value else None,
                       help=f"makedumpfile tuning: accepted and ignored ({_WHY[flags[0]]})")
    for flags, value in [(f, v) for f, v, _ in REFUSED]:
        p.add_argument(*flags, action=_Refuse, nargs=None if value else 0, metavar="X" if value else None,
                       help=f"refused: {_WHY[flags[0]]}")
    p.add_argument("--config", dest="erase_config", metavar="FILE",
                   help="makedumpfile's filter config: erase the kernel data it names (makedumpfile.conf(5)), "
                        "found with the dump's own kallsyms and BTF (fastdump's TOML settings: --settings)")
    p.add_argument("-L", dest="size_limit", type=memparse, metavar="SIZE",
                   help="stop when the dump would exceed SIZE bytes (K, M, G, T suffixes): the dump is left "
                        "flagged incomplete and the run fails, as makedumpfile")
    p.add_argument("--dry-run", action="store_true", help="do everything but write the dump")
    p.add_argument("--show-stats", action="store_true", help="print makedumpfile's page statistics")
    p.add_argument("--check-params", action="store_true",
                   help="only check the arguments, as a real run would; open nothing; exit 0 or non-zero")
    p.add_argument("--vtop", type=_address, metavar="VADDR",
                   help="print the physical address of a kernel virtual address, then dump")
    p.add_argument("--partial-dmesg", action="store_true", help="with --dump-dmesg: only the messages since "
                   "the log was last cleared")
    p.set_defaults(tuning=[], refused=[], work_dir=None)


def check(args):
    """makedumpfile's rules between options, then the refused options: one UsageError."""
    if args.partial_dmesg and not getattr(args, "dump_dmesg", False):
        raise UsageError("--partial-dmesg needs --dump-dmesg")
    if "-e" in args.tuning and args.work_dir is None:
        raise UsageError("-e needs --work-dir (as in makedumpfile)")
    if args.vmcoreinfo_file and args.vmlinux:
        raise UsageError("-i and -x cannot be used together (as in makedumpfile)")
    if args.erase_config and _toml_hint(args.erase_config):
        raise UsageError(f"--config is makedumpfile's filter config{_toml_hint(args.erase_config)}")
    for option, _ in args.refused:
        raise UsageError(f"{option}: {_WHY[option]}")


def note(args):
    """The one note for the accepted tuning options, or None."""
    if not args.tuning:
        return None
    names = list(dict.fromkeys(args.tuning))
    return (f"note: {', '.join(names)} only tune makedumpfile's internals; fastdump ignores them "
            f"({'; '.join(dict.fromkeys(_WHY[n] for n in names))})")


def _toml_hint(path):
    """fastdump used to read its TOML settings with --config: say so when it looks like one."""
    from .cli import CONFIG_KEYS
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return ""
    keys = re.findall(r"(?m)^\s*([a-z_]+)\s*=", head)
    if keys and all(k in CONFIG_KEYS for k in keys):
        return f"; {path} looks like fastdump's settings file: use --settings {path}"
    return ""


_SUFFIX = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}


def memparse(text):
    """makedumpfile's size: an integer (0x.. hex, 0.. octal) with an optional K/M/G/T/P/E
    suffix (powers of 1024); zero is invalid."""
    m = re.fullmatch(r"\s*(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([kKmMgGtTpPeE]?)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 512M)")
    digits = m.group(1)
    base = 16 if digits[:2] in ("0x", "0X") else 8 if digits.startswith("0") else 10
    value = int(digits, base) << _SUFFIX.get(m.group(2).lower(), 0)
    if not 0 < value < 1 << 63:
        raise argparse.ArgumentTypeError(f"size {text!r} is out of range")
    return value


def _address(text):
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad address {text!r}") from None
    if not 0 < value < 1 << 64:
        raise argparse.ArgumentTypeError(f"address {text!r} is out of range")
    return value


def print_vtop(source, vaddr, out):
    """makedumpfile --vtop: the translation, before the dump."""
    from ..kernel.vtop import X86_64Vtop
    from ..sources.vmcore import ElfSource
    with ElfSource(source) as src:
        paddr = X86_64Vtop(src).translate(vaddr)
    print(f"\nTranslating virtual address {vaddr:x} to physical address.\nVIRTUAL           PHYSICAL\n"
          f"{vaddr:16x}  {paddr:x}\n", file=out, flush=True)


def print_report(stats, out=None):
    """makedumpfile --show-stats: its excluded-page report (the lines fastdump can fill)."""
    out = out or sys.stdout
    ex = stats.excluded
    original = stats.pages_scanned
    excluded = sum(ex.values())
    lines = ["", f"Original pages  : 0x{original:016x}", f"  Excluded pages   : 0x{excluded:016x}"]
    for key, name in (("zero", "Pages filled with zero "), ("cache", "Non-private cache pages"),
                      ("cache_private", "Private cache pages    "), ("user", "User process data pages"),
                      ("free", "Free pages             "), ("hwpoison", "Hwpoison pages         "),
                      ("offline", "Offline pages          ")):
        lines.append(f"    {name} : 0x{ex.get(key, 0):016x}")
    lines.append(f"  Remaining pages  : 0x{original - excluded:016x}")
    if original:
        lines.append(f"  (The number of pages is reduced to {(original - excluded) * 100 // original}%.)")
    lines += ["--------------------------------------------------", f"Write bytes     : {stats.bytes_written}", ""]
    print("\n".join(lines), file=out, flush=True)
