"""What a dump did: the Stats the API returns, and how a copied window adds to it."""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List

UNREADABLE_LISTED = 1000


@dataclass
class Stats:
    """What a dump did; the API returns it and ``--stats-json`` writes it."""

    source: str = ""
    target: str = ""
    dump_path: str = ""
    format: str = ""
    compress: str = ""
    dump_level: int = 0
    threads: int = 0
    pages_scanned: int = 0      # pages the source describes
    pages_kept: int = 0         # pages whose data was stored (zero pages not counted)
    pages_zero: int = 0         # all-zero pages found
    pages_unclassified: int = 0  # kept because their struct page made no sense (never dropped)
    pages_unreadable: int = 0   # the source gave an error: missing from the dump, listed below
    unreadable_pfns: List[int] = field(default_factory=list)   # the first UNREADABLE_LISTED of them
    excluded: Dict[str, int] = field(default_factory=dict)  # pages dropped per class
    erased_bytes: int = 0       # bytes --config erased (in every page that holds them)
    erased_pieces: int = 0      # of them, runs inside one page each
    bytes_read: int = 0
    bytes_written: int = 0
    estimated_bytes: int = 0
    seconds: float = 0.0
    #: where ``seconds`` went: opening the source, pass 1 (classification), and the rest ("write":
    #: the room check, pass 2's reads, compression and writes, retries, the kernel log beside the dump)
    phase_seconds: Dict[str, float] = field(default_factory=dict)
    incomplete: bool = False
    warnings: List[str] = field(default_factory=list)
    self_check: Dict[str, Any] = field(default_factory=dict)
    failed_targets: List[str] = field(default_factory=list)
    parts: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def tally(self, job, *, zeros=True):
        """Count one committed window of the copy engine."""
        self.bytes_read += job.bytes_read
        if zeros:
            self.pages_zero += job.zero_pages
        if job.unreadable_pages:
            self.pages_unreadable += job.unreadable_pages
            room = UNREADABLE_LISTED - len(self.unreadable_pfns)
            if room > 0:
                self.unreadable_pfns += job.unreadable_pfns()[:room]
