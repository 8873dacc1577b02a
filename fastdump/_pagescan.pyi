"""What Python calls on the compiled page classifier (src/_pagescan.pyx); tests/test_packaging.py
checks this stub against the built module with mypy's stubtest."""

from _typeshed import ReadableBuffer, WriteableBuffer
from typing import Any, Optional, Tuple

NCOUNTS: int
#: where a compound page left off at the end of a batch: (until pfn, class, head va, verify)
_Carry = Tuple[int, int, int, int]

class ScanParams:
    # enc: a kernel.pagetypes encoding (struct page offsets and flag masks)
    def __init__(self, enc: Any, *, level: int, section_shift: int, prot_start: int = 0, prot_end: int = 0,
                 reserved_mask: int = 0) -> None: ...

def scan(records: ReadableBuffer, start_pfn: int, npfn: int, keep: WriteableBuffer, params: ScanParams,
         carry: Optional[_Carry], counts: WriteableBuffer, va0: Optional[int] = None) -> Optional[_Carry]: ...
