"""The flattened format (``-F``): a dump as a stream, for pipes, ssh and raw devices.

Every positioned write of a normal dump becomes a record: a 16-byte big-endian
header (file offset, size) and the bytes.  A 4096-byte header starts the stream
(signature ``makedumpfile``, type 1, version 1) and a record of (-1, -1) ends
it.  ``rearrange`` (``fastdump -R``, ``makedumpfile -R``) replays the records
into a regular file.  The first header record we send says "incomplete" and the
last one clears it, so a stream cut short rebuilds into a dump marked
incomplete.
"""

import contextlib
import os
import struct

from ..errors import FastdumpError, FormatError, TargetError
from ..targets.sinks import FileSink, InOrderSink
from . import kdump, salvage

SIGNATURE = b"makedumpfile"
HEADER = struct.Struct(">16sqq")
RECORD = struct.Struct(">qq")
TYPE_FLAT_HEADER = 1
VERSION = 1
END = RECORD.pack(-1, -1)
COPY_CHUNK = 1 << 20


def stream_header():
    return HEADER.pack(SIGNATURE.ljust(16, b"\0"), TYPE_FLAT_HEADER, VERSION).ljust(4096, b"\0")


class FlatSink(InOrderSink):
    """A sink that turns ``pwrite(data, offset)`` into flattened records on a stream."""

    def __init__(self, stream, *, name="<stdout>", fsync=False):
        super().__init__(name)
        self.stream = stream
        self.fsync = fsync
        self.path = self.temp_path = name
        self._write(stream_header())

    def _write(self, data):
        try:
            self.stream.write(data)
        except BrokenPipeError:
            raise TargetError(f"{self.name}: the reader went away (broken pipe)") from None
        except OSError as e:
            raise TargetError(f"{self.name}: write failed: {e.strerror}") from None

    def pwrite(self, data, offset):
        n = data.nbytes if isinstance(data, memoryview) else len(data)
        if n == 0:
            return  # a zero-sized record would end makedumpfile -R early
        self._write(RECORD.pack(offset, n))
        self._write(data)
        self._count(data, offset)

    def commit(self):
        self._write(END)
        try:
            self.stream.flush()
            if self.fsync:
                os.fsync(self.stream.fileno())
        except OSError as e:
            raise TargetError(f"{self.name}: {e.strerror}") from None
        return self.name

    def abandon(self):
        try:
            self.stream.flush()
        except OSError:
            pass
        return self.name


def _read_exact(stream, n, what):
    data = bytearray()
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise FormatError(f"flattened stream ended inside {what}")
        data += chunk
    return bytes(data)


def check_header(head):
    sig, ftype, version = HEADER.unpack_from(head)
    if sig.split(b"\0", 1)[0] != SIGNATURE:
        raise FormatError("not a flattened dump (no makedumpfile signature)")
    if ftype != TYPE_FLAT_HEADER or version != VERSION:
        raise FormatError(f"flattened stream of type {ftype} version {version} is not supported")


def _check_rebuilt(path, records):
    """What the records rebuilt must open as a dump (its header, sub-header, bitmaps or
    program headers whole): an end record that came too early, or records that never
    wrote a header, must not pass for a dump."""
    from ..sources.opener import open_dump
    if not records:
        raise FormatError("the flattened stream ended before any record")
    try:
        with open_dump(path):
            pass
    except FastdumpError as e:
        raise FormatError(f"the flattened stream did not rebuild a readable dump ({e})") from None


def rearrange(stream, target, *, force=False, max_size=None):
    """Rebuild the dump a flattened ``stream`` describes into the file ``target``.

    Returns the number of records.  A stream without its end record, or a full
    disk, leaves ``target.incomplete`` behind, flagged incomplete and claiming only
    the pages it holds (a kdump header is written flagged until the end record
    came), and raises."""
    check_header(_read_exact(stream, 4096, "the header"))
    sink = FileSink(target, force=force)
    records = 0
    final_head = None     # a kdump header as the stream sent it: on disk only at the end
    try:
        while True:
            offset, size = RECORD.unpack(_read_exact(stream, RECORD.size, "a record header"))
            if offset == -1 and size == -1:
                break
            if offset < 0 or size <= 0 or (max_size is not None and offset + size > max_size):
                raise FormatError(f"corrupt flattened record {records}: offset {offset}, size {size}")
            while size:
                n = min(size, COPY_CHUNK)
                data = _read_exact(stream, n, f"record {records}")
                if offset == 0 and n >= kdump.HEADER.size and data.startswith(kdump.SIGNATURE):
                    final_head = data[:kdump.HEADER.size]        # until the end: flagged incomplete
                    data = kdump.flag_incomplete(final_head) + data[kdump.HEADER.size:]
                sink.pwrite(data, offset)
                offset += n
                size -= n
            records += 1
        if final_head is not None:
            sink.barrier()
            sink.pwrite(final_head, 0)
        _check_rebuilt(sink.temp_path, records)
    except BaseException as e:
        with contextlib.suppress(FastdumpError):
            salvage.seal(sink)
        path = sink.abandon()
        if isinstance(e, FormatError):
            raise FormatError(f"{e}; what arrived is in {path}") from None
        if isinstance(e, FastdumpError):
            raise type(e)(f"{e} (what arrived is in {path}, flagged incomplete)") from None
        raise
    sink.commit()
    return records
