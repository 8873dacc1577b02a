"""One dump from source to target: cycles -> judgement -> copy engine -> format.

Two passes.  The first decides, cycle by cycle, which pages to keep (from struct
pages, never from page contents; for ELF also which pages are zero) and keeps
the bitmaps: in memory up to a cap, beyond it in a temporary file.  Only then is
a target opened: its room is checked against an estimate, and the second pass
reads, compresses and writes the kept pages.  A target that fails is left marked
incomplete and the next one (or the next dump level, for ``-d 11,31``) is tried
with the same first pass.
"""

import json
import os
import tempfile
import time
import zlib
from collections import deque
from dataclasses import asdict, dataclass, field

from . import _core
from . import elf as elfmod
from .engine import CopyEngine
from .errors import FastdumpError, Interrupted, NoSpaceError, TargetError, UsageError
from .formats import elfdump, kdump
from .progress import Progress
from .source import ElfSource
from .targets import Target, host_name, parse_target
from .utsname import read_utsname

CYCLE_PFNS = 1 << 23          # 32 GiB of 4 KiB pages; a cycle bitmap is 1 MiB
BITMAP_CACHE_BYTES = 8 << 20  # beyond this, cycle bitmaps go to a temp file
CLASS_BITS = 2 | 4 | 8 | 16
FORMATS = ("kdump", "elf")
UNREADABLE_LISTED = 1000
SPLITBLOCK_PFNS = 1 << 18     # split parts start on 1 GiB boundaries (crash needs multiples of 64)
ROOM_MARGIN = 1.1


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
    unreadable_pfns: list = field(default_factory=list)   # the first UNREADABLE_LISTED of them
    excluded: dict = field(default_factory=dict)  # pages dropped per class
    bytes_read: int = 0
    bytes_written: int = 0
    estimated_bytes: int = 0
    seconds: float = 0.0
    incomplete: bool = False
    warnings: list = field(default_factory=list)
    self_check: dict = field(default_factory=dict)
    failed_targets: list = field(default_factory=list)
    parts: list = field(default_factory=list)

    def to_dict(self):
        return asdict(self)


class BitmapStore:
    """Cycle bitmaps kept between the passes: in memory up to a cap, then a temp file."""

    def __init__(self, spill_dir=None, cap=BITMAP_CACHE_BYTES):
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


@dataclass
class Plan:
    """What the first pass decided for one dump level."""

    level: int
    keep: BitmapStore            # per cycle: pages to store (kdump: 2nd bitmap)
    num_dumpable: int = 0
    pages_scanned: int = 0
    excluded: dict = field(default_factory=dict)
    unclassified: int = 0
    self_check: dict = field(default_factory=dict)
    # ELF only
    reads: BitmapStore = None    # per cycle: pages to read (kept and not zero)
    segments: list = None
    pages_zero: int = 0
    zero_bytes_read: int = 0

    def close(self):
        self.keep.close()
        if self.reads is not None:
            self.reads.close()


