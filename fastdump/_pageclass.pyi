"""Stub of fastdump._pageclass: the page classes shared by the compiled scanner and Python."""

from enum import IntEnum

class PageClass(IntEnum):
    C_FREE = 0
    C_CACHE = 1
    C_CACHE_PRIVATE = 2
    C_USER = 3
    C_HWPOISON = 4
    C_OFFLINE = 5
    C_UNCLASSIFIED = 6
    C_FREE_SEEN = 7
    C_PROTECTED = 8
    C_SLAB = 9
    NCOUNTS = 10
