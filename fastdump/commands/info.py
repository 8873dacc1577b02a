"""``fastdump info FILE``: what a dump holds (format, kernel, pages per state, compression)."""

import json
from collections import Counter

from ..formats import codecs
from ..kernel.erase import recorded
from ..sources.opener import open_dump
from .parsing import Parser


def page_census(d):
    """Pages per state: for kdump files from the descriptors, for ELF from the segments."""
    if d.format == "kdump":
        counts, at_first, first = Counter(), Counter(), None
        total = d.n_descriptors()
        chunk = 1 << 14
        for i in range(0, total, chunk):
            descs = d.read_descriptors(i, min(chunk, total - i))
            for off, flags in zip(descs.offsets, descs.flags):
                if off == 0:
                    counts["lost"] += 1
                    continue
                name = codecs.flag_name(flags)
                counts[name] += 1
                if first is None or off < first:
                    first, at_first = off, Counter()
                if off == first:
                    at_first[name] += 1
        gap = d.data_gap(first) if first is not None else None
        if gap and gap[1] == first:          # the lowest page data is the shared zero page
            counts -= at_first
            counts["zero"] = sum(at_first.values())
        if gap and gap[0] and not d.incomplete:
            counts["unreadable"] = gap[0]    # in memory, left out: the source could not read them
        return {"dumped": total, **counts}
    stored = sum(e - s for s, e, _ in d.extents) // d.page_size
    described = sum(e - s for s, e in d.ram_ranges) // d.page_size
    unreadable = sum(b - a for a, b in d.unreadable_runs)
    return {"dumped": stored, "not_stored": described - stored, **({"unreadable": unreadable} if unreadable else {})}


def summary(path):
    with open_dump(path) as d:
        info = d.describe()
        info["eraseinfo"] = recorded(d).decode("ascii", "replace").rstrip("\0").splitlines()
        vmci = d.vmcoreinfo
        info["kernel"] = vmci.osrelease if vmci else None
        info["crashtime"] = vmci.crashtime if vmci else None
        info["pages"] = page_census(d)
        return info


def main(argv):
    p = Parser(prog="fastdump info", description=__doc__)
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    info = summary(args.file)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"{args.file}: {info['format']}" + (" (INCOMPLETE)" if info.get("incomplete") else ""))
    print(f"  kernel:      {info['kernel'] or 'unknown (no VMCOREINFO)'}")
    for key in ("compression", "dump_level", "header_version", "nr_cpus", "max_mapnr", "max_pfn", "segments"):
        if key in info:
            print(f"  {key + ':':<12} {info[key]}")
    print("  pages:       " + ", ".join(f"{k} {v}" for k, v in info["pages"].items()))
    for line in info["eraseinfo"]:
        print(f"  erased:      {line}")
    return 0
