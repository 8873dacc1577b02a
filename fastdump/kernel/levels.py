"""makedumpfile's dump level: which classes of pages a dump leaves out.

The bits, names and meaning are makedumpfile's (``DL_EXCLUDE_*``): each set bit
excludes one class of pages; 0 keeps everything, 31 leaves out all five."""

from enum import IntFlag


class DumpLevel(IntFlag):
    ZERO = 1            # pages of zeros (found by reading them)
    CACHE = 2           # page cache, without private data
    CACHE_PRIVATE = 4   # page cache with private data (buffers)
    USER = 8            # user process data
    FREE = 16           # free pages

    #: the bits judged from struct pages (every one but ZERO)
    CLASSES = CACHE | CACHE_PRIVATE | USER | FREE
    ALL = ZERO | CLASSES


MAX_LEVEL = int(DumpLevel.ALL)
