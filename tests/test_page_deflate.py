"""fastdump's own zlib-format page compressor (src/page_deflate.h), which writes `-c` pages of
up to 32 KiB: every page must inflate with zlib to its bytes, the Huffman code-length limits
must hold on skewed data, and it must store no more than zlib's level 1 (makedumpfile's)."""

import random
import zlib

import pytest
from hypothesis import given, settings, strategies as st

from fastdump import _core


def roundtrip(data):
    z = _core.deflate_page(data)
    assert z[:2] == b"\x78\x01" and zlib.decompress(z) == data
    return z


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 257, 4095, 4096, 16384, 32768])
def test_edge_pages_inflate(size):
    rnd = random.Random(size)
    for data in (bytes(size), b"\xff" * size, rnd.randbytes(size), (b"ab" * size)[:size],
                 bytes(rnd.choice(b"xyz") for _ in range(size))):
        roundtrip(data)


def test_fibonacci_frequencies_need_the_length_limit():
    """Literal counts that grow like Fibonacci numbers give an unlimited Huffman tree deeper than
    the 15 bits DEFLATE allows; the stream must still inflate (the limit is applied)."""
    fib = [1, 1]
    while sum(fib) < 32768:
        fib.append(fib[-1] + fib[-2])
    syms = [i for i, f in enumerate(fib) for _ in range(f)][:32768]
    random.Random(1).shuffle(syms)      # no repeats to match: the literals carry the skew
    data = bytes(s * 11 % 256 for s in syms)
    assert len(fib) > 16
    roundtrip(data)


def test_a_repeat_after_random_bytes_is_still_found():
    """After many bytes without a match the compressor searches fewer positions (random and
    already compressed data cost less); a repeat that follows must still be found."""
    half = random.Random(5).randbytes(2048)
    assert len(roundtrip(half + half)) < 2048 + 200
    assert len(roundtrip(half[:1000] + bytes(3096))) < 1000 + 200


def test_size_limits_are_refused():
    with pytest.raises(ValueError):
        _core.deflate_page(b"")
    with pytest.raises(ValueError):
        _core.deflate_page(bytes(32769))


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(min_size=1, max_size=8192),
    st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=400).map(lambda parts: b"".join(parts)[:32768] or b"x"),
    st.tuples(st.binary(min_size=1, max_size=300), st.integers(1, 4096)).map(lambda t: (t[0] * t[1])[:32768]),
))
def test_any_page_inflates(data):
    roundtrip(data)


def test_real_pages_no_larger_than_zlib_level_1(source_pages):
    """On the synthetic kernel's pages, altogether, no more bytes than zlib's level 1 stores
    (makedumpfile -c), and every page inflates."""
    ours = zlib1 = 0
    for pfn, page in sorted(source_pages.items()):
        if page == bytes(len(page)):
            continue
        ours += min(len(roundtrip(page)), len(page))
        zlib1 += min(len(zlib.compress(page, 1)), len(page))
    assert zlib1 > 0 and ours <= zlib1, (ours, zlib1)


def kraft(lengths):
    return sum(2.0 ** -n for n in lengths if n)


def huffman_depth(freqs):
    """The deepest code of an unlimited Huffman code for these counts."""
    import heapq
    heap = [(f, 0) for f in freqs if f]
    heapq.heapify(heap)
    while len(heap) > 1:
        (a, da), (b, db) = heapq.heappop(heap), heapq.heappop(heap)
        heapq.heappush(heap, (a + b, max(da, db) + 1))
    return heap[0][1]


@pytest.mark.parametrize("limit", [7, 15])
def test_code_lengths_keep_the_limit_on_fibonacci_counts(limit):
    """Counts that grow like Fibonacci numbers make an unlimited Huffman tree as deep as it has
    symbols; DEFLATE allows 15 bits (7 for the code-length code).  The lengths must keep the
    limit and still form a complete prefix code."""
    fib = [1, 1]
    while len(fib) < 19:
        fib.append(fib[-1] + fib[-2])
    assert huffman_depth(fib) == 18 > limit
    lengths = _core.huffman_code_lengths(fib, limit)
    assert max(lengths) <= limit and min(lengths) >= 1 and kraft(lengths) == 1.0, lengths
    short = fib[:15]                                    # within the limit: plain Huffman
    assert max(_core.huffman_code_lengths(short, 15)) == huffman_depth(short) == 14


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 65535), min_size=2, max_size=288), st.sampled_from([7, 15]))
def test_code_lengths_form_a_prefix_code(freqs, limit):
    used = sum(1 for f in freqs if f)
    if used > 1 << limit:
        with pytest.raises(ValueError):
            _core.huffman_code_lengths(freqs, limit)
        return
    lengths = _core.huffman_code_lengths(freqs, limit)
    assert all((n > 0) == (f > 0) for n, f in zip(lengths, freqs)) if used > 1 else True
    assert max(lengths, default=0) <= limit
    assert kraft(lengths) == (1.0 if used > 1 else 0.5 * used)


def test_the_copy_jobs_write_these_streams(source_pages):
    """The `-c` copy path uses this compressor, not libdeflate (whose streams differ in size):
    a zlib Job stores, page by page, what deflate_page gives."""
    import array
    pages = [p for _, p in sorted(source_pages.items()) if p != bytes(len(p))][:2000]
    job = _core.Job(_core.Source(-1, array.array("Q"), 4096), _core.CODEC_ZLIB, 1)
    want = sum(min(len(roundtrip(p)), 4096) for p in pages)
    assert job.compress_pages(b"".join(pages)) == want


def test_pages_over_32_kib_inflate_to_their_bytes(tmp_path, source_pages):
    """Kernels with 64 KiB pages (arm64, ppc64) are past the page compressor's 32 KiB (a `-c`
    copy job gives them to libdeflate; this test does not tell which compressor wrote a page):
    every stored page must inflate with zlib to its bytes, zero pages are not stored, and a
    page that does not shrink is stored raw."""
    import array
    import os
    ps = 65536
    small = [p for _, p in sorted(source_pages.items()) if p != bytes(len(p))][:16 * 6]
    pages = [b"".join(small[i:i + 16]) for i in range(0, len(small), 16)]
    pages += [bytes(ps), random.Random(5).randbytes(ps), (b"kernel text " * 6000)[:ps]]
    path = tmp_path / "memory"
    path.write_bytes(b"".join(pages))
    fd = os.open(path, os.O_RDONLY)
    try:
        job = _core.Job(_core.Source(fd, array.array("Q", [0, len(pages) * ps, 0]), ps),
                        _core.CODEC_ZLIB, len(pages))
        job.zero_check = True
        job.setup(bytearray(b"\xff" * 2), 0, 0, len(pages))
        assert job.run() == 0 and job.n_pages == len(pages)
        data, off, kinds = bytes(job.data), 0, []
        for k in range(job.n_pages):
            pfn, size, flag = job.page_result(k)
            stored = data[off:off + size]
            off += size
            if flag & _core.PAGE_ZERO:
                kinds.append("zero")
                assert size == 0 and pages[pfn] == bytes(ps)
            elif flag & _core.CODEC_MASK:
                kinds.append("zlib")
                assert size < ps and zlib.decompress(stored) == pages[pfn]     # Python's zlib, not ours
            else:
                kinds.append("raw")
                assert stored == pages[pfn]
        assert off == len(data)
        assert kinds.count("zero") == 1 and kinds.count("raw") == 1 and kinds.count("zlib") == len(pages) - 2
    finally:
        os.close(fd)
