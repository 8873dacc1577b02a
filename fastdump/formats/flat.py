"""The flattened format (``-F``): a dump as a stream, for pipes, ssh and raw devices.

Every positioned write of a normal dump becomes a record: a 16-byte big-endian
header (file offset, size) and the bytes.  A 4096-byte header starts the stream
(signature ``makedumpfile``, type 1, version 1) and a record of (-1, -1) ends
it.  ``rearrange`` (``fastdump -R``, ``makedumpfile -R``) replays the records
into a regular file.  The first header record we send says "incomplete" and the
last one clears it, so a stream cut short rebuilds into a dump marked
incomplete.
"""

import bisect
import contextlib
import operator
import os
import struct

from .. import safefile
from ..errors import FastdumpError, FormatError, TargetError
from ..targets.sinks import FileSink, InOrderSink
from . import checksums, elf, kdump, salvage

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


class Written:
    """The byte ranges the records wrote, merged as they arrive (records come mostly in
    file order, so a handful of ranges stays a handful)."""

    def __init__(self):
        self.starts, self.ends = [], []

    def add(self, start, end):
        i = bisect.bisect_left(self.ends, start)      # the first range that ends at or after start
        j = bisect.bisect_right(self.starts, end)     # past the last range that starts at or before end
        if i < j:
            start, end = min(start, self.starts[i]), max(end, self.ends[j - 1])
        self.starts[i:j], self.ends[i:j] = [start], [end]

    def overlaps(self, start, end):
        i = bisect.bisect_right(self.ends, start)     # the first range that ends past start
        return i < len(self.starts) and self.starts[i] < end

    def covers(self, start, end):
        if end <= start:
            return True
        i = bisect.bisect_right(self.starts, start) - 1
        return i >= 0 and self.ends[i] >= end


