"""Run under /usr/bin/python3 (Debian's python3-libkdumpfile): print "pfn sha1" for
every page libkdumpfile can read from a dump, so tests compare with an
independent reader.  Usage: kdumpfile_pages.py DUMP MAX_PFN [zero_excluded]"""
import hashlib
import sys

import kdumpfile
from kdumpfile.exceptions import NoDataException

path, max_pfn = sys.argv[1], int(sys.argv[2])
k = kdumpfile.kdumpfile(path)
k.attr["addrxlat.ostype"] = "linux"
if len(sys.argv) > 3:
    k.attr["file.zero_excluded"] = 1
print("format", k.attr["file.format"])
out = []
for pfn in range(max_pfn):
    try:
        data = k.read(kdumpfile.KDUMP_MACHPHYSADDR, pfn * 4096, 4096)
    except NoDataException:
        continue
    out.append(f"{pfn} {hashlib.sha1(data).hexdigest()}")
print("\n".join(out))
