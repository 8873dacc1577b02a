"""The compiled modules refuse arguments that would take them outside their buffers.

They are built without bounds checks, so every size, index and offset a Python caller
gives is checked at the entry.  Today's callers keep them in range; these calls are
what a future caller's slip would look like.  Each runs in a child process: a
crash there fails this test instead of taking pytest down."""

import subprocess
import sys
import textwrap

import pytest

PRELUDE = textwrap.dedent("""
    import os, tempfile
    from array import array
    from fastdump import _core, _pagescan

    def source(npages=64, ps=4096):
        f = tempfile.TemporaryFile()
        f.write(os.urandom(npages * ps)); f.flush()
        return _core.Source(f.fileno(), array("Q", [0, npages * ps, 0]), ps), f

    class Layout:        # a 6.12-like struct page (limits.check's view of it)
        struct_size, off_flags, off_mapping, off_mapcount, off_private, off_chead = 64, 0, 24, 48, 40, 8
        lru_mask = private_mask = swapcache_mask = swapbacked_mask = slab_mask = hwpoison_mask = 0
        head_mask = hugetlb_flag_mask = type_mode = order_mode = hugetlb_mode = 0
        buddy_value = offline_value = slab_value = hugetlb_value = unaccepted_value = hugetlb_dtor = -1
        off_order = off_dtor = -1
        nr_orders = 11

    def params(**change):
        e = Layout()
        for k, v in change.items():
            setattr(e, k, v)
        return _pagescan.ScanParams(e, level=31, section_shift=15)
""")

CASES = {
    "bitmap_set_range end wraps": ("ValueError", "_core.bitmap_set_range(bytearray(16), 2**64 - 8, 16)"),
    "bitmap_count_range reversed": ("ValueError", "_core.bitmap_count_range(bytes(16), 2**64 - 8, 64)"),
    "crc_blocks carry past its block": ("ValueError", "_core.crc_blocks(b'0123456789', 4096, 0, 4096)"),
    "crc_blocks carry near the top of size_t": ("accepted", """
        out, crc, have = _core.crc_blocks(b'0123456789', 2**64 - 1, 0, 2**64 - 2)
        assert len(out) == 4 and have == 9, (out, have)"""),
    "Source page size 0": ("ValueError", "_core.Source(-1, array('Q'), 0)"),
    "Source page size not a power of two": ("ValueError", "_core.Source(-1, array('Q'), 6000)"),
    "Job of no pages": ("ValueError", "src, f = source(); _core.Job(src, _core.CODEC_NONE, 0)"),
    "erase piece wraps": ("ValueError",
                          "src, f = source(); src.set_erase(array('Q', [0, 8, 2**64 - 8, 0x58]))"),
    "window past its bitmap": ("ValueError", """
        src, f = source(); job = _core.Job(src, _core.CODEC_NONE, 64)
        job.setup(bytearray(8), 0, 0, 1 << 40)"""),
    "zero page outside the bitmap": ("ValueError", """
        src, f = source(); os.pwrite(f.fileno(), bytes(4096 * 64), 0)
        job = _core.Job(src, _core.CODEC_NONE, 64)
        job.setup(bytearray(b'\\xff' * 8), 0, 0, 64); job.zero_check = True; job.scan_only = True
        assert job.run() == 0 and job.zero_pages == 64
        job.zero_bits_into(bytearray(8), 1 << 40)"""),
    "page_result past the window": ("IndexError", """
        src, f = source(); _core.Job(src, _core.CODEC_NONE, 16).page_result(1 << 30)"""),
    "carry of no page class": ("ValueError", """
        _pagescan.scan(bytes(64 * 8), 0, 8, bytearray(b'\\xff'), params(), (100, 1 << 28, 0, 0),
                       array('Q', [0] * 16))"""),
    "negative keep bit": ("ValueError", """
        f = tempfile.TemporaryFile(); f.write(bytes(4096)); f.flush()
        sc = _pagescan.Scanner(params(), fd=f.fileno(), extents=array('Q', [0, 4096, 0]))
        sc.scan_chunks(array('Q', [0, (1 << 36) + 64, 0, 0, 0, 0]), array('Q'), bytearray(8), -(1 << 36), 0,
                       None, array('Q', [0] * 16))"""),
    "field past the struct page": ("ValueError", "params(off_mapcount=1 << 30)"),
    "struct page too large": ("ValueError", "params(struct_size=1 << 19)"),
    "no buddy orders": ("ValueError", "params(nr_orders=0)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_arguments_are_refused(case):
    error, call = CASES[case]
    code = PRELUDE + "\ntry:\n" + textwrap.indent(textwrap.dedent(call).strip(), "    ") + \
        "\nexcept Exception as e:\n    print(type(e).__name__, e)\nelse:\n    print('accepted')\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.split()[:1] == [error], r.stdout


def test_a_view_keeps_its_job():
    """job.data is a view of the Job's own buffer: it keeps the Job alive."""
    code = PRELUDE + textwrap.dedent("""
        src, f = source()
        job = _core.Job(src, _core.CODEC_NONE, 64)
        job.setup(bytearray(b'\\xff' * 8), 0, 0, 64)
        assert job.run() == 0
        v = job.data
        want = bytes(v)
        del job
        import gc; gc.collect()
        junk = [bytearray(1 << 16) for _ in range(256)]
        assert bytes(v) == want
        print("same")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "same", (r.returncode, r.stdout, r.stderr[-2000:])
