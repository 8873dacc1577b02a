"""One dump from source to target: cycles -> judgement -> copy engine -> format.

Memory stays bounded whatever the dump size: pfns are handled in cycles of
``CYCLE_PFNS``; a cycle's bitmaps are kept in memory up to a cap and spilled to
a temporary file beside the target beyond it.  Dropped pages are never read:
the bitmaps are decided (from struct pages) before any page data is touched.
"""

import json
import os
import sys
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass, field

from . import _core
from .engine import CopyEngine
from .errors import FastdumpError, Interrupted, UsageError
from .formats import elfdump, kdump
from .output import FileSink
from .progress import Progress
from .source import ElfSource
from .utsname import read_utsname

CYCLE_PFNS = 1 << 23          # 32 GiB of 4 KiB pages; a cycle bitmap is 1 MiB
BITMAP_CACHE_BYTES = 8 << 20  # beyond this, cycle bitmaps go to a temp file
CLASS_BITS = 2 | 4 | 8 | 16
UNREADABLE_LISTED = 1000
FORMATS = ("kdump", "elf")


@dataclass
class Stats:
    """What a dump did; the API returns it and ``--stats-json`` writes it."""

    source: str = ""
    target: str = ""
    format: str = ""
    compress: str = ""
    dump_level: int = 0
    threads: int = 0
    pages_scanned: int = 0      # pages the source describes
    pages_kept: int = 0         # pages whose data was stored (zero pages not counted)
    pages_zero: int = 0         # all-zero pages found
    pages_unreadable: int = 0   # the source gave an error: missing from the dump, listed below
    unreadable_pfns: list = field(default_factory=list)   # the first UNREADABLE_LISTED of them
    excluded: dict = field(default_factory=dict)  # pages dropped per class
    bytes_read: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    incomplete: bool = False
    warnings: list = field(default_factory=list)
    self_check: dict = field(default_factory=dict)

    def to_dict(self):
        return asdict(self)


class BitmapStore:
    """Cycle bitmaps kept for the second pass: in memory up to a cap, then a temp file."""

    def __init__(self, spill_dir, cap=BITMAP_CACHE_BYTES):
        self.cap, self.spill_dir = cap, spill_dir
        self.mem, self.used, self.file, self.index = {}, 0, None, {}

    def put(self, key, bitmap):
        if self.used + len(bitmap) <= self.cap:
            self.mem[key] = bitmap
            self.used += len(bitmap)
            return
        if self.file is None:
            self.file = tempfile.TemporaryFile(dir=self.spill_dir, prefix=".fastdump-bitmap-")
        self.file.seek(0, os.SEEK_END)
        self.index[key] = (self.file.tell(), len(bitmap))
        self.file.write(bitmap)

    def get(self, key):
        if key in self.mem:
            return self.mem[key]
        off, size = self.index[key]
        self.file.flush()
        return bytearray(os.pread(self.file.fileno(), size, off))

    def close(self):
        if self.file is not None:
            self.file.close()


