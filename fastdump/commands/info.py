"""``fastdump info FILE``: what a dump holds (format, kernel, pages per state, compression)."""

import json
from collections import Counter

from ..errors import FormatError, printable
from ..formats import codecs, kdump
from ..kernel.erase import recorded
from ..sources.opener import open_dump
from .parsing import Parser


def page_census(d):
    """Pages per state: for kdump files from the descriptors, for ELF from the segments."""
    if d.format == "kdump":
        return _kdump_census(d)[0]
    return _elf_census(d)


def _kdump_census(d):
    """The kdump page census, and where the file ends at the least by what it says: past
    its descriptor table, and past the page data (and eraseinfo) the descriptors name.
    Descriptors the file does not hold (it ends inside the table) are counted as
    ``past_end``; the table's end is then all that is known."""
    counts, at_first, first, end = Counter(), Counter(), None, 0
    total, held = d.n_descriptors(), 0
    for descs in d.descriptor_chunks():
        held += len(descs)
        for off, size, flags in zip(descs.offsets, descs.sizes, descs.flags):
            if off == 0:
                counts["lost"] += 1
                continue
            end = max(end, off + size)
            name = codecs.flag_name(flags)
            counts[name] += 1
            if first is None or off < first:
                first, at_first = off, Counter()
            if off == first:
                at_first[name] += 1
    if held < total:
        counts["past_end"] = total - held
        end = 0
    gap = d.data_gap(first) if first is not None else None
    if gap and gap[1] == first:          # the lowest page data is the shared zero page
        counts -= at_first
        counts["zero"] = sum(at_first.values())
    if gap and gap[0] and not d.incomplete:
        counts["unreadable"] = gap[0]    # in memory, left out: the source could not read them
    end = max(end, d.desc_off + kdump.DESC.size * total)
    if d.header_version >= 5 and d.offset_eraseinfo and d.size_eraseinfo:
        end = max(end, d.offset_eraseinfo + d.size_eraseinfo)
    return {"dumped": total, **counts}, end


def _elf_census(d):
    stored = sum(e - s for s, e, _ in d.extents) // d.page_size
    described = sum(e - s for s, e in d.ram_ranges) // d.page_size
    unreadable = sum(b - a for a, b in d.unreadable_runs)
    return {"dumped": stored, "not_stored": described - stored, **({"unreadable": unreadable} if unreadable else {})}


def summary(path):
    with open_dump(path) as d:
        info = d.describe()
        try:
            info["eraseinfo"] = recorded(d).decode("ascii", "replace").rstrip("\0").splitlines()
        except FormatError:          # past the end of a file cut short (said below)
            info["eraseinfo"] = ["(the record of erased data lies past the end of the file)"]
        vmci = d.vmcoreinfo
        info["kernel"] = vmci.osrelease if vmci else None
        info["crashtime"] = vmci.crashtime if vmci else None
        if d.format == "kdump":
            info["pages"], end = _kdump_census(d)
        else:   # the reader opens an ELF file cut short only when it is flagged incomplete
            info["pages"], end = _elf_census(d), max((p.offset + p.filesz for p in d.header.phdrs), default=0)
        # cut short: cheaply told, from where the descriptors, the page data they name or the
        # PT_LOADs end (the pages themselves are not read)
        size = getattr(d, "file_size", None)
        info["truncated"] = size is not None and end > size
        if info["truncated"]:
            info["file_size"], info["expected_size"] = size, end
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
    what = "PT_LOAD data ends" if info["format"] == "elf" else \
        "page descriptors end" if info["pages"].get("past_end") else "page data ends"
    # every string below may come from the dump (or a file name): printed through printable()
    print(f"{printable(args.file)}: {printable(info['format'])}" + (" (INCOMPLETE)" if info.get("incomplete") else "")
          + (f" (TRUNCATED: the file ends at {info['file_size']} bytes, its {what} at {info['expected_size']})"
             if info["truncated"] else ""))
    print(f"  kernel:      {printable(info['kernel'] or 'unknown (no VMCOREINFO)')}")
    for key in ("compression", "dump_level", "header_version", "nr_cpus", "max_mapnr", "max_pfn", "segments"):
        if key in info:
            print(f"  {key + ':':<12} {printable(info[key])}")
    print("  pages:       " + ", ".join(f"{printable(k)} {printable(v)}" for k, v in info["pages"].items()))
    for line in info["eraseinfo"]:
        print(f"  erased:      {printable(line)}")
    return 0
