"""Stub of fastdump._pageclass: the numbers shared by the compiled scanner and Python."""

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

class TypeMode(IntEnum):
    TYPE_NONE = 0
    TYPE_FULL = 1
    TYPE_TOPBYTE = 2

class OrderMode(IntEnum):
    ORDER_NONE = 0
    ORDER_U8 = 1
    ORDER_FLAGS = 2

class HugetlbMode(IntEnum):
    HUGETLB_NONE = 0
    HUGETLB_DTOR = 1
    HUGETLB_FLAG = 2
    HUGETLB_TYPE = 3