def _referenced(dump):
    """(what, offset, size) of every byte range the rebuilt ``dump`` reads its pages
    and metadata from, bar the page data of a kdump file (``_page_data_end``)."""
    if isinstance(dump, kdump.KdumpReader):
        s = dump.sub_header
        yield "the kdump header", 0, kdump.HEADER.size
        yield "the kdump sub-header", dump.block_size, kdump.SUB_HEADER.size
        if dump.note_bytes:
            yield "the ELF notes", s.offset_note, s.size_note
        if dump.header_version >= 5 and s.offset_eraseinfo and s.size_eraseinfo:
            yield "the eraseinfo", s.offset_eraseinfo, s.size_eraseinfo
        used = -(-dump.max_mapnr // 8)
        yield "the 1st bitmap", dump.bitmap1_off, used
        yield "the 2nd bitmap", dump.bitmap2_off, used
        yield "the page descriptors", dump.desc_off, dump.n_descriptors() * kdump.DESC.size
    else:
        yield "the ELF header and program headers", 0, elf.header_size(dump.elfclass, len(dump.header.phdrs))
        for p in dump.header.phdrs:
            if p.type in (elf.PT_NOTE, elf.PT_LOAD):
                yield f"the contents of a {'PT_NOTE' if p.type == elf.PT_NOTE else 'PT_LOAD'}", p.offset, p.filesz


def _headers_end(dump):
    """Where the part of the file that writers write twice ends: a kdump file's headers
    and bitmaps (fastdump sends the header again, complete, at the end, the sub-header
    once eraseinfo is placed, and 2nd-bitmap bytes again for pages it could not read or
    never wrote), or what lies before an ELF dump's memory (makedumpfile sends its
    program headers again, fastdump its headers and notes)."""
    if isinstance(dump, kdump.KdumpReader):
        return dump.desc_off
    return min((p.offset for p in dump.header.phdrs if p.type == elf.PT_LOAD and p.filesz), default=0)


def _page_data_end(dump, written, step=1 << 16):
    """Checks that every descriptor's page data came in a record, a table chunk at a
    time by its span (the data lie packed), page by page only where the span has a
    gap; returns where the last page's data ends (0 without pages)."""
    n, last = dump.n_descriptors(), 0
    for first in range(0, n, step):
        count = min(step, n - first)
        raw = memoryview(dump.read_at(dump.desc_off + kdump.DESC.size * first, kdump.DESC.size * count))
        offsets, sizes = raw.cast("Q")[0::3], raw.cast("I")[2::6]     # no Python step per descriptor
        chunk_end = max(map(operator.add, offsets, sizes))
        last = max(last, chunk_end)
        if written.covers(min(offsets), chunk_end):
            continue
        d = dump.read_descriptors(first, count)
        for i, (offset, end) in enumerate(zip(d.offsets, map(operator.add, d.offsets, d.sizes))):
            if not written.covers(offset, end):
                raise FormatError(f"no record wrote the data of page descriptor {first + i} "
                                  f"(bytes {offset}..{end})")
    return last


def _check_trailing(dump, written, dump_end):
    """Bytes past the end of the dump may only be fastdump's checksum trailer, which
    its footer, at the end of the file, names; the regions a trailer covers (headers,
    notes, bitmaps: small) must match it, and its checksum array must have come in
    records too.  An ELF dump whose header says it ends in a trailer must have one."""
    file_end = written.ends[-1]
    read = lambda offset, size: os.pread(dump.fd, size, offset)     # noqa: E731
    try:
        sums = checksums.load(read, file_end,
                              header_block=dump.block_size if isinstance(dump, kdump.KdumpReader) else None)
    except ValueError as e:
        raise FormatError(str(e)) from None
    for offset, size, kind in checksums.bad_regions(sums, read, file_end) if sums else ():
        raise FormatError(f"the {checksums.KIND_NAMES.get(kind, 'region')} at {offset:#x}+{size:#x} "
                          f"does not match its checksum")
    marked = getattr(getattr(dump, "header", None), "checksums_marked", False)
    if sums is None and marked and not dump.incomplete:
        raise FormatError("no record wrote the checksum trailer that the ELF header says ends the dump")
    if file_end > dump_end and (sums is None or sums.trailer_off < dump_end):
        raise FormatError(f"records wrote bytes {dump_end:#x}..{file_end:#x}, past the end of the dump")
    if sums is not None and sums.scheme != checksums.IN_DESCRIPTORS \
            and not written.covers(sums.array_off, sums.array_end):
        raise FormatError(f"no record wrote the page checksums (bytes {sums.array_off}..{sums.array_end})")


def _check_rebuilt(path, records, written, rewrite):
    """What the records rebuilt must open as a dump (its header, sub-header, bitmaps or
    program headers whole), and every byte it reads its pages from must have come in a
    record, once (but the headers), and nothing past its end: an end record that came
    too early, records that never wrote a header, or a record moved elsewhere must not
    pass for a dump (a hole reads as zeros).  Returns whether the dump is flagged
    incomplete."""
    from ..sources.opener import open_dump
    if not records:
        raise FormatError("the flattened stream ended before any record")
    try:
        with open_dump(path) as dump:
            headers_end = _headers_end(dump)
            if rewrite is not None and rewrite[2] > headers_end:
                k, start, end = rewrite
                raise FormatError(f"record {k} wrote bytes {start}..{end} again, past the dump's headers")
            dump_end = 0
            for what, offset, size in _referenced(dump):
                if not written.covers(offset, offset + size):
                    raise FormatError(f"no record wrote {what} (bytes {offset}..{offset + size})")
                dump_end = max(dump_end, offset + size)
            if isinstance(dump, kdump.KdumpReader):
                dump_end = max(dump_end, _page_data_end(dump, written))
            _check_trailing(dump, written, dump_end)
            return dump.incomplete
    except FastdumpError as e:
        raise FormatError(f"the flattened stream did not rebuild a readable dump ({e})") from None


def rearrange(stream, target, *, force=False, max_size=None, allow_incomplete=False):
    """Rebuild the dump a flattened ``stream`` describes into the file ``target``.

    Returns the number of records.  A stream without its end record, or a full
    disk, leaves ``target.incomplete`` behind, flagged incomplete and claiming only
    the pages it holds (a kdump header is written flagged until the end record
    came), and raises; so does a stream that rebuilds into no dump, or into one with
    bytes no record wrote, or (unless ``allow_incomplete``) one its writer flagged
    incomplete: fastdump sends its complete header last, so that stream lost it."""
    source = getattr(stream, "name", None)        # a path (--from-device), or standard input's fd
    if not isinstance(source, str) or source.startswith("<"):      # "<stdin>"
        try:
            source = stream.fileno()
        except (AttributeError, OSError, ValueError):
            source = None           # a stream without a descriptor: no file to clash with
    safefile.refuse_clashes([target], [source])
    check_header(_read_exact(stream, 4096, "the header"))
    sink = FileSink(target, force=force)
    records, written = 0, Written()
    rewrite = None        # (record, start, end) of the rewriting record that reaches furthest
    final_head = None     # a kdump header as the stream sent it: on disk only at the end
    try:
        while True:
            offset, size = RECORD.unpack(_read_exact(stream, RECORD.size, "a record header"))
            if offset == -1 and size == -1:
                break
            if offset < 0 or size <= 0 or (max_size is not None and offset + size > max_size):
                raise FormatError(f"corrupt flattened record {records}: offset {offset}, size {size}")
            if written.overlaps(offset, offset + size) and (rewrite is None or offset + size > rewrite[2]):
                rewrite = (records, offset, offset + size)
            written.add(offset, offset + size)
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
        if _check_rebuilt(sink.temp_path, records, written, rewrite) and not allow_incomplete:
            raise FormatError("the stream ended well, but the dump in it is flagged incomplete "
                              "(its writer did not finish it)")
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
