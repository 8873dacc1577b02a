"""What a raw target already holds, so a dump never lands on someone's data by accident.

A flattened dump on a device (``raw:DEV``) overwrites it from byte 0.  Before
that, the device must not be in use (the kernel refuses ``O_EXCL`` on a mounted
or otherwise claimed block device) and must not hold a file system, swap, RAID,
LVM, LUKS or a partition table that these signatures recognise, nor a dump (an
earlier crash's, perhaps not saved yet); a regular file standing in for a device
must start with zeros.  ``-f`` overrides.
"""

import errno
import os
import stat

from ..errors import TargetError

# (offset, magic, what): the superblock signatures blkid looks at first.
SIGNATURES = [
    (0x438, b"\x53\xef", "an ext2/3/4 file system"),
    (0, b"XFSB", "an XFS file system"),
    (0x10040, b"_BHRfS_M", "a btrfs file system"),
    (0x400, b"\x10\x20\xf5\xf2", "an F2FS file system"),
    (0, b"hsqs", "a squashfs image"),
    (0x8001, b"CD001", "an ISO 9660 file system"),
    (3, b"NTFS    ", "an NTFS file system"),
    (0x36, b"FAT", "a FAT file system"),
    (0x52, b"FAT32", "a FAT file system"),
    (0xFF6, b"SWAPSPACE2", "swap space"),
    (0xFF6, b"SWAP-SPACE", "swap space"),
    (0, b"LUKS\xba\xbe", "a LUKS volume"),
    (0x200, b"LABELONE", "an LVM physical volume"),
    (0x1000, b"\xfc\x4e\x2b\xa9", "a Linux RAID member"),
    (0x200, b"EFI PART", "a GPT partition table"),
    (0x1FE, b"\x55\xaa", "an MBR partition table or boot sector"),
]
# A dump already there may not have been saved yet: it is not overwritten without -f either.
DUMPS = [
    (0, b"makedumpfile\0", "a flattened dump (fastdump -R --from-device saves it)"),
    (0, b"KDUMP   ", "a kdump-compressed dump"),
    (0, b"DISKDUMP", "a diskdump dump"),
    (0, b"\x7fELF", "an ELF file (a dump?)"),
]
PROBE = max(off + len(magic) for off, magic, _ in SIGNATURES + DUMPS)


def recognise(head, *, standing_in=False):
    """What the first bytes of a device say it holds, or None.  A regular file standing in
    for a device is someone's data unless its first bytes are all zero."""
    for off, magic, what in DUMPS + SIGNATURES:
        if head[off:off + len(magic)] == magic:
            return what
    if standing_in and head.strip(b"\0"):
        return "data (a regular file whose first bytes are not all zero)"
    return None


def open_raw(path, *, force=False):
    """An fd for writing a flattened dump over ``path`` (a block device, or a file standing in)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise TargetError(f"{path}: {e.strerror}") from None
    block = stat.S_ISBLK(st.st_mode)
    if not (block or stat.S_ISREG(st.st_mode)):
        raise TargetError(f"{path} is neither a block device nor a file standing in for one")
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_EXCL if block and not force else 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.EBUSY:
            raise TargetError(f"{path} is in use (mounted?); use -f/--force to overwrite it anyway") from None
        raise TargetError(f"cannot open {path}: {e.strerror}") from None
    try:
        held = recognise(os.pread(fd, PROBE, 0), standing_in=not block)
    except OSError as e:
        os.close(fd)
        raise TargetError(f"cannot read {path}: {e.strerror}") from None
    if held and not force:
        os.close(fd)
        raise TargetError(f"{path} holds {held}; use -f/--force to overwrite it")
    return fd
