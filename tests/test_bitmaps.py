"""_core's bitmap helpers (LSB-first, the kdump on-disk order) against plain Python.

They count, clear and cut windows a word at a time; each edge (a range starting or
ending inside a byte or a word, a window limit reached inside a word) must give what
one bit at a time gives."""

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdump import _core


def bits(bm, lo, hi):
    return [(bm[i >> 3] >> (i & 7)) & 1 for i in range(lo, hi)]


def window_end(bm, start, end, max_pages):
    """Where the (max_pages + 1)-th set bit from ``start`` lies, or ``end``."""
    n = 0
    for i in range(start, end):
        if (bm[i >> 3] >> (i & 7)) & 1:
            if n == max_pages:
                return i
            n += 1
    return end


bitmaps = st.binary(min_size=0, max_size=300).map(bytearray) | \
    st.lists(st.sampled_from([0, 0xFF, 0x01, 0x80]), max_size=300).map(bytearray)


@settings(max_examples=300, deadline=None)
@given(bitmaps, st.data())
def test_counts_match_bit_by_bit(bm, data):
    nbits = data.draw(st.integers(0, len(bm) * 8))
    assert _core.bitmap_count(bm, nbits) == sum(bits(bm, 0, nbits))
    lo = data.draw(st.integers(0, nbits))
    assert _core.bitmap_count_range(bm, lo, nbits) == sum(bits(bm, lo, nbits))


@settings(max_examples=300, deadline=None)
@given(bitmaps, st.data())
def test_windows_match_bit_by_bit(bm, data):
    end = data.draw(st.integers(0, len(bm) * 8))
    start = data.draw(st.integers(0, end))
    max_pages = data.draw(st.integers(0, 700))
    assert _core.plan_window(bm, start, end, max_pages) == window_end(bm, start, end, max_pages)


@settings(max_examples=200, deadline=None)
@given(bitmaps, st.lists(st.tuples(st.integers(0, 2600), st.integers(0, 300)), max_size=8), st.data())
def test_cleared_runs_match_bit_by_bit(bm, runs, data):
    nbits = data.draw(st.integers(0, len(bm) * 8))
    base = data.draw(st.integers(0, 64))
    want = bytearray(bm)
    cleared = 0
    for first, count in runs:
        for pfn in range(max(first, base), min(first + count, base + nbits)):
            i = pfn - base
            cleared += (want[i >> 3] >> (i & 7)) & 1
            want[i >> 3] &= ~(1 << (i & 7)) & 0xFF
    pairs = array("Q", [x for run in runs for x in run])
    assert _core.bitmap_clear_runs(bm, pairs, base, nbits) == cleared
    assert bm == want


def test_a_range_past_the_bitmap_is_refused():
    bm = bytearray(b"\xff" * 16)
    for call in (lambda: _core.bitmap_count(bm, 129), lambda: _core.bitmap_count_range(bm, 0, 129),
                 lambda: _core.plan_window(bm, 0, 129, 10)):
        with pytest.raises(ValueError, match="past the end"):
            call()
    assert _core.bitmap_count(bm, 128) == 128 and _core.plan_window(bm, 0, 128, 100) == 100


@pytest.mark.parametrize("fill", [b"\xff", b"\x00", b"\x81", b"\x00\x00\x00\x00\x00\x00\x00\x01"])
def test_every_edge_near_a_word(fill):
    bm = bytearray((fill * 24)[:24])
    for start in (0, 1, 7, 8, 9, 63, 64, 65):
        for end in range(start, 24 * 8 + 1):
            assert _core.bitmap_count_range(bm, start, end) == sum(bits(bm, start, end))
            for max_pages in (0, 1, 7, 8, 63, 64, 65, 200):
                assert _core.plan_window(bm, start, end, max_pages) == window_end(bm, start, end, max_pages), \
                    (start, end, max_pages)
