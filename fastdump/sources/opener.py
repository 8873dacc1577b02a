"""``fastdump.open``: any dump we can read, behind one small interface (``DumpReader``),
with ``kernel``: the crashed kernel's symbols and types (:mod:`fastdump.kernel.types`)."""

from __future__ import annotations

import os

from .files import open_input
from ..errors import FormatError
from ..formats.elf import Note
from ..formats.kdump import SIGNATURE as KDUMP_SIGNATURE, KdumpReader
from ..kernel.types.kernel import Kernel
from ..kernel.vmcoreinfo import VmcoreInfo
from ..options import path_arg
from .vmcore import ElfSource

TYPE_CHECKING = False
if TYPE_CHECKING:       # an interface for mypy; typing is not imported at run time (about 5 ms of every start)
    from typing import Any, Dict, Iterator, List, Optional, Protocol, TypeVar

    from ..options import PathArg

    _Reader = TypeVar("_Reader", bound="DumpReader")

    class DumpReader(Protocol):
        """What every reader ``fastdump.open`` returns offers (mypy checks each reader has it)."""

        @property
        def format(self) -> str: ...                       # "kdump" or "elf"
        @property
        def page_size(self) -> int: ...
        @property
        def vmcoreinfo(self) -> Optional[VmcoreInfo]: ...  # None when the dump carries none
        @property
        def notes(self) -> List[Note]: ...
        @property
        def note_bytes(self) -> bytes: ...
        @property
        def max_mapnr(self) -> int: ...                    # pfns the dump describes
        def pfns(self) -> Iterator[int]: ...
        def is_dumped(self, pfn: int) -> bool: ...
        def read_pfn(self, pfn: int) -> bytes: ...
        def read_phys(self, addr: int, size: int, *, zero_fill: bool = False) -> bytes: ...
        def describe(self) -> Dict[str, Any]: ...
        def close(self) -> None: ...
        @property
        def kernel(self) -> Kernel: ...                    # symbols and types, read on first use
        def __enter__(self: _Reader) -> _Reader: ...
        def __exit__(self, *exc: object) -> Any: ...


FLAT_SIGNATURE = b"makedumpfile\0"


#: what ``sniff`` finds, said when a command wanted the ELF vmcore it is not
NOT_A_VMCORE = {"kdump": "a kdump-compressed dump", "flattened": "a flattened dump stream (makedumpfile -F)",
                "diskdump": "an old DISKDUMP file"}


def sniff(path: str) -> Optional[str]:
    fd = open_input(path, FormatError)
    try:
        head = os.pread(fd, 16, 0)
    except OSError as e:
        raise FormatError(f"cannot read {path}: {e.strerror}") from None
    finally:
        os.close(fd)
    if head.startswith(KDUMP_SIGNATURE):
        return "kdump"
    if head.startswith(b"\x7fELF"):
        return "elf"
    if head.startswith(FLAT_SIGNATURE):
        return "flattened"
    if head.startswith(b"DISKDUMP"):
        return "diskdump"
    return None


def open_dump(path: PathArg) -> DumpReader:
    """Open a vmcore or dump file for reading; raises FormatError for anything else.

    ``path`` is a path (str, bytes, os.PathLike).  A file descriptor (int) is refused
    with a UsageError: the reader closes what it opens, and an fd is the caller's."""
    name = path_arg(path, "dump file")
    if isinstance(name, str) and name.startswith("s3://"):   # a dump in an object store, read in place
        from .s3object import S3KdumpReader
        return S3KdumpReader(name)
    kind = sniff(name)
    if kind == "kdump":
        return KdumpReader(name)
    if kind == "elf":
        return ElfSource(name)
    if kind == "flattened":
        raise FormatError(f"{name} is a flattened stream: rebuild it first (makedumpfile -R)")
    if kind == "diskdump":
        raise FormatError(f"{name} is an old DISKDUMP file, which fastdump does not read")
    raise FormatError(f"{name}: not a vmcore or dump file fastdump knows")
