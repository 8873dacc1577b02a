"""A whole Debian 12 guest (systemd, Debian's kdump-tools, fastdump deployed as the README says)
crashes; kdump-tools' own service saves the dump through fastdump in the capture kernel; the
dump is checked page for page against a raw copy of the same /proc/vmcore (tests/e2e/distro.py).

Any failure raises with the reason and the serial log tail (StepError); nothing is skipped.
"""

from . import distro


def test_kdump_tools_service_saves_a_page_exact_dump_through_fastdump():
    result = distro.flow()      # raises StepError naming the step and check that failed
    assert result["kernel"] == result["capture_release"], result
    assert result["format"] == "diskdump" and result["pages_wrong"] == 0 and result["pages_saved"] > 0, result
    assert not result["fallback"], result["fallback"]
    assert result["fastdump_peak_kib"].get("dump"), "fastdump's peak memory was not seen: %r" % result
