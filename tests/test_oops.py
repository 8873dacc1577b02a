"""fastdump.kernel.oops: the panic line and the backtrace signature a fleet groups crashes by."""

from fastdump.kernel.oops import summarize

LOG = """[    0.000000] Linux version 6.1.0-18-amd64
[  812.331201] BUG: kernel NULL pointer dereference, address: 0000000000000008
[  812.331310] Oops: 0000 [#1] PREEMPT SMP NOPTI
[  812.331400] RIP: 0010:ext4_writepages+0x1a2/0x5c0 [ext4]
[  812.331500] Call Trace:
[  812.331501]  <TASK>
[  812.331502]  ? show_regs+0x6d/0x80
[  812.331503]  ? __die+0x24/0x70
[  812.331504]  ext4_writepages+0x1a2/0x5c0 [ext4]
[  812.331505]  do_writepages+0xcf/0x1e0
[  812.331506]  filemap_fdatawrite_wbc+0x63/0x90
[  812.331507]  </TASK>
[  812.331600] Kernel panic - not syncing: Fatal exception
"""


def test_panic_line_and_frames():
    s = summarize(LOG)
    assert s["panic"] == "Kernel panic - not syncing: Fatal exception"
    assert s["frames"] == ["ext4_writepages", "do_writepages", "filemap_fdatawrite_wbc"]
    assert s["signature_text"] == "ext4_writepages | do_writepages | filemap_fdatawrite_wbc"


def test_same_bug_other_build_same_signature():
    """Offsets, modules, times and unreliable frames differ between machines: not the signature."""
    other = LOG.replace("0x1a2/0x5c0", "0x1b7/0x5d0").replace("812.", "99.").replace("? __die", "? oops_begin")
    assert summarize(other)["signature"] == summarize(LOG)["signature"]
    assert summarize(LOG.replace("do_writepages", "do_other"))["signature"] != summarize(LOG)["signature"]


def test_no_trace_masks_numbers_in_the_panic_line():
    a = summarize("[1.0] Kernel panic - not syncing: Out of memory: killed process 1234\n")
    b = summarize("[2.0] Kernel panic - not syncing: Out of memory: killed process 99\n")
    assert a["frames"] == [] and a["signature"] == b["signature"]


def test_no_crash_in_the_log():
    assert summarize("[0.0] Linux version 6.1\n") == {"panic": None, "frames": [], "signature_text": "",
                                                       "signature": None}
