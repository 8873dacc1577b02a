"""The public API as a capture script uses it (README, fastdump/__init__.py), checked by mypy in
tests/test_packaging.py with untyped calls refused: every name used here must be typed, and a
wrong annotation or stub shows up as a type error.  Never run."""

import pathlib
from typing import Dict, List, Optional

import fastdump
from fastdump import _core
from fastdump._pageclass import PageClass
from fastdump.errors import FastdumpError, UsageError


def capture(src: str, dest: pathlib.Path) -> int:
    try:
        stats: fastdump.Stats = fastdump.dump(src, dest, level=[31, 1], compress="zstd", threads=2,
                                              warn=print, targets=["/var/crash/"], stats_json=b"/tmp/s.json")
    except UsageError as e:
        print(e)
        return e.exit_status
    except FastdumpError as e:
        return e.exit_status
    excluded: Dict[str, int] = stats.excluded
    unreadable: List[int] = stats.unreadable_pfns
    print(excluded, unreadable, stats.to_dict()["pages_kept"] + stats.pages_kept, stats.seconds * 2.0)
    with fastdump.open(dest) as d:
        page: bytes = d.read_pfn(0x1000) + d.read_phys(0, 16, zero_fill=True)
        first: Optional[int] = next(iter(d.pfns()), None)
        kept: bool = d.is_dumped(first or 0)
        size: int = d.page_size * d.max_mapnr + len(d.note_bytes) + len(d.notes)
        osrelease = d.vmcoreinfo.osrelease if d.vmcoreinfo else None
        print(page, kept, size, osrelease, d.format.upper(), d.describe().get("format"))
    return 0


def core(buf: bytearray) -> int:
    versions: Dict[str, str] = _core.library_versions()
    runs = _core.bitmap_runs(buf, len(buf) * 8)
    counts = bytearray(8 * PageClass.NCOUNTS)
    return _core.bitmap_count(buf, len(buf) * 8) + len(versions) + sum(b - a for a, b in runs) + len(counts)