class Dump:
    """One dump of one source to the first target (and dump level) that takes it."""

    def __init__(self, source, targets, *, levels=(0,), compress="none", threads=None, format="kdump",
                 progress="auto", force=False, window_bytes=None, use_mmap=None, elf_class=None,
                 warn=None, flat=False, split_parts=None, dmesg=True, split_block_pfns=SPLITBLOCK_PFNS,
                 mem_map=None, iomem=None, vmcoreinfo_file=None, direct_io=False):
        levels = list(levels)
        self.direct_io = direct_io
        self.mem_map, self.iomem, self.vmcoreinfo_file = mem_map, iomem, vmcoreinfo_file
        if split_block_pfns <= 0 or split_block_pfns % 64:
            raise UsageError("the split block must be a positive multiple of 64 pages (256 KiB)")
        self.split_block = split_block_pfns
        for level in levels:
            if not 0 <= level <= 31:
                raise UsageError(f"dump level {level} is out of range 0..31")
        if format not in FORMATS:
            raise UsageError(f"unknown format {format!r} (kdump or elf)")
        if compress not in kdump.CODEC_FLAGS:
            raise UsageError(f"unknown compression {compress!r} (zstd, lz4, lzo, snappy, zlib or none)")
        if format == "elf" and compress != "none":
            raise UsageError("ELF dumps are not compressed; drop -c/-l/-z/--compress or use kdump format")
        if split_parts and (format != "kdump" or flat):
            raise UsageError("--split writes kdump-compressed files; it cannot be combined with -E or -F")
        self.source_path = source
        self.targets = [t if isinstance(t, Target) else parse_target(t) for t in targets]
        if not self.targets and not split_parts:
            raise UsageError("no target given")
        self.levels, self.compress, self.format = levels, compress, format
        self.force, self.elf_class, self.flat, self.dmesg = force, elf_class, flat, dmesg
        self.split_parts = split_parts
        self.progress = progress if isinstance(progress, Progress) else Progress(progress or "quiet")
        self.warnings = []
        self._warn_cb = warn
        self.threads, self.window_bytes, self.use_mmap = threads, window_bytes, use_mmap
        self.stats = None
        self.writer = None

    def warn(self, text):
        self.warnings.append(text)
        if self._warn_cb:
            self._warn_cb(text)
        else:
            self.progress.message(f"warning: {text}")

    # -- the whole run ----------------------------------------------------------
    def run(self):
        t0 = time.monotonic()
        plans = {}
        try:
            with self._open_source() as src:
                if src.vmcoreinfo is None:
                    self.warn("no VMCOREINFO note: only zero pages can be filtered")
                engine = CopyEngine(src, codec=self.compress, threads=self.threads,
                                    window_bytes=self.window_bytes, use_mmap=self.use_mmap)
                self.utsname = read_utsname(src)
                self.host, self.when = host_name(self.utsname), time.localtime()
                if self.split_parts:
                    stats = self._run_split(src, engine, plans)
                else:
                    stats = self._run_targets(src, engine, plans)
        finally:
            for plan in plans.values():
                plan.close()
            self.progress.close()
        if stats.pages_unreadable:
            first = ", ".join(f"{p:#x}" for p in stats.unreadable_pfns[:5])
            self.warn(f"{stats.pages_unreadable} source pages could not be read and are missing "
                      f"from the dump (first: {first})")
        stats.seconds = round(time.monotonic() - t0, 3)
        stats.warnings = list(self.warnings)
        self.stats = stats
        return stats

    def _open_source(self):
        """An ELF vmcore, or raw memory (/dev/oldmem) when a memory map is given."""
        if self.mem_map or self.iomem or os.path.realpath(self.source_path) == "/dev/oldmem":
            from .rawsource import open_raw
            return open_raw(self.source_path, mem_map=self.mem_map, iomem=self.iomem,
                            vmcoreinfo_file=self.vmcoreinfo_file)
        src = ElfSource(self.source_path)
        if self.vmcoreinfo_file:   # makedumpfile -i: VMCOREINFO from a file for a vmcore without one
            from .rawsource import load_vmcoreinfo_file
            from .vmcoreinfo import VmcoreInfo
            text = load_vmcoreinfo_file(self.vmcoreinfo_file)
            if src.vmcoreinfo is None:
                note = elfmod.build_note(b"VMCOREINFO", 0, text)
                src.note_bytes += note
                src.notes = elfmod.parse_notes(src.note_bytes)
                src.vmcoreinfo_note = src.notes[-1]
            src.vmcoreinfo = VmcoreInfo(text)
        return src

    def _new_stats(self, target, level, engine):
        return Stats(source=str(self.source_path), target=target.spec if target else "", format=self.format,
                     compress=self.compress, dump_level=level, threads=engine.threads)

    def _run_targets(self, src, engine, plans):
        failures = []
        last_error = None
        for ti, target in enumerate(self.targets):
            for li, level in enumerate(self.levels):
                stats = self._new_stats(target, level, engine)
                stats.failed_targets = list(failures)
                try:
                    plan = plans.get(level) or plans.setdefault(level, self._plan(src, level, engine))
                    self._apply_plan(stats, plan)
                    self._check_room(src, plan, target, stats)
                    self._write(src, plan, engine, target, stats, retry=li > 0)
                    self._after(src, target, stats)
                    return stats
                except NoSpaceError as e:
                    last_error = e
                    if li + 1 < len(self.levels):
                        self.warn(f"{e}; retrying with dump level {self.levels[li + 1]}")
                        continue
                    failures.append(f"{target.spec}: {e}")
                except TargetError as e:
                    last_error = e
                    failures.append(f"{target.spec}: {e}")
                break
            if ti + 1 < len(self.targets):
                self.warn(f"target {target.spec} failed ({failures[-1].split(': ', 1)[1]}); "
                          f"trying {self.targets[ti + 1].spec}")
        if len(self.targets) == 1:
            raise last_error
        raise TargetError("no target could take the dump: " + "; ".join(failures))

    # -- pass 1: what to keep ---------------------------------------------------
    def _plan(self, src, level, engine):
        judge = _make_judge(src, level, self.warn)
        spill = self._spill_dir()
        plan = Plan(level=level, keep=BitmapStore(spill))
        present_runs, stored_runs = src.present_runs(), src.stored_runs()
        self.progress.phase("scanning", src.max_pfn)
        for c0, c1 in _cycles(src.max_pfn):
            keep = _runs_bitmap(stored_runs, c0, c1)
            plan.pages_scanned += _core.bitmap_count(_runs_bitmap(present_runs, c0, c1), c1 - c0)
            if judge is not None:
                for cls, n in judge.classify(c0, c1, keep).items():
                    plan.excluded[cls] = plan.excluded.get(cls, 0) + n
            plan.num_dumpable += _core.bitmap_count(keep, c1 - c0)
            plan.keep.put(c0, keep)
            self.progress.update(c1 - c0)
        plan.unclassified = plan.excluded.pop("unclassified", 0)
        plan.excluded = {k: v for k, v in plan.excluded.items() if v}
        if judge is not None and hasattr(judge, "self_check"):
            try:
                plan.self_check = judge.self_check()
            except FastdumpError as e:
                self.warn(f"self-check not possible: {e}")
        if self.format == "elf":
            self._plan_elf(src, plan, engine)
        return plan

    def _plan_elf(self, src, plan, engine):
        """ELF drops zero pages, so they must be known before the file is laid out."""
        if self._elfclass(src) == elfmod.ELFCLASS32:
            elfdump.check_fits_elf32(src.loads)   # before reading any page
        plan.reads = BitmapStore(self._spill_dir())
        plan.segments = [elfdump.Segment(p, src.page_size) for p in src.loads]
        zero_check = bool(plan.level & 1)
        self.progress.phase("zero scan" if zero_check else "layout", plan.num_dumpable)
        for c0, c1 in _cycles(src.max_pfn):
            keep = plan.keep.get(c0)
            reads = bytearray(keep)
            if zero_check:
                zeros = bytearray(len(keep))

                def mark(job):
                    job.zero_bits_into(zeros, c0)
                    plan.zero_bytes_read += job.bytes_read
                    self.progress.update(job.n_pages)
                engine.run(engine.windows(keep, c0, c1 - c0), mark, zero_check=True, scan_only=True)
                _core.bitmap_clear_bits(reads, zeros)
                plan.pages_zero += _core.bitmap_count(zeros, c1 - c0)
            for seg in plan.segments:
                seg.feed(c0, c1, reads, keep)
            plan.reads.put(c0, reads)
        if zero_check:
            plan.excluded["zero"] = plan.pages_zero

    def _spill_dir(self):
        for t in self.targets:
            if t.kind == "dir":
                return t.path
            if t.kind == "file":
                return os.path.dirname(os.path.abspath(t.path))
        return None

    def _apply_plan(self, stats, plan):
        stats.pages_scanned = plan.pages_scanned
        stats.excluded = dict(plan.excluded)
        stats.pages_unclassified = plan.unclassified
        stats.self_check = plan.self_check
        if self.format == "elf":
            stats.pages_zero = plan.pages_zero
            stats.bytes_read += plan.zero_bytes_read

    # -- room -------------------------------------------------------------------
    def _check_room(self, src, plan, target, stats):
        """Skip a target that cannot hold the dump.  The uncompressed size is an upper
        bound; only when that does not fit is the compression ratio sampled."""
        free = target.free_bytes()
        need = self._estimate(src, plan, sample=False)
        if free is not None and need * ROOM_MARGIN > free:
            need = self._estimate(src, plan, sample=True)
            if need * ROOM_MARGIN > free:
                stats.estimated_bytes = need
                raise NoSpaceError(f"needs about {need / 1e6:.0f} MB, only {free / 1e6:.0f} MB free")
        stats.estimated_bytes = need

    def _estimate(self, src, plan, *, sample):
        """Bytes the dump will take: exact for ELF; for kdump at most the raw pages, or
        with ``sample`` a compression ratio measured on a few kept pages."""
        if self.format == "elf":
            return elfdump.ElfDumpWriter.size_of(src, plan.segments, self._elfclass(src))
        layout = kdump.KdumpLayout(block_size=src.page_size, max_mapnr=src.max_pfn, note_size=len(src.note_bytes))
        ratio = self._sample_ratio(src, plan) if sample else 1.0
        return layout.desc_table + 24 * plan.num_dumpable + int(plan.num_dumpable * src.page_size * ratio)

    def _sample_ratio(self, src, plan, samples=256):
        """Compressed/raw ratio over a few kept pages spread across the dump."""
        if self.compress == "none" or plan.num_dumpable == 0:
            return 1.0
        step = max(1, plan.num_dumpable // samples)
        raw = packed = 0
        seen = 0
        for c0, c1 in _cycles(src.max_pfn):
            for a, b in _core.bitmap_runs(plan.keep.get(c0), c1 - c0):
                for pfn in range(c0 + a + (-seen) % step, c0 + b, step):
                    try:
                        page = src.read_pfn(pfn)
                    except FastdumpError:
                        continue
                    raw += len(page)
                    packed += min(len(page), len(zlib.compress(page, 1)))
                seen += b - a
        ratio = packed / raw if raw else 1.0
        return min(1.0, ratio * (1.35 if self.compress == "lz4" else 1.0))

    # -- pass 2: write ------------------------------------------------------------
    def _write(self, src, plan, engine, target, stats, *, retry=False):
        sink = target.open(host=self.host, when=self.when, flat=self.flat, force=self.force or retry,
                           direct=self.direct_io)
        stats.dump_path = target.dump_path
        self.writer = None
        self._plan_in_use = plan
        try:
            if self.format == "kdump":
                self.writer = self._kdump_writer(src, sink, plan.level)
                self._copy_kdump(src, plan, engine, self.writer, stats)
            else:
                self._copy_elf(src, plan, engine, sink, stats)
            self.writer.finish()
            stats.bytes_written = sink.bytes_written
            sink.commit()
        except BaseException as e:
            self._abandon(sink, stats, e)

    def _abandon(self, sink, stats, e):
        stats.incomplete = True
        writer = self.writer
        if writer is not None:
            try:
                if isinstance(writer, kdump.KdumpWriter):
                    plan, max_pfn = self._plan_in_use, writer.layout.max_mapnr
                    writer.finish(incomplete=True, bitmaps=lambda: ((c0, c1, plan.keep.get(c0))
                                                                     for c0, c1 in _cycles(max_pfn)))
                else:
                    writer.finish(incomplete=True)
            except FastdumpError:
                pass
        path = sink.abandon()
        if writer is None and getattr(sink, "temp_path", None) and os.path.exists(sink.temp_path) \
                and not getattr(sink, "stream", None):
            os.unlink(sink.temp_path)   # nothing of the dump written yet: leave no file behind
            if isinstance(e, KeyboardInterrupt):
                raise Interrupted("interrupted before the dump was started") from None
            raise e
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted(f"interrupted; dump left incomplete in {path}") from None
        if isinstance(e, FastdumpError):
            raise type(e)(f"{e} (dump left incomplete in {path})") from None
        raise e

    def _kdump_writer(self, src, sink, level, split=None):
        vm = src.vmcoreinfo_note
        return kdump.KdumpWriter(
            sink, page_size=src.page_size, max_mapnr=src.max_pfn, dump_level=level,
            codec=self.compress, notes=src.note_bytes,
            vmcoreinfo_desc_offset=vm.desc_offset if vm else 0, vmcoreinfo_size=len(vm.desc) if vm else 0,
            nr_cpus=src.nr_cpus, utsname=self.utsname,
            crashtime=src.vmcoreinfo.crashtime if src.vmcoreinfo else None,
            phys_base=src.vmcoreinfo.phys_base if src.vmcoreinfo else 0, split=split)

    def _tally(self, stats, job, *, zeros=True):
        stats.bytes_read += job.bytes_read
        if zeros:
            stats.pages_zero += job.zero_pages
        if job.unreadable_pages:
            stats.pages_unreadable += job.unreadable_pages
            room = UNREADABLE_LISTED - len(stats.unreadable_pfns)
            if room > 0:
                stats.unreadable_pfns += job.unreadable_pfns()[:room]

    def _copy_kdump(self, src, plan, engine, writer, stats, pfn_range=None):
        """Header, bitmaps, then every kept page of ``pfn_range`` (default: all)."""
        writer.write_prologue()
        present_runs = src.present_runs()
        for c0, c1 in _cycles(src.max_pfn):
            writer.write_bitmaps(c0, _runs_bitmap(present_runs, c0, c1), plan.keep.get(c0))
        writer.pad_bitmaps()
        lo, hi = pfn_range or (0, src.max_pfn)
        total = sum(_core.bitmap_count_range(plan.keep.get(c0), max(lo, c0) - c0, min(hi, c1) - c0)
                    for c0, c1 in _cycles(src.max_pfn) if c0 < hi and c1 > lo)
        writer.start_pages(plan.num_dumpable, own=total)
        self.progress.phase("copying", total)

        def windows():
            for c0, c1 in _cycles(src.max_pfn):
                if c0 < hi and c1 > lo:
                    yield from engine.windows(plan.keep.get(c0), c0, min(hi, c1) - c0, start=max(lo, c0) - c0)

        def commit(job):
            writer.commit(job)
            self._tally(stats, job)
            self.progress.update(job.n_pages)

        zeros0, unreadable0 = stats.pages_zero, stats.pages_unreadable
        engine.run(windows(), commit, zero_check=bool(plan.level & 1))
        stats.pages_kept += (writer.pages_written - (stats.pages_zero - zeros0)
                             - (stats.pages_unreadable - unreadable0))
        if plan.level & 1:
            stats.excluded["zero"] = stats.pages_zero

    def _elfclass(self, src):
        return {None: src.elfclass, 32: elfmod.ELFCLASS32, 64: elfmod.ELFCLASS64}[self.elf_class]

    def _copy_elf(self, src, plan, engine, sink, stats):
        elfclass = self._elfclass(src)
        writer = self.writer = elfdump.ElfDumpWriter(sink, src, plan.segments, elfclass=elfclass)
        writer.write_prologue()
        total = sum(e - s for _, s, e in writer.piece_jobs())
        self.progress.phase("copying", total)
        pieces = deque()

        def windows():
            for ph, first, end in writer.piece_jobs():
                for c0, c1 in _cycles(src.max_pfn):
                    lo, hi = max(first, c0), min(end, c1)
                    if lo < hi:
                        for w in engine.windows(plan.reads.get(c0), c0, hi - c0, start=lo - c0, dense=True):
                            pieces.append(ph)
                            yield w

        def commit(job):
            writer.commit_window(pieces.popleft(), job)
            self._tally(stats, job, zeros=False)
            self.progress.update(job.n_pages)

        engine.run(windows(), commit, dense=True)
        stats.pages_kept = sum(_core.bitmap_count(plan.reads.get(c0), c1 - c0) for c0, c1 in _cycles(src.max_pfn))

    # -- after a dump -------------------------------------------------------------
    def _after(self, src, target, stats):
        """Directory targets also get the kernel log, as kdump-utils leaves it."""
        if target.kind != "dir" or not self.dmesg:
            return
        path = os.path.join(os.path.dirname(target.dump_path), "vmcore-dmesg.txt")
        try:
            from .dmesg import extract_dmesg
            text = extract_dmesg(src)
        except ImportError:
            return
        except FastdumpError as e:
            self.warn(f"no vmcore-dmesg.txt: {e}")
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)

    # -- split dumps ----------------------------------------------------------------
    def _run_split(self, src, engine, plans):
        """N kdump files, each a pfn range, with identical headers (crash and makedumpfile
        --reassemble rules); parts start on splitblock boundaries."""
        level = self.levels[0]
        plan = plans.setdefault(level, self._plan(src, level, engine))
        stats = self._new_stats(None, level, engine)
        stats.target = " ".join(self.split_parts)
        self._apply_plan(stats, plan)
        ranges = self._split_ranges(src, plan, len(self.split_parts))
        for path, (lo, hi) in zip(self.split_parts, ranges):
            target = parse_target(path)
            if target.kind != "file":
                raise UsageError(f"--split parts must be files: {path}")
            sink = target.open(host=self.host, when=self.when, flat=False, force=self.force,
                               direct=self.direct_io)
            self.writer = None
            self._plan_in_use = plan
            try:
                self.writer = self._kdump_writer(src, sink, level, split=(lo, hi))
                self._copy_kdump(src, plan, engine, self.writer, stats, pfn_range=(lo, hi))
                self.writer.finish()
                stats.bytes_written += sink.bytes_written
                sink.commit()
            except BaseException as e:
                self._abandon(sink, stats, e)
            stats.parts.append({"path": path, "start_pfn": lo, "end_pfn": hi})
        return stats

    def _split_ranges(self, src, plan, nparts):
        """Contiguous [start, end) ranges holding about num_dumpable/N dumpable pages each."""
        counts = []
        for c0, c1 in _cycles(src.max_pfn):
            keep = plan.keep.get(c0)
            for b in range(c0, c1, self.split_block):
                counts.append((b, _core.bitmap_count_range(keep, b - c0, min(c1, b + self.split_block) - c0)))
        ranges, start, acc = [], 0, 0
        share = plan.num_dumpable / nparts
        for b, n in counts:
            acc += n
            if len(ranges) < nparts - 1 and acc >= share * (len(ranges) + 1):
                end = min(src.max_pfn, b + self.split_block)
                ranges.append((start, end))
                start = end
        while len(ranges) < nparts:
            ranges.append((start, src.max_pfn))
            start = src.max_pfn
        return ranges


