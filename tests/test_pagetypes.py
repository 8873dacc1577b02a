"""Encoding detection from VMCOREINFO keys (kernel/pagetypes.py), with the values of real kernels."""

import pytest

from fastdump.kernel import pagetypes as pt
from fastdump.kernel.vmcoreinfo import VmcoreInfo

COMMON = """SIZE(page)=64
OFFSET(page.flags)=0
OFFSET(page._refcount)=52
OFFSET(page.mapping)=24
OFFSET(page.lru)=8
OFFSET(page._mapcount)=48
OFFSET(page.private)=40
LENGTH(zone.free_area)=11
NUMBER(PG_hwpoison)=22
"""
K510 = COMMON + """OFFSET(page.compound_head)=8
OFFSET(page.compound_dtor)=16
OFFSET(page.compound_order)=17
NUMBER(PG_lru)=4
NUMBER(PG_private)=13
NUMBER(PG_swapcache)=10
NUMBER(PG_swapbacked)=19
NUMBER(PG_slab)=9
NUMBER(PG_head_mask)=65536
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129
NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257
NUMBER(HUGETLB_PAGE_DTOR)=2
"""
K612 = COMMON + """OFFSET(page.compound_head)=8
NUMBER(PG_lru)=5
NUMBER(PG_private)=14
NUMBER(PG_swapbacked)=17
NUMBER(PG_head_mask)=64
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)={buddy}
NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-251658240
NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)=-201326592
NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)=-184549376
"""
K72 = K612.replace("OFFSET(page.compound_head)", "OFFSET(page.compound_info)") + \
    "NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)=4143972352\n"


def detect(text):
    return pt.detect(VmcoreInfo(text))


def test_510():
    e = detect(K510)
    assert e.problems == []
    assert (e.type_mode, e.buddy_value, e.offline_value) == (pt.TYPE_FULL, 0xFFFFFF7F, 0xFFFFFEFF)
    assert (e.order_mode, e.off_order) == (pt.ORDER_U8, 17)
    assert (e.hugetlb_mode, e.off_dtor, e.hugetlb_dtor) == (pt.HUGETLB_DTOR, 16, 2)
    assert e.slab_mask == 1 << 9 and e.head_mask == 1 << 16


@pytest.mark.parametrize("buddy", ["-268435456", "4026531840", "0xf0000000"])
def test_612_any_spelling(buddy):
    e = detect(K612.format(buddy=buddy))
    assert e.problems == []
    assert e.type_mode == pt.TYPE_TOPBYTE and e.buddy_value == 0xF0000000
    assert e.slab_value == 0xF5000000 and e.hugetlb_value == 0xF4000000 and e.offline_value == 0xF1000000
    assert e.order_mode == pt.ORDER_FLAGS and e.hugetlb_mode == pt.HUGETLB_TYPE and e.slab_mask == 0
    assert e.chead_name == "compound_head"


def test_72():
    e = detect(K72.format(buddy="-268435456"))
    assert e.problems == []
    assert e.chead_name == "compound_info" and e.off_chead == 8
    assert e.unaccepted_value == 0xF7000000


def test_unknown_things_are_named():
    e = detect(COMMON)
    text = " ".join(e.problems)
    for word in ("PAGE_BUDDY_MAPCOUNT_VALUE", "PG_lru", "compound_head", "PG_head_mask"):
        assert word in text
    assert not e.can(pt.DL_FREE) and not e.can(pt.DL_CACHE) and not e.can(pt.DL_USER)


def test_inconsistent_type_value_ignored():
    e = detect(K612.format(buddy="-268435456").replace("-184549376", "-129"))
    assert e.slab_value == -1 and any("PAGE_SLAB_MAPCOUNT_VALUE" in p for p in e.problems)


def test_page_classes_come_from_one_enum():
    """Stats and estimates name the classes of the enum the compiled scan counts by
    (fastdump/_pageclass.pxd); the names are part of --stats-json."""
    from fastdump._pageclass import PageClass

    assert pt.CLASSES == ("free", "cache", "cache_private", "user", "hwpoison", "offline", "unclassified")
    assert [PageClass["C_" + c.upper()] for c in pt.CLASSES] == list(range(len(pt.CLASSES)))
