"""What Python calls on the compiled page classifier (src/_pagescan.pyx); tests/test_packaging.py
checks this stub against the built module with mypy's stubtest."""

from _typeshed import ReadableBuffer, WriteableBuffer
from typing import Any, Callable, Optional, Tuple

#: where a compound page left off at the end of a batch: (until pfn, class, head va, verify)
_Carry = Tuple[int, int, int, int]

class ScanParams:
    # enc: a kernel.pagetypes encoding (struct page offsets and flag masks)
    def __init__(self, enc: Any, *, level: int, section_shift: int, prot_start: int = 0, prot_end: int = 0,
                 reserved_mask: int = 0) -> None: ...

def scan(records: ReadableBuffer, start_pfn: int, npfn: int, keep: WriteableBuffer, params: ScanParams,
         carry: Optional[_Carry], counts: WriteableBuffer, va0: Optional[int] = None) -> Optional[_Carry]: ...

#: follow_list's statuses
FOLLOW_OK: int
FOLLOW_TOO_MANY: int
FOLLOW_BAD_PREV: int
FOLLOW_REFERENCED: int
FOLLOW_UNREADABLE: int

class Scanner:
    """One thread's struct page scanner: reads the source's file (mmap window or pread) or read_phys."""
    use_mmap: bool
    sigbus_batches: int
    def __new__(cls, params: ScanParams, *, fd: int = -1, extents: Optional[ReadableBuffer] = None,
                 use_mmap: bool = False, read_phys: Optional[Callable[[int, int], Optional[bytes]]] = None) -> "Scanner": ...
    def scan_chunks(self, chunks: ReadableBuffer, spans: ReadableBuffer, keep: WriteableBuffer, kb0: int,
                    start: int, carry: Optional[_Carry], counts: WriteableBuffer) -> Tuple[Optional[_Carry], int]: ...
    def follow_list(self, spans: ReadableBuffer, first: int, head: int, link_off: int, ref_off: int,
                    limit: int) -> Tuple[int, Any]: ...
