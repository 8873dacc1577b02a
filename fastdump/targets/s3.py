"""A dump written straight into an S3 object by multipart upload, no seeking.

The object is cut into fixed parts: part n holds bytes ``[(n-1)*P, n*P)``, so it
is byte for byte the file a file target would hold (no padding, no ``-R`` step).
A part goes up, in a background thread, as soon as every byte of it is written.

What the writer changes later (the header's incomplete flag, the sub header,
2nd-bitmap bits of pages found unreadable) lies before its descriptor table, and
the writer can rebuild any of those bytes from what the run holds anyway (its
header fields, the plan's bitmaps, the source's present runs, the unreadable
pfns): it says so with ``rebuildable(end, remake)``.  Parts wholly below ``end``
then go up as soon as they are complete (the rest of them at the barrier); a
later write into one only marks it stale, and ``commit`` uploads it again from
``remake`` under the same part number (S3 keeps the last upload of a part).
No copy of a sent part is kept.  Only the part holding ``end`` mixes rebuildable
bytes with descriptors and is held to the end.  A writer that declares nothing
has everything before its barrier held, as it may patch any of it.

The page data and descriptors (with their checksums) are written in order, so at any
moment only the held part(s), the one part each stream is filling and one in
flight are in memory (5 MiB each: a constant, whatever the machine's RAM).

Past S3's 10000 parts: the first ``direct_parts`` slices are parts of the
upload itself (44 GiB, so smaller dumps pay nothing more); the slices after them
go, 5 MiB parts as ever, into segment uploads of ``segment_parts`` slices
(5 GiB, the largest part there is) beside the dump (``vmcore.segment-NNNN``),
and each segment, once complete, becomes one part of the dump by UploadPartCopy
(a copy inside the store) and is deleted: up to 1000 segments, 4.9 TiB more,
with the same part buffers in memory.

Nothing of the dump is visible in the bucket until ``CompleteMultipartUpload``
(a segment is an object of its own from its completion until it is copied in and
deleted, named ``vmcore.segment-NNNN``); a run that fails aborts the upload and
deletes or aborts its segments (and if the server is gone, the upload stays
incomplete, which no listing shows as an object).  A dump whose length the
store gets wrong after completing is deleted again.
"""

import json
import queue
import threading
import time

from ..errors import FastdumpError, TargetError, UsageError

PART_SIZE = 5 << 20          # S3's smallest part (memory: ~6 parts)
MAX_PARTS = 10000            # S3's most parts of one upload
DIRECT_PARTS = 9000          # slices sent as parts of the dump's upload: 44 GiB
SEGMENT_PARTS = 1024         # slices per segment: 5 GiB, the largest part (and copied part) S3 takes


def limits_from_env(environ):
    """``FASTDUMP_TEST_S3_PARTS=MAX,DIRECT,PER_SEGMENT``: the part limits with small numbers,
    so the tests reach them with dumps of tens of MiB (S3Sink's keywords; none: S3's)."""
    value = environ.get("FASTDUMP_TEST_S3_PARTS")
    if not value:
        return {}
    try:
        max_parts, direct, per_segment = (int(v) for v in value.split(","))
    except ValueError:
        raise UsageError(f"FASTDUMP_TEST_S3_PARTS={value!r}: give MAX,DIRECT,PER_SEGMENT") from None
    if not (1 <= direct < max_parts <= MAX_PARTS and 1 <= per_segment <= SEGMENT_PARTS):
        raise UsageError(f"FASTDUMP_TEST_S3_PARTS={value!r}: needs 1 <= DIRECT < MAX <= {MAX_PARTS} "
                         f"and 1 <= PER_SEGMENT <= {SEGMENT_PARTS} (a setting for tests only)")
    return {"max_parts": max_parts, "direct_parts": direct, "segment_parts": per_segment}


class Segment:
    """One segment upload: slices past the direct ones, copied into the dump as one part."""

    def __init__(self, index, key):
        self.index, self.key = index, key
        self.upload_id = None
        self.etags = {}              # part number in the segment -> ETag
        self.stored = False          # completed: an object to copy from and then delete


