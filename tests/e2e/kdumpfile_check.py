"""Read pages of a dump with libkdumpfile and compare their SHA-1 with expectations.

Runs under the *system* interpreter (/usr/bin/python3), which has Debian's
python3-libkdumpfile:

    /usr/bin/python3 kdumpfile_check.py DUMP EXPECT.json

EXPECT.json: {"pfns": {"<pfn>": "<sha1 hex>" or null}}; null means "the dump
must not hold this page" (reading it must fail or give zeros in formats that
store excluded pages as zero).  Prints one JSON line:
{"format": ..., "checked": N, "mismatch": [...], "unreadable": [...], "errors": ...}
"""

import hashlib
import json
import sys


def main():
    import kdumpfile
    dump, expect_path = sys.argv[1], sys.argv[2]
    with open(expect_path) as f:
        expect = json.load(f)["pfns"]
    k = kdumpfile.kdumpfile(dump)
    # Physical reads need no page-table setup; some versions still want the
    # OS type set so the VMCOREINFO is parsed.
    try:
        k.attr["addrxlat.ostype"] = "linux"
    except Exception:
        pass
    fmt = None
    try:
        fmt = str(k.attr["file.format"])
    except Exception:
        pass
    mismatch, unreadable, absent_ok, present_unexpected = [], [], 0, []
    for spfn, sha in expect.items():
        pfn = int(spfn)
        try:
            data = k.read(kdumpfile.KDUMP_MACHPHYSADDR, pfn * 4096, 4096)
        except Exception as e:  # excluded page, or an error
            if sha is None:
                absent_ok += 1
            else:
                unreadable.append([pfn, type(e).__name__ + ": " + str(e)[:100]])
            continue
        got = hashlib.sha1(bytes(data)).hexdigest()
        if sha is None:
            if any(data):
                present_unexpected.append(pfn)
            else:
                absent_ok += 1
        elif got != sha:
            mismatch.append(pfn)
    print(json.dumps({"format": fmt, "checked": len(expect), "mismatch": mismatch[:50],
                      "n_mismatch": len(mismatch), "unreadable": unreadable[:20],
                      "n_unreadable": len(unreadable), "absent_ok": absent_ok,
                      "present_unexpected": present_unexpected[:50]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
