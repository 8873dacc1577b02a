"""A kdump-compressed dump in an S3 store, read in place with ranged GETs.

``fastdump.open("s3://BUCKET/KEY")`` gives the same reader as for a file: only
the blocks a caller touches are fetched (1 MiB each, the last few kept), so
triage reads a header, the bitmaps and a few pages, not the whole dump.
"""

from collections import OrderedDict

from ..errors import FormatError
from ..formats.kdump import KdumpReader
from ..targets.s3client import Credentials, S3Client, parse_url

BLOCK = 1 << 20
KEEP = 8           # blocks kept: the bitmaps' and the descriptors' neighbourhood


class S3KdumpReader(KdumpReader):
    """KdumpReader over an S3 object; ``ranged_reads`` counts the GETs it made."""

    def __init__(self, url, *, client=None):
        self.path, self.fd = url, -1
        self.bucket, self.key = parse_url(url)
        if not self.key or self.key.endswith("/"):
            raise FormatError(f"{url}: name the dump object (s3://BUCKET/PREFIX/<host>-<date>/vmcore)")
        self.client = client or S3Client(Credentials.load())
        self.blocks = OrderedDict()
        self.ranged_reads = 0
        self._load()

    def _length(self):
        status, headers, _ = self.client.request("HEAD", self.bucket, self.key, ok=(200, 404))
        if status == 404:
            raise FormatError(f"{self.path}: no such object")
        return int(headers.get("content-length", 0))

    def _block(self, n):
        data = self.blocks.pop(n, None)
        if data is None:
            start = n * BLOCK
            data = self.client.get_object(self.bucket, self.key, start, min(start + BLOCK, self.file_size))
            self.ranged_reads += 1
        self.blocks[n] = data
        while len(self.blocks) > KEEP:
            self.blocks.popitem(last=False)
        return data

    def read_upto(self, off, size):
        """Up to ``size`` bytes at ``off`` (fewer where the object ends), from cached blocks."""
        size = max(0, min(size, self.file_size - off))
        out = bytearray()
        while len(out) < size:
            at = off + len(out)
            n, inside = divmod(at, BLOCK)
            piece = self._block(n)[inside:inside + size - len(out)]
            if not piece:
                raise FormatError(f"{self.path}: the store sent fewer bytes than the object has")
            out += piece
        return bytes(out)