class S3Sink:
    """``pwrite(data, offset)`` into a multipart upload of ``s3://bucket/key``."""

    def __init__(self, client, bucket, key, *, part_size=PART_SIZE, max_parts=MAX_PARTS,
                 direct_parts=DIRECT_PARTS, segment_parts=SEGMENT_PARTS):
        self.client, self.bucket, self.key, self.part = client, bucket, key, part_size
        self.direct, self.per_segment = direct_parts, segment_parts
        self.max_slices = direct_parts + (max_parts - direct_parts) * segment_parts
        self.segments = {}                    # index -> Segment (created by the uploader)
        self.etags = {}                       # part number of the dump's upload -> ETag
        self.name = self.path = f"s3://{bucket}/{key}"
        self.temp_path = None                 # no local file to clean up
        self.bytes_written = self.size = 0
        self.buffers = {}                     # part number -> bytearray
        self.covered = {}                     # part number -> sorted, merged [start, end) written
        self.held = set()                     # written before the barrier: sent at commit
        self.sent = set()                     # slices (5 MiB each; slice n = bytes from (n-1)*part) sent
        self.part_sha256 = {}                 # slice -> SHA-256 of its bytes (the manifest's checksums)
        #: where the time goes: the uploader busy (hash + send + store), the copy waiting for it
        self.seconds = {"uploading": 0.0, "stalled": 0.0}
        self.past_barrier = False
        self.remake_end, self.remake = 0, None   # bytes [0, remake_end) can be rebuilt by remake(off, n)
        self.stale = set()                    # sent parts written again since: sent anew at commit
        self.buffer_peak = 0                  # most bytes of parts in memory at once (the one in flight included)
        self.upload_id = client.create_multipart(bucket, key)
        self.error = None
        self.queue = queue.Queue()
        self.idle = threading.Semaphore(1)    # one part in flight: a slow server slows the copy, never grows memory
        self.thread = threading.Thread(target=self._uploader, name="s3-upload", daemon=True)
        self.thread.start()

    # -- writing ------------------------------------------------------------------
    def pwrite(self, data, offset):
        view = memoryview(data).cast("B")
        n = len(view)
        self._check()
        while view:
            number, at = offset // self.part + 1, offset % self.part
            take = min(len(view), self.part - at)
            if number in self.sent:
                if number * self.part > self.remake_end:
                    raise TargetError(f"{self.name}: part {number} was already sent and cannot change")
                self.stale.add(number)        # rebuilt at commit, not kept
                view, offset = view[take:], offset + take
                continue
            if number > self.max_slices:
                raise TargetError(f"{self.name}: the dump outgrows {self.max_slices} parts of "
                                  f"{self.part >> 20} MiB (S3 takes {MAX_PARTS} parts, 5 GiB each at most)")
            buf = self.buffers.get(number)
            if buf is None:
                buf = self.buffers[number] = bytearray(self.part)
                self.buffer_peak = max(self.buffer_peak, (len(self.buffers) + 1) * self.part)
            buf[at:at + take] = view[:take]
            self._cover(number, at, at + take)
            if number * self.part <= self.remake_end:
                if self.covered[number] == [[0, self.part]]:
                    self._send(number)
            elif not self.past_barrier:
                self.held.add(number)
            elif number not in self.held and self.covered[number] == [[0, self.part]]:
                self._send(number)
            view, offset = view[take:], offset + take
        self.bytes_written += n
        self.size = max(self.size, offset)

    def _cover(self, number, a, b):
        runs = self.covered.setdefault(number, [])
        runs.append([a, b])
        runs.sort()
        merged = [runs[0]]
        for r in runs[1:]:
            if r[0] <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], r[1])
            else:
                merged.append(r)
        self.covered[number] = merged

    def _send(self, number, body=None):
        """Hand a part to the uploader; waits while the one before is still going up, so
        filling the next part overlaps one upload and memory stays a few parts."""
        body = self.buffers.pop(number) if body is None else body
        self.covered.pop(number, None)
        self.sent.add(number)
        t0 = time.monotonic()
        while not self.idle.acquire(timeout=1):
            self._check()
        self.seconds["stalled"] += time.monotonic() - t0
        self._check()
        self.queue.put((number, body))

    def _uploader(self):
        while True:
            item = self.queue.get()
            if item is None:
                return
            number, body = item
            if self.error is None:
                t0 = time.monotonic()
                try:
                    self._store(number, body)
                    self.seconds["uploading"] += time.monotonic() - t0
                except FastdumpError as e:
                    self.error = e
                except Exception as e:       # a bug must not hang the copy
                    self.error = TargetError(f"{self.name}: upload failed: {e}")
            self.idle.release()

    def _store(self, number, body):
        """Slice ``number`` into the dump's upload, or into its segment (which, once full,
        becomes one part of the dump)."""
        if number <= self.direct:
            self.etags[number], self.part_sha256[number] = self.client.upload_part(
                self.bucket, self.key, self.upload_id, number, body)
            return
        index, at = divmod(number - self.direct - 1, self.per_segment)
        seg = self.segments.get(index)
        if seg is None:
            seg = self.segments[index] = Segment(index, f"{self.key}.segment-{index + 1:04d}")
            seg.upload_id = self.client.create_multipart(self.bucket, seg.key)
        seg.etags[at + 1], self.part_sha256[number] = self.client.upload_part(
            self.bucket, seg.key, seg.upload_id, at + 1, body)
        if len(seg.etags) == self.per_segment:
            self._fold(seg)

    def _fold(self, seg):
        """Complete a segment, copy it into the dump as part ``direct + 1 + index``, delete it."""
        self.client.complete_multipart(self.bucket, seg.key, seg.upload_id, seg.etags)
        seg.stored = True
        self.etags[self.direct + 1 + seg.index] = self.client.upload_part_copy(
            self.bucket, self.key, self.upload_id, self.direct + 1 + seg.index, seg.key)
        self.client.delete_object(self.bucket, seg.key)
        seg.stored = False

    def _check(self):
        if self.error is not None:
            raise self.error

    def _drain(self):
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()

    def reserve(self, size, *, allocate=False):
        """The object is as long as the file would be: unwritten bytes go up as zeros."""
        self.size = max(self.size, size)

    def rebuildable(self, end, remake):
        """``remake(offset, n)`` rebuilds any bytes below ``end`` as they are meant to be at
        the end: such parts go up once complete, and again if written after that.  Only
        parts of the upload itself (not a segment, copied in once complete) can go again."""
        self.remake_end, self.remake = min(end, self.direct * self.part), remake

    def barrier(self):
        """What is written so far is the header and the bitmaps: the rebuildable parts go
        up now (gaps read as zeros, as in a file), the others are held until commit."""
        self._check()
        for number in sorted(self.buffers):
            if number * self.part <= self.remake_end:
                self._send(number)
        self.past_barrier = True

    def settle(self):
        """Nothing of a failed upload is ever visible: no range counts as durable."""
        return []

    # -- ending -------------------------------------------------------------------
    def commit(self):
        """Send every part not sent yet (short ones padded with zeros, the last one
        cut to the size), complete the upload and check the object's length."""
        last = max(1, -(-self.size // self.part))
        for number in sorted(self.stale):
            self._send(number, self.remake((number - 1) * self.part, self.part))
        self.stale.clear()
        for number in range(1, last + 1):
            if number in self.sent:       # sent or on its way
                continue
            body = self.buffers.pop(number, None) or bytearray(self.part)
            if number == last:
                body = body[:self.size - (last - 1) * self.part]
            self._send(number, body)
        self._drain()
        self._check()
        for seg in self.segments.values():      # the last one, short of a full segment
            if self.direct + 1 + seg.index not in self.etags:
                self._fold(seg)
        etag = self.client.complete_multipart(self.bucket, self.key, self.upload_id, self.etags)
        self.etag = etag.strip('"')
        try:
            length = int(self.client.head_object(self.bucket, self.key).get("content-length", -1))
            if length != self.size:
                raise TargetError(f"{self.name}: the store holds {length} bytes, {self.size} were sent")
        except FastdumpError:     # a complete-looking object that is not the dump: it goes
            self._cleanup(lambda: self.client.delete_object(self.bucket, self.key))
            self.upload_id = None
            raise
        return self.name

    def abandon(self):
        """Abort the upload: no object appears.  When the server cannot be reached the
        upload stays open (incomplete; a lifecycle rule removes it), never an object."""
        self.error = self.error or TargetError("abandoned")
        self._drain()
        self.buffers.clear()
        left = []
        for seg in self.segments.values():    # nothing of them stays either; each tried on its own
            if seg.stored:
                if not self._cleanup(lambda: self.client.delete_object(self.bucket, seg.key)):
                    left.append(f"segment object {seg.key}")
            elif seg.upload_id and self.direct + 1 + seg.index not in self.etags:
                self._cleanup(lambda: self.client.abort_multipart(self.bucket, seg.key, seg.upload_id))
        aborted = self.upload_id is None or self._cleanup(
            lambda: self.client.abort_multipart(self.bucket, self.key, self.upload_id))
        what = "an aborted upload" if aborted else "an unfinished upload (server unreachable)"
        return (f"{what} to {self.name}: no dump object was stored"
                + (f"; left behind: {', '.join(left)}" if left else ""))

    @staticmethod
    def _cleanup(call):
        """One clean-up request; False when the server refused or could not be reached."""
        try:
            call()
            return True
        except FastdumpError:
            return False


def manifest(src, stats, log, sink, erased=None):
    """The JSON kept beside a dump, all a fleet needs to triage without opening it:
    kernel, crash time, panic line and backtrace signature, level, codec, sizes, pages."""
    from ..kernel.oops import summarize
    from ..kernel.utsname import read_utsname
    vi = getattr(src, "vmcoreinfo", None)
    crashtime = vi.crashtime if vi is not None else None
    uts = read_utsname(src, erased)         # an erased nodename is no host name here either
    doc = {"manifest_version": 1, "object": sink.name, "format": stats.format,
           "host": uts[1] if len(uts) > 1 else None, "kernel_release": uts[2] if len(uts) > 2 else None,
           "crash_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(crashtime)) if crashtime else None,
           "dump_level": stats.dump_level, "codec": stats.compress, "bytes": sink.size,
           "etag": getattr(sink, "etag", None), "part_size": sink.part,
           "part_sha256": [sink.part_sha256[n] for n in sorted(sink.part_sha256)],
           "upload_seconds": {k: round(v, 3) for k, v in sink.seconds.items()},
           "buffer_peak_bytes": sink.buffer_peak,
           "pages": {"scanned": stats.pages_scanned, "kept": stats.pages_kept, "zero": stats.pages_zero,
                     "unreadable": stats.pages_unreadable, "excluded": stats.excluded},
           "incomplete": stats.incomplete, "log": "vmcore-dmesg.txt" if log is not None else None}
    doc.update(summarize(log or ""))
    return json.dumps(doc, indent=1, sort_keys=True).encode()