def _runs_bitmap(runs, c0, c1):
    bm = bytearray(-(-(c1 - c0) // 8))
    for a, b in runs:
        a, b = max(a, c0), min(b, c1)
        if a < b:
            _core.bitmap_set_range(bm, a - c0, b - a)
    return bm


def _cycles(max_pfn):
    for c0 in range(0, max_pfn, CYCLE_PFNS):
        yield c0, min(c0 + CYCLE_PFNS, max_pfn)


def _make_judge(source, level, warn):
    """The page classifier for this dump level, or None when only zero pages matter."""
    try:
        from .kernel.judge import make_judge
    except ImportError:
        if level & CLASS_BITS:
            raise UsageError(f"dump level {level}: excluding cache, user or free pages (bits 2, 4, 8, 16) "
                             "is not available in this build") from None
        return None
    if level & CLASS_BITS:
        return make_judge(source, level, warn=warn)
    try:
        judge = make_judge(source, level, warn=warn)
    except FastdumpError as e:  # levels 0 and 1 must copy whatever the VMCOREINFO says
        warn(f"page classification unavailable ({e}); hwpoisoned/offline pages are kept")
        return None
    return judge if getattr(judge, "needs_struct_pages", True) else None


class Dump:
    """Runs one dump.  Construct, then ``run()``; statistics end up in ``stats``."""

    def __init__(self, source, target, *, level=0, compress="none", threads=None, format="kdump",
                 progress="auto", force=False, window_bytes=None, use_mmap=None, elf_class=None,
                 warn=None):
        if not 0 <= level <= 31:
            raise UsageError(f"dump level {level} is out of range 0..31")
        if format not in FORMATS:
            raise UsageError(f"unknown format {format!r} (kdump or elf)")
        if compress not in kdump.CODEC_FLAGS:
            raise UsageError(f"unknown compression {compress!r} (zstd, lz4, zlib or none)")
        if format == "elf" and compress != "none":
            raise UsageError("ELF dumps are not compressed; drop -c/-l/-z/--compress or use kdump format")
        self.source_path, self.target = source, target
        self.level, self.compress, self.format = level, compress, format
        self.force, self.elf_class = force, elf_class
        self.progress = progress if isinstance(progress, Progress) else Progress(progress or "quiet")
        self.warnings = []
        self._warn_cb = warn
        self.threads, self.window_bytes, self.use_mmap = threads, window_bytes, use_mmap
        self.stats = Stats(source=str(source), target=str(target), format=format, compress=compress,
                           dump_level=level)

    def warn(self, text):
        self.warnings.append(text)
        if self._warn_cb:
            self._warn_cb(text)
        else:
            self.progress.message(f"warning: {text}")

    def run(self):
        t0 = time.monotonic()
        with ElfSource(self.source_path) as src:
            if src.vmcoreinfo is None:
                self.warn("no VMCOREINFO note: only zero pages can be filtered")
            judge = _make_judge(src, self.level, self.warn)
            engine = CopyEngine(src, codec=self.compress, threads=self.threads,
                                window_bytes=self.window_bytes, use_mmap=self.use_mmap)
            self.stats.threads = engine.threads
            sink = FileSink(self.target, force=self.force)
            store = BitmapStore(os.path.dirname(os.path.abspath(self.target)))
            self.writer = None   # set by _kdump/_elf as soon as the first byte is written
            try:
                if self.format == "kdump":
                    self._kdump(src, judge, engine, sink, store)
                else:
                    self._elf(src, judge, engine, sink, store)
                self.writer.finish()
                self.stats.bytes_written = sink.bytes_written
                sink.commit()
            except BaseException as e:
                self.stats.incomplete = True
                writer = self.writer
                if writer is not None:
                    try:
                        writer.finish(incomplete=True)
                    except FastdumpError:
                        pass
                path = sink.abandon()
                if writer is None:  # nothing of the dump written yet: leave no file behind
                    os.unlink(path)
                    if isinstance(e, KeyboardInterrupt):
                        raise Interrupted("interrupted before the dump was started") from None
                    raise
                if isinstance(e, KeyboardInterrupt):
                    raise Interrupted(f"interrupted; dump left incomplete in {path}") from None
                if isinstance(e, FastdumpError):
                    raise type(e)(f"{e} (dump left incomplete in {path})") from None
                raise
            finally:
                store.close()
                self.progress.close()
            if judge is not None and hasattr(judge, "self_check"):
                try:
                    self.stats.self_check = judge.self_check()
                except FastdumpError as e:
                    self.warn(f"self-check not possible: {e}")
        if self.stats.pages_unreadable:
            first = ", ".join(f"{p:#x}" for p in self.stats.unreadable_pfns[:5])
            self.warn(f"{self.stats.pages_unreadable} source pages could not be read and are missing "
                      f"from the dump (first: {first})")
        self.stats.seconds = round(time.monotonic() - t0, 3)
        self.stats.warnings = list(self.warnings)
        return self.stats

    # -- shared first pass: which pages exist and which we keep ---------------
    def _judge_cycles(self, src, judge, on_cycle):
        present_runs, stored_runs = src.present_runs(), src.stored_runs()
        excluded = {}
        for c0, c1 in _cycles(src.max_pfn):
            present = _runs_bitmap(present_runs, c0, c1)
            keep = _runs_bitmap(stored_runs, c0, c1)
            self.stats.pages_scanned += _core.bitmap_count(present, c1 - c0)
            if judge is not None:
                for cls, n in judge.classify(c0, c1, keep).items():
                    excluded[cls] = excluded.get(cls, 0) + n
            on_cycle(c0, c1, present, keep)
        self.stats.excluded = {k: v for k, v in excluded.items() if v}

    def _tally(self, job, *, zeros=True):
        self.stats.bytes_read += job.bytes_read
        if zeros:
            self.stats.pages_zero += job.zero_pages
        if job.unreadable_pages:
            self.stats.pages_unreadable += job.unreadable_pages
            room = UNREADABLE_LISTED - len(self.stats.unreadable_pfns)
            if room > 0:
                self.stats.unreadable_pfns += job.unreadable_pfns()[:room]

    # -- kdump-compressed -------------------------------------------------------
    def _kdump(self, src, judge, engine, sink, store):
        vm = src.vmcoreinfo_note
        writer = kdump.KdumpWriter(
            sink, page_size=src.page_size, max_mapnr=src.max_pfn, dump_level=self.level,
            codec=self.compress, notes=src.note_bytes,
            vmcoreinfo_desc_offset=vm.desc_offset if vm else 0, vmcoreinfo_size=len(vm.desc) if vm else 0,
            nr_cpus=src.nr_cpus, utsname=read_utsname(src),
            crashtime=src.vmcoreinfo.crashtime if src.vmcoreinfo else None,
            phys_base=src.vmcoreinfo.phys_base if src.vmcoreinfo else 0)
        self.writer = writer
        writer.write_prologue()
        num_dumpable = 0

        def on_cycle(c0, c1, present, keep):
            nonlocal num_dumpable
            writer.write_bitmaps(c0, present, keep)
            num_dumpable += _core.bitmap_count(keep, c1 - c0)
            store.put(c0, keep)

        self.progress.phase("scanning", src.max_pfn)
        self._judge_cycles(src, judge, on_cycle)
        writer.pad_bitmaps()
        writer.start_pages(num_dumpable)
        self.progress.phase("copying", num_dumpable)

        def windows():
            for c0, c1 in _cycles(src.max_pfn):
                yield from engine.windows(store.get(c0), c0, c1 - c0)

        def commit(job):
            writer.commit(job)
            self._tally(job)
            self.progress.update(job.n_pages)

        engine.run(windows(), commit, zero_check=bool(self.level & 1))
        self.stats.pages_kept = writer.pages_written - self.stats.pages_zero - self.stats.pages_unreadable
        if self.level & 1:
            self.stats.excluded["zero"] = self.stats.pages_zero
        return writer

    # -- filtered ELF -------------------------------------------------------------
    def _elf(self, src, judge, engine, sink, store):
        from . import elf as elfmod
        elfclass = {None: src.elfclass, 32: elfmod.ELFCLASS32, 64: elfmod.ELFCLASS64}[self.elf_class]
        if elfclass == elfmod.ELFCLASS32:
            elfdump.check_fits_elf32(src.loads)   # before reading any page
        segments = [elfdump.Segment(p, src.page_size) for p in src.loads]
        self.progress.phase("scanning", src.max_pfn)
        zero_check = bool(self.level & 1)

        def on_cycle(c0, c1, present, keep):
            read_set = bytearray(keep)
            if zero_check:  # ELF drops zero pages, so find them before laying out the file
                zeros = bytearray(len(keep))

                def mark(job):
                    job.zero_bits_into(zeros, c0)
                    self.stats.bytes_read += job.bytes_read
                engine.run(engine.windows(keep, c0, c1 - c0), mark, zero_check=True, scan_only=True)
                _core.bitmap_clear_bits(read_set, zeros)
                self.stats.pages_zero += _core.bitmap_count(zeros, c1 - c0)
            for seg in segments:
                seg.feed(c0, c1, read_set, keep)
            store.put(c0, read_set)
            self.progress.update(c1 - c0)

        self._judge_cycles(src, judge, on_cycle)
        writer = self.writer = elfdump.ElfDumpWriter(sink, src, segments, elfclass=elfclass)
        writer.write_prologue()
        total = sum(e - s for _, s, e in writer.piece_jobs())
        self.progress.phase("copying", total)

        pieces = deque()

        def windows():
            for ph, first, end in writer.piece_jobs():
                for c0, c1 in _cycles(src.max_pfn):
                    lo, hi = max(first, c0), min(end, c1)
                    if lo < hi:
                        for w in engine.windows(store.get(c0), c0, hi - c0, start=lo - c0, dense=True):
                            pieces.append(ph)
                            yield w

        def commit(job):
            writer.commit_window(pieces.popleft(), job)
            self._tally(job, zeros=False)
            self.progress.update(job.n_pages)

        engine.run(windows(), commit, dense=True)
        self.stats.pages_kept = sum(_core.bitmap_count(store.get(c0), c1 - c0) for c0, c1 in _cycles(src.max_pfn))
        if zero_check:
            self.stats.excluded["zero"] = self.stats.pages_zero
        return writer


def dump(source, target, *, level=0, compress="none", threads=None, format="kdump", progress="quiet",
         force=False, window_bytes=None, use_mmap=None, elf_class=None, stats_json=None, warn=None):
    """Copy ``source`` (an ELF vmcore) to ``target``; returns a Stats object.

    ``level`` is makedumpfile's dump level (0..31), ``compress`` one of zstd, lz4,
    zlib, none, ``format`` kdump or elf.  Raises FastdumpError on failure, after
    leaving whatever was written as ``<target>.incomplete``.
    """
    d = Dump(source, target, level=level, compress=compress, threads=threads, format=format,
             progress=progress, force=force, window_bytes=window_bytes, use_mmap=use_mmap,
             elf_class=elf_class, warn=warn)
    stats = d.run()
    if stats_json:
        with open(stats_json, "w") as f:
            json.dump(stats.to_dict(), f, indent=1)
    return stats
