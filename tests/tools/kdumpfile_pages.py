"""Run under /usr/bin/python3 (Debian's python3-libkdumpfile): print "pfn sha1" for
every page libkdumpfile can read from a dump, so tests compare with an
independent reader.  Usage: kdumpfile_pages.py DUMP MAX_PFN [zero_excluded|cut]
(MAX_PFN may be pfn ranges instead, ``FIRST:END,...``: the memory of a sparse machine)
("cut": a dump cut short; a page libkdumpfile reports as corrupt is counted on
the first line, not fatal: only a crash of the reader is)."""
import hashlib
import sys

import kdumpfile
from kdumpfile.exceptions import KDumpBaseException, NoDataException

path, limit = sys.argv[1], sys.argv[2]
ranges = [tuple(int(x) for x in r.split(":")) for r in limit.split(",")] if ":" in limit else [(0, int(limit))]
k = kdumpfile.kdumpfile(path)
mode = sys.argv[3] if len(sys.argv) > 3 else ""
try:
    k.attr["addrxlat.ostype"] = "linux"
except KDumpBaseException:   # a cut dump may lack the page holding init_uts_ns
    if mode != "cut":
        raise
if mode == "zero":
    k.attr["file.zero_excluded"] = 1
tolerated = KDumpBaseException if mode == "cut" else NoDataException
out, bad = [], 0
for pfn in (pfn for first, end in ranges for pfn in range(first, end)):
    try:
        data = k.read(kdumpfile.KDUMP_MACHPHYSADDR, pfn * 4096, 4096)
    except tolerated as e:
        bad += not isinstance(e, NoDataException)
        continue
    out.append(f"{pfn} {hashlib.sha1(data).hexdigest()}")
print("format", k.attr["file.format"], bad)
print("\n".join(out))
