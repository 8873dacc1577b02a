"""``fastdump estimate VMCORE``: pages per class and the size each dump level would keep."""

import json
import sys

from ..errors import SourceError, printable
from ..kernel.estimate import estimate
from ..kernel.levels import DumpLevel
from ..sources.opener import NOT_A_VMCORE, sniff
from ..sources.vmcore import ElfSource
from .parsing import Parser

#: the levels whose kept pages are printed: none, each bit alone, and the usual combinations
SHOWN_LEVELS = (0, *(int(b) for b in (DumpLevel.ZERO, DumpLevel.CACHE, DumpLevel.CACHE_PRIVATE, DumpLevel.USER,
                                       DumpLevel.FREE)),
                int(DumpLevel.ZERO | DumpLevel.FREE), int(DumpLevel.ALL & ~DumpLevel.USER), int(DumpLevel.ALL))


def open_source(path):
    """``path`` as an ElfSource; a dump file or anything else is one line naming it: estimate
    reads the struct pages of an ELF vmcore, which a filtered dump may no longer hold."""
    kind = sniff(path)
    if kind != "elf":
        raise SourceError(f"{path} is {NOT_A_VMCORE.get(kind, 'not an ELF file')}: estimate needs an ELF vmcore "
                          f"(e.g. /proc/vmcore)")
    return ElfSource(path)


def classify(src, path):
    """``estimate(src)``; a vmcore without VMCOREINFO is said as estimate's failure (no one
    dump level was asked for)."""
    if src.vmcoreinfo is None:
        raise SourceError(f"{path}: no VMCOREINFO note: estimate classifies pages by the kernel's "
                          f"struct pages and needs it")
    return estimate(src)


def main(argv=None):
    p = Parser(prog="fastdump estimate",
                                description="Classify struct pages (no page contents are read) and print "
                                            "how many pages each dump level 0..31 would keep.")
    p.add_argument("source", help="ELF vmcore (e.g. /proc/vmcore)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    with open_source(args.source) as src:
        est = classify(src, args.source)
        page = src.page_size
    if args.json:
        json.dump(est, sys.stdout, indent=1)
        print()
        return 0
    out = sys.stdout
    print(f"present pages: {est['present']}  ({est['present'] * page / 2**20:.1f} MiB)", file=out)
    unknown = est["unrecognised"]     # said beside the numbers, not only in stderr's warnings
    for cls, n in est["pages"].items():
        mark = "  NOT RECOGNISED (counted as kept)" if cls in unknown else ""
        print(f"  {printable(cls):<14} {n:>12}  ({n * page / 2**20:.1f} MiB){mark}", file=out)
    print("dump level -> kept pages (zero pages not subtracted):", file=out)
    for level in SHOWN_LEVELS:
        n = est["kept"][level]
        print(f"  -d {level:<2} {n:>12}  ({n * page / 2**20:.1f} MiB)", file=out)
    if unknown:
        print(f"not recognised in this kernel's struct pages: {printable(', '.join(unknown))}; those pages count as "
              f"kept at every level, so the levels that drop them keep fewer than shown", file=out)
    return 0