def dump(source, target=None, *, level=0, compress="none", threads=None, format="kdump", progress="quiet",
         force=False, window_bytes=None, use_mmap=None, elf_class=None, stats_json=None, warn=None,
         targets=None, flat=False, split=None, dmesg=True, split_block_pfns=SPLITBLOCK_PFNS,
         mem_map=None, iomem=None, vmcoreinfo_file=None, direct_io=False):
    """Copy ``source`` (an ELF vmcore) to ``target``; returns a Stats object.

    ``level`` is makedumpfile's dump level (0..31) or a list of levels to fall
    back to when a target fills up; ``compress`` one of zstd, lz4, lzo, snappy, zlib, none;
    ``format`` kdump or elf.  A raw memory image (/dev/oldmem) needs ``mem_map``
    ("START-END,...") or ``iomem`` (a /proc/iomem copy); ``vmcoreinfo_file`` is
    makedumpfile's ``-i``.  ``target`` is a file, an existing directory (a
    kdump-utils style ``<host>-<date>/vmcore`` is made in it), ``-`` (stdout,
    flattened), ``raw:DEV`` or ``ssh://user@host/dir``; ``targets`` a list of
    them tried in order.  ``split`` is a list of part files.  Raises
    FastdumpError on failure, leaving what was written marked incomplete.
    """
    levels = list(level) if isinstance(level, (list, tuple)) else [level]
    all_targets = ([target] if target is not None else []) + list(targets or [])
    d = Dump(source, all_targets, levels=levels, compress=compress, threads=threads, format=format,
             progress=progress, force=force, window_bytes=window_bytes, use_mmap=use_mmap,
             elf_class=elf_class, warn=warn, flat=flat, split_parts=split, dmesg=dmesg,
             split_block_pfns=split_block_pfns, mem_map=mem_map, iomem=iomem, vmcoreinfo_file=vmcoreinfo_file,
             direct_io=direct_io)
    stats = d.run()
    if stats_json:
        with open(stats_json, "w") as f:
            json.dump(stats.to_dict(), f, indent=1)
    return stats
