"""What a dump did: the Stats the API returns, and how a copied window adds to it."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:       # typing is not imported at run time: about 5 ms of every start
    from typing import Any, Dict, List

UNREADABLE_LISTED = 1000


class Stats:
    """What a dump did; the API returns it and ``--stats-json`` writes it (every
    annotated field, in this order)."""

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
    unreadable_pfns: List[int]   # the first UNREADABLE_LISTED of them
    excluded: Dict[str, int]  # pages dropped per class
    erased_bytes: int = 0       # bytes --config erased (in every page that holds them)
    erased_pieces: int = 0      # of them, runs inside one page each
    bytes_read: int = 0
    bytes_written: int = 0
    estimated_bytes: int = 0
    seconds: float = 0.0
    #: where ``seconds`` went: opening the source, pass 1 (classification), and the rest ("write":
    #: the room check, pass 2's reads, compression and writes, retries, the kernel log beside the dump)
    phase_seconds: Dict[str, float]
    incomplete: bool = False
    warnings: List[str]
    self_check: Dict[str, Any]
    failed_targets: List[str]
    parts: List[Dict[str, Any]]

    def __init__(self, **values: Any) -> None:
        self.unreadable_pfns, self.excluded, self.phase_seconds = [], {}, {}
        self.warnings, self.self_check, self.failed_targets, self.parts = [], {}, [], []
        for name, value in values.items():
            if name not in FIELDS:
                raise TypeError(f"Stats has no field {name!r}")
            setattr(self, name, value)

    def to_dict(self) -> Dict[str, Any]:
        """Every field, lists and dicts copied all the way down (the caller may change them)."""
        return {name: _copied(getattr(self, name)) for name in FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stats) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]   # mutable

    def __repr__(self) -> str:
        return f"Stats({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"

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


#: the fields, in the order ``to_dict`` (and ``--stats-json``) gives them
FIELDS = tuple(vars(Stats)["__annotations__"])


def _copied(value: Any) -> Any:
    """A copy of a field's value (numbers, strings, lists and dicts of them), without the
    ``copy`` module, which a capture initrd's packed standard library need not hold."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copied(v) for v in value)
    return value
