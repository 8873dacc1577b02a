"""One dump from source to target: cycles -> judgement -> copy engine -> format.

Two passes.  The first decides, cycle by cycle, which pages to keep (from struct
pages, never from page contents; for ELF also which pages are zero) and keeps
the bitmaps: in memory up to a cap, beyond it in a temporary file.  Only then is
a target opened: its room is checked against an estimate, and the second pass
reads, compresses and writes the kept pages.  A target that fails is left marked
incomplete and the next one (or the next dump level, for ``-d 11,31``) is tried
with the same first pass.
"""

import bisect
import json
import os
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from .. import _core, safefile
from ..formats import elf as elfmod
from .engine import CopyEngine
from ..errors import FastdumpError, Interrupted, NoSpaceError, TargetError, UsageError
from ..formats import codecs, elfdump, kdump
from ..kernel.levels import MAX_LEVEL, DumpLevel
from ..options import PROGRESS, DumpOptions, PathArg, choice_arg
from .progress import Progress
from ..sources.vmcore import ElfSource
from ..targets.kinds import FileTarget, Target, host_name, parse_target
from ..kernel.utsname import read_utsname

CYCLE_PFNS = 1 << 23          # 32 GiB of 4 KiB pages; a cycle bitmap is 1 MiB
BITMAP_CACHE_BYTES = 8 << 20  # beyond this, cycle bitmaps go to a temp file
UNREADABLE_LISTED = 1000
SPLITBLOCK_PFNS = 1 << 18     # split parts start on 1 GiB boundaries (crash needs multiples of 64)
ROOM_MARGIN = 1.1             # a sampled estimate refuses a target only when this far over its room


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
    bytes_read: int = 0
    bytes_written: int = 0
    estimated_bytes: int = 0
    seconds: float = 0.0
    incomplete: bool = False
    warnings: List[str] = field(default_factory=list)
    self_check: Dict[str, Any] = field(default_factory=dict)
    failed_targets: List[str] = field(default_factory=list)
    parts: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class BitmapStore:
    """Cycle bitmaps kept between the passes: in memory up to a cap, then a temp file.
    An empty cycle costs nothing: memory the source only describes (a huge p_memsz)
    never reaches the spill file."""

    def __init__(self, spill_dir=None, cap=BITMAP_CACHE_BYTES):
        self.cap, self.spill_dir = cap, spill_dir
        self.mem, self.used, self.file, self.index = {}, 0, None, {}
        self.empty = {}    # key -> length of an all-zero bitmap

    def put_empty(self, key, nbits):
        self.empty[key] = -(-nbits // 8)

    def put(self, key, bitmap):
        if not _core.bitmap_count(bitmap, 8 * len(bitmap)):
            self.empty[key] = len(bitmap)
            return
        if self.used + len(bitmap) <= self.cap:
            self.mem[key] = bitmap
            self.used += len(bitmap)
            return
        if self.file is None:
            self.file = tempfile.TemporaryFile(dir=self.spill_dir, prefix=".fastdump-bitmap-")
        self.file.seek(0, os.SEEK_END)
        self.index[key] = (self.file.tell(), len(bitmap))
        self.file.write(bitmap)

    def is_empty(self, key):
        return key in self.empty

    def get(self, key):
        if key in self.empty:
            return bytearray(self.empty[key])
        if key in self.mem:
            return self.mem[key]
        off, size = self.index[key]
        self.file.flush()
        return bytearray(os.pread(self.file.fileno(), size, off))

    def close(self):
        if self.file is not None:
            self.file.close()


def _own_file(sink):
    """(temp path, inode) of the file a sink created, or None for streams."""
    fd, path = getattr(sink, "fd", -1), getattr(sink, "temp_path", None)
    return (path, os.fstat(fd).st_ino) if path and fd >= 0 else None


def _runs_in(runs, c0, c1):
    """The parts of sorted, disjoint ``(first, end)`` runs inside ``c0..c1``, found by
    bisection: a cycle costs log(#runs), not #runs (many PT_LOADs stay linear)."""
    i = bisect.bisect_left(runs, (c0,))
    if i and runs[i - 1][1] > c0:
        i -= 1
    while i < len(runs) and runs[i][0] < c1:
        a, b = max(runs[i][0], c0), min(runs[i][1], c1)
        if a < b:
            yield a, b
        i += 1


def _runs_bitmap(runs, c0, c1):
    bm = bytearray(-(-(c1 - c0) // 8))
    for a, b in _runs_in(runs, c0, c1):
        _core.bitmap_set_range(bm, a - c0, b - a)
    return bm


def _cycles(max_pfn, lo=0, hi=None):
    """Cycles ``(c0, c1)`` up to max_pfn; with lo/hi only those overlapping lo..hi."""
    hi = max_pfn if hi is None else min(hi, max_pfn)
    for c0 in range(lo - lo % CYCLE_PFNS, hi, CYCLE_PFNS):
        yield c0, min(c0 + CYCLE_PFNS, max_pfn)


def _make_judge(source, level, warn, engine):
    """The page classifier for this dump level, or None when only zero pages matter; it
    reads struct pages on the engine's threads, as the engine reads pages."""
    try:
        from ..kernel.judge import make_judge
    except ImportError:
        if level & DumpLevel.CLASSES:
            raise UsageError(f"dump level {level}: excluding cache, user or free pages (bits 2, 4, 8, 16) "
                             "is not available in this build") from None
        return None
    how = {"threads": engine.threads, "use_mmap": engine.use_mmap}
    if level & DumpLevel.CLASSES:
        return make_judge(source, level, warn=warn, **how)
    try:
        judge = make_judge(source, level, warn=warn, **how)
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
                 mem_map=None, iomem=None, vmcoreinfo_file=None, direct_io=False, size_limit=None, dry_run=False,
                 erase_config=None, vmlinux=None):
        """Takes options already checked by ``DumpOptions.check`` (``dump`` does that)."""
        self.erase_config, self.vmlinux, self.erase = erase_config, vmlinux, None
        self.size_limit, self.dry_run = size_limit, dry_run
        levels = list(levels)
        self.direct_io = direct_io
        self.mem_map, self.iomem, self.vmcoreinfo_file = mem_map, iomem, vmcoreinfo_file
        self.split_block = split_block_pfns
        self.source_path = source
        self.targets = [self._bounded(t if isinstance(t, Target) else parse_target(t)) for t in targets]
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
        self._committed = deque()   # kdump: (done_to, desc_off, data_off) after each recent window
        self._leftovers = {}      # target spec: (path, inode) of the incomplete file the last attempt left
        self._log_saved = None    # the kernel log saved when no target had room for the dump

    def _bounded(self, target):
        """Every target of this run takes ``-L`` and ``--dry-run`` (the target enforces them)."""
        target.size_limit, target.dry_run = self.size_limit, self.dry_run
        return target

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
                if self.erase_config:
                    self._set_erase(src, engine)
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

    def _set_erase(self, src, engine):
        """makedumpfile's --config: the named bytes, found before any page is read, are
        overwritten in every page the engine copies (estimates and plans included)."""
        from ..kernel import erase
        self.erase = erase.resolve(erase.load(self.erase_config), src.kernel, vmlinux=self.vmlinux)
        engine.core_source.set_erase(self.erase.table)
        self.progress.message(f"erasing {self.erase.nbytes} bytes in {len(self.erase)} pieces "
                              f"({self.erase_config})")

    def _eraseinfo(self, src):
        """What the dump records as erased: what its source recorded, then this run's."""
        from ..kernel.erase import recorded
        return recorded(src) + (self.erase.eraseinfo if self.erase else b"")

    def _open_source(self):
        """An ELF vmcore, or raw memory (/dev/oldmem) when a memory map is given."""
        if self.mem_map or self.iomem or os.path.realpath(self.source_path) == "/dev/oldmem":
            from ..sources.rawmem import open_raw
            return open_raw(self.source_path, mem_map=self.mem_map, iomem=self.iomem,
                            vmcoreinfo_file=self.vmcoreinfo_file)
        src = ElfSource(self.source_path)
        if self.vmcoreinfo_file:   # makedumpfile -i: VMCOREINFO from a file for a vmcore without one
            from ..sources.rawmem import load_vmcoreinfo_file
            from ..kernel.vmcoreinfo import VmcoreInfo
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
        """The user's targets and levels in order; when none has room, ``_save_something``."""
        failures, no_room = [], []
        last_error = None
        for ti, target in enumerate(self.targets):
            for li, level in enumerate(self.levels):
                try:
                    return self._attempt(src, engine, plans, target, level, failures, retry=li > 0)
                except NoSpaceError as e:
                    last_error = e
                    if li + 1 < len(self.levels):
                        self.warn(f"{e}; retrying with dump level {self.levels[li + 1]}")
                        continue
                    failures.append(f"{target.spec}: {e}")
                    no_room.append((target, level, e))
                except TargetError as e:
                    last_error = e
                    failures.append(f"{target.spec}: {e}")
                break
            if ti + 1 < len(self.targets):
                self.warn(f"target {target.spec} failed ({failures[-1].split(': ', 1)[1]}); "
                          f"trying {self.targets[ti + 1].spec}")
        if no_room:
            return self._save_something(src, engine, plans, no_room, failures)
        if len(self.targets) == 1:
            raise last_error
        raise TargetError("no target could take the dump: " + "; ".join(failures))

    def _attempt(self, src, engine, plans, target, level, failures, *, retry=False, check_room=True):
        stats = self._new_stats(target, level, engine)
        stats.failed_targets = list(failures)
        plan = plans.get(level) or plans.setdefault(level, self._plan(src, level, engine))
        self._apply_plan(stats, plan)
        if check_room:
            self._check_room(src, plan, engine, target, stats)
        self._write(src, plan, engine, target, stats, retry=retry)
        self._after(src, target, stats)
        return stats

    def _save_something(self, src, engine, plans, no_room, failures):
        """No target has room for the requested level(s): never save nothing.  The
        kernel log first (small, and often all that is needed), then the highest
        dump level (31, unless the user's -d list said which levels to fall back
        to), and if that does not fit either, what fits: the dump written anyway,
        on the target with the most room, left flagged incomplete (exit non-zero)."""
        self._save_kernel_log(src, [t for t, _, _ in no_room])
        filled = {t.spec for t, _, e in no_room if not getattr(e, "estimated", False)}
        level = self.levels[-1] if len(self.levels) > 1 else MAX_LEVEL
        if level not in self.levels:
            for target, _, e in no_room:
                self.warn(f"{target.spec}: no room for dump level {self.levels[-1]} ({e}); "
                          f"trying dump level {level}")
                try:
                    return self._attempt(src, engine, plans, target, level, failures, retry=True)
                except NoSpaceError as e2:
                    failures.append(f"{target.spec} at dump level {level}: {e2}")
                    if not getattr(e2, "estimated", False):
                        filled.add(target.spec)
                except TargetError as e2:
                    failures.append(f"{target.spec}: {e2}")
                except FastdumpError as e2:   # e.g. this dump cannot be classified: no level 31
                    self.warn(f"dump level {level} is not possible here ({e2}); "
                              f"keeping dump level {self.levels[-1]}")
                    level = self.levels[-1]
                    break
        # a target a write filled up already holds what fitted, flagged incomplete
        refused = [t for t, _, _ in no_room if t.spec not in filled]
        if filled or not refused:
            raise NoSpaceError("no target has room for the dump: " + "; ".join(failures))
        target = max(refused, key=lambda t: t.free_bytes() or 0)
        if self.format != "elf":      # without its whole header and bitmaps no reader opens it
            try:
                self._check_header_room(src, target)
            except NoSpaceError as e:
                raise NoSpaceError(f"no target has room for the dump: {e}") from None
        self.warn(f"no target has room for the dump; writing what fits to {target.spec} "
                  f"at dump level {level} (it will be flagged incomplete)")
        return self._attempt(src, engine, plans, target, level, failures, retry=True, check_room=False)

    def _save_kernel_log(self, src, targets):
        """The kernel log beside the first local target that takes it."""
        try:
            from ..kernel.dmesg import extract_dmesg
            text = extract_dmesg(src).encode()
        except (ImportError, FastdumpError) as e:
            self.warn(f"kernel log not saved: {e}")
            return
        for target in targets:
            path = target.side_path("dmesg.txt", host=self.host, when=self.when, force=self.force)
            if path is None:
                continue
            try:
                safefile.write_file(path, text, force=self.force)
            except FastdumpError as e:
                self.warn(f"kernel log not saved in {target.spec}: {e}")
                continue
            self.warn(f"no room for the dump: kernel log saved in {path}")
            self._log_saved = path
            return

    # -- pass 1: what to keep ---------------------------------------------------
    def _plan(self, src, level, engine):
        judge = _make_judge(src, level, self.warn, engine)
        spill = self._spill_dir()
        plan = Plan(level=level, keep=BitmapStore(spill))
        present_runs, stored_runs = src.present_runs(), src.stored_runs()
        self.progress.phase("scanning", src.max_pfn)
        for c0, c1 in _cycles(src.max_pfn):
            plan.pages_scanned += sum(b - a for a, b in _runs_in(present_runs, c0, c1))
            if next(_runs_in(stored_runs, c0, c1), None) is None:
                plan.keep.put_empty(c0, c1 - c0)      # only described (p_memsz): costs nothing
                self.progress.update(c1 - c0)
                continue
            keep = _runs_bitmap(stored_runs, c0, c1)
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
        zero_check = bool(plan.level & DumpLevel.ZERO)
        self.progress.phase("zero scan" if zero_check else "layout", plan.num_dumpable)
        by_cycle = {}    # cycle -> the segments storing pages in it: #segments x #cycles stays linear
        for seg in plan.segments:
            for c0, _ in _cycles(src.max_pfn, seg.first_pfn, seg.end_pfn):
                by_cycle.setdefault(c0, []).append(seg)
        for c0, c1 in _cycles(src.max_pfn):
            if c0 not in by_cycle:     # no page stored in this cycle: nothing kept, nothing to read
                plan.reads.put_empty(c0, c1 - c0)
                continue
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
            for seg in by_cycle[c0]:
                seg.feed(c0, c1, reads, keep)
            plan.reads.put(c0, reads)
        if zero_check:
            plan.excluded["zero"] = plan.pages_zero

    def _spill_dir(self):
        return next((d for d in (t.local_dir() for t in self.targets) if d), None)

    def _apply_plan(self, stats, plan):
        stats.pages_scanned = plan.pages_scanned
        stats.excluded = dict(plan.excluded)
        stats.pages_unclassified = plan.unclassified
        stats.self_check = plan.self_check
        if self.format == "elf":
            stats.pages_zero = plan.pages_zero
            stats.bytes_read += plan.zero_bytes_read

    # -- room -------------------------------------------------------------------
    def _check_room(self, src, plan, engine, target, stats):
        """Skip a target only when the dump clearly cannot fit: the estimate must never
        refuse a target that would have held the real dump.  The uncompressed size is
        an upper bound; only when that does not fit are a few kept pages stored for
        real (the same codec and zero check) to measure what a page takes, and only a
        shortfall beyond the sampling error (ROOM_MARGIN) refuses: a close call is
        tried, and a disk that fills up then is handled like any other."""
        free = target.free_bytes()
        need = self._estimate(src, plan, engine, sample=False)
        if free is not None and need > free:
            need = self._estimate(src, plan, engine, sample=True)
            if need > free * ROOM_MARGIN:
                stats.estimated_bytes = need
                e = NoSpaceError(f"needs about {need / 1e6:.0f} MB, only {free / 1e6:.0f} MB free")
                e.estimated = True
                raise e
        stats.estimated_bytes = need

    def _check_header_room(self, src, target):
        """Every split part carries the whole header and both bitmaps (sized by max_pfn,
        not by the data): a part whose target cannot hold even those is refused before
        anything is written.  A lower bound, so it never refuses a part that would fit."""
        free = target.free_bytes()
        layout = kdump.KdumpLayout(block_size=src.page_size, max_mapnr=src.max_pfn, note_size=len(src.note_bytes))
        if free is not None and layout.desc_table > free:
            raise NoSpaceError(f"{target.spec}: its header and bitmaps alone need {layout.desc_table / 1e6:.0f} MB, "
                               f"only {free / 1e6:.0f} MB free")

    def _estimate(self, src, plan, engine, *, sample):
        """Bytes the dump will take: exact for ELF; for kdump at most the raw pages, or
        with ``sample`` the stored size measured on kept pages spread over the dump."""
        if self.format == "elf":
            return elfdump.ElfDumpWriter.size_of(src, plan.segments, self._elfclass(src))
        layout = kdump.KdumpLayout(block_size=src.page_size, max_mapnr=src.max_pfn, note_size=len(src.note_bytes))
        ratio = self._sample_ratio(src, plan, engine) if sample else 1.0
        zero_page = src.page_size if plan.level & DumpLevel.ZERO else 0
        return (layout.desc_table + kdump.DESC.size * plan.num_dumpable + zero_page
                + int(plan.num_dumpable * src.page_size * ratio))

    def _sample_ratio(self, src, plan, engine, samples=1024):
        """Stored/raw bytes of every ``step``-th kept page, through the copy engine."""
        if plan.num_dumpable == 0:
            return 1.0
        step = max(1, plan.num_dumpable // samples)
        totals = [0, 0]    # raw, stored
        flag = codecs.by_name(self.compress).flag

        def windows():
            seen = 0
            for c0, c1 in _cycles(src.max_pfn):
                if plan.keep.is_empty(c0):
                    continue
                pick = bytearray(-(-(c1 - c0) // 8))
                for a, b in _core.bitmap_runs(plan.keep.get(c0), c1 - c0):
                    for i in range(a + (-seen) % step, b, step):
                        pick[i >> 3] |= 1 << (i & 7)
                    seen += b - a
                yield from engine.windows(pick, c0, c1 - c0)

        def measure(job):
            if job.n_pages:
                totals[1] += job.kdump_descriptors(0, 0, flag)[1]
                totals[0] += (job.n_pages - job.unreadable_pages) * src.page_size

        engine.run(windows(), measure, zero_check=bool(plan.level & DumpLevel.ZERO))
        return min(1.0, totals[1] / totals[0]) if totals[0] else 1.0

    # -- pass 2: write ------------------------------------------------------------
    def _write(self, src, plan, engine, target, stats, *, retry=False):
        if retry:
            self._drop_leftover(target)
        sink = target.open(host=self.host, when=self.when, flat=self.flat, force=self.force,
                           direct=self.direct_io)
        self._leftovers[target.spec] = _own_file(sink)
        stats.dump_path = target.dump_path
        self.writer = None
        self._plan_in_use = plan
        try:
            if self.format == "kdump":
                self.writer = self._kdump_writer(src, sink, plan.level)
                self._copy_kdump(src, plan, engine, self.writer, stats)
            else:
                self._copy_elf(src, plan, engine, sink, stats)
            stats.bytes_written = self._complete(sink)
        except BaseException as e:
            self._abandon(sink, stats, e)

    def _complete(self, sink):
        """Page data on disk, then the header that says complete, then the final name."""
        sink.barrier()
        self.writer.finish()
        sink.commit()
        return sink.bytes_written

    def _drop_leftover(self, target):
        """A retry at another level replaces the incomplete file this run left, and
        nothing else (never a file that was there before: that needs -f)."""
        path, ino = self._leftovers.pop(target.spec, None) or (None, None)
        try:
            if path and os.lstat(path).st_ino == ino:
                os.unlink(path)
        except OSError:
            pass

    def _abandon(self, sink, stats, e):
        stats.incomplete = True
        writer = self.writer
        if writer is not None:
            try:
                self._trust_only_durable(writer, sink.settle())
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

    def _trust_only_durable(self, writer, lost):
        """Pages count as written only if their descriptors and data reached the file:
        ``lost`` are the ranges the sink could not write after all (buffered O_DIRECT
        streams on a full disk)."""
        if not lost:
            return
        if isinstance(writer, elfdump.ElfDumpWriter):
            writer.written_to = min([getattr(writer, "written_to", 0)] + [a for a, _ in lost])
            return
        table_end = writer.layout.desc_table + kdump.DESC.size * self._plan_in_use.num_dumpable
        data_start = writer.pages_off
        # the zero block and the checksum array lie between: an incomplete dump carries no
        # checksums, and an unwritten zero block of the reserved file reads as zeros anyway
        lost = [(a, b) for a, b in lost if not (table_end <= a and b <= data_start)]
        safe = writer.split[0] if writer.split else 0
        for done_to, desc_end, data_end in self._committed:
            if any(a < (data_end if a >= data_start else desc_end) for a, _ in lost):
                break
            safe = done_to
        writer.done_to = safe

    def _kdump_writer(self, src, sink, level, split=None):
        vm = src.vmcoreinfo_note
        return kdump.KdumpWriter(
            sink, page_size=src.page_size, max_mapnr=src.max_pfn, dump_level=level,
            codec=self.compress, notes=src.note_bytes,
            vmcoreinfo_desc_offset=vm.desc_offset if vm else 0, vmcoreinfo_size=len(vm.desc) if vm else 0,
            nr_cpus=src.nr_cpus, utsname=self.utsname,
            crashtime=src.vmcoreinfo.crashtime if src.vmcoreinfo else None,
            phys_base=src.vmcoreinfo.phys_base if src.vmcoreinfo else 0, split=split,
            eraseinfo=self._eraseinfo(src))

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
        writer.write_prologue()        # the header (flagged incomplete) first, then the rest laid out
        writer.sink.reserve(writer.layout.desc_table + kdump.DESC.size * plan.num_dumpable, allocate=True)
        present_runs = src.present_runs()
        for c0, c1 in _cycles(src.max_pfn):
            writer.write_bitmaps(c0, _runs_bitmap(present_runs, c0, c1), plan.keep.get(c0))
        writer.pad_bitmaps()
        writer.sink.barrier()        # header, notes and bitmaps on disk before any page data
        lo, hi = pfn_range or (0, src.max_pfn)
        total = sum(_core.bitmap_count_range(plan.keep.get(c0), max(lo, c0) - c0, min(hi, c1) - c0)
                    for c0, c1 in _cycles(src.max_pfn, lo, hi) if not plan.keep.is_empty(c0))
        writer.start_pages(plan.num_dumpable, own=total)
        self.progress.phase("copying", total)

        def windows():
            for c0, c1 in _cycles(src.max_pfn, lo, hi):
                if not plan.keep.is_empty(c0):
                    yield from engine.windows(plan.keep.get(c0), c0, min(hi, c1) - c0, start=max(lo, c0) - c0)

        self._committed = deque(maxlen=1024)

        def commit(job):
            writer.commit(job)
            self._committed.append((writer.done_to, writer.desc_off, writer.data_off))
            self._tally(stats, job)
            self.progress.update(job.n_pages)

        zeros0, unreadable0 = stats.pages_zero, stats.pages_unreadable
        engine.run(windows(), commit, zero_check=bool(plan.level & DumpLevel.ZERO))
        stats.pages_kept += (writer.pages_written - (stats.pages_zero - zeros0)
                             - (stats.pages_unreadable - unreadable0))
        if plan.level & DumpLevel.ZERO:
            stats.excluded["zero"] = stats.pages_zero

    def _elfclass(self, src):
        return {None: src.elfclass, 32: elfmod.ELFCLASS32, 64: elfmod.ELFCLASS64}[self.elf_class]

    def _copy_elf(self, src, plan, engine, sink, stats):
        elfclass = self._elfclass(src)
        writer = self.writer = elfdump.ElfDumpWriter(sink, src, plan.segments, elfclass=elfclass,
                                                     eraseinfo=self._eraseinfo(src))
        writer.write_prologue()
        sink.reserve(writer.total_size)   # a killed run: readers find zeros under the incomplete flag, not EOF
        sink.barrier()               # header and notes on disk before any page data
        total = sum(e - s for _, s, e in writer.piece_jobs())
        self.progress.phase("copying", total)
        pieces = deque()

        def windows():
            for ph, first, end in writer.piece_jobs():
                for c0, c1 in _cycles(src.max_pfn, first, end):
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
        stats.pages_kept = sum(_core.bitmap_count(plan.reads.get(c0), c1 - c0) for c0, c1 in _cycles(src.max_pfn)
                               if not plan.reads.is_empty(c0))

    # -- after a dump -------------------------------------------------------------
    def _after(self, src, target, stats):
        """Directory targets also get the kernel log, as kdump-utils leaves it."""
        if self.dry_run:
            return
        target.after_dump(src, stats, self.warn, dmesg=self.dmesg)
        path = target.dmesg_path()
        if path is None or not self.dmesg or path == self._log_saved:
            return
        try:
            from ..kernel.dmesg import extract_dmesg
            text = extract_dmesg(src)
        except ImportError:
            return
        except FastdumpError as e:
            self.warn(f"no vmcore-dmesg.txt: {e}")
            return
        try:
            safefile.write_file(path, text.encode(), force=self.force)
        except FastdumpError as e:   # the dump itself is complete: a missing log must not fail it
            self.warn(f"no vmcore-dmesg.txt: {e}")

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
            target = self._bounded(parse_target(path))
            if not isinstance(target, FileTarget):
                raise UsageError(f"--split parts must be files: {path}")
            self._check_header_room(src, target)
            sink = target.open(host=self.host, when=self.when, flat=False, force=self.force,
                               direct=self.direct_io)
            self.writer = None
            self._plan_in_use = plan
            try:
                self.writer = self._kdump_writer(src, sink, level, split=(lo, hi))
                self._copy_kdump(src, plan, engine, self.writer, stats, pfn_range=(lo, hi))
                stats.bytes_written += self._complete(sink)
            except BaseException as e:
                self._abandon(sink, stats, e)
            stats.parts.append({"path": path, "start_pfn": lo, "end_pfn": hi})
        return stats

    def _split_ranges(self, src, plan, nparts):
        """Contiguous [start, end) ranges holding about num_dumpable/N dumpable pages each."""
        counts = []
        for c0, c1 in _cycles(src.max_pfn):
            if plan.keep.is_empty(c0):
                continue
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


def dump(source: PathArg, target: Optional[PathArg] = None, *, level: Union[int, Sequence[int]] = 0,
         compress: str = "none", threads: Optional[int] = None, format: str = "kdump",
         progress: Union[str, Progress] = "quiet", force: bool = False, window_bytes: Optional[int] = None,
         use_mmap: Optional[bool] = None, elf_class: Optional[int] = None, stats_json: Optional[PathArg] = None,
         warn: Optional[Callable[[str], object]] = None, targets: Optional[Sequence[PathArg]] = None,
         flat: bool = False, split: Optional[Sequence[PathArg]] = None, dmesg: bool = True,
         split_block_pfns: int = SPLITBLOCK_PFNS, mem_map: Optional[str] = None, iomem: Optional[PathArg] = None,
         vmcoreinfo_file: Optional[PathArg] = None, direct_io: bool = False, size_limit: Optional[int] = None,
         dry_run: bool = False, erase_config: Optional[PathArg] = None, vmlinux: Optional[PathArg] = None) -> Stats:
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
    ``size_limit`` (makedumpfile -L) bounds the dump's size as a full target would;
    ``dry_run`` does everything but create or write any file.  ``erase_config`` is
    makedumpfile's filter config (``--config``): the data it names is erased in the dump,
    found with the dump's own kallsyms and BTF (``vmlinux``: makedumpfile's ``-x``).
    """
    if not isinstance(progress, Progress):
        progress = choice_arg(progress or "quiet", "progress mode", PROGRESS)
    if warn is not None and not callable(warn):
        raise UsageError("warn must be a callable taking one line of text")
    o = DumpOptions.check(
        source=source, target=target, targets=targets, level=level,
        compress=compress, format=format, threads=threads, window_bytes=window_bytes, use_mmap=use_mmap,
        elf_class=elf_class, force=force, flat=flat, dmesg=dmesg, direct_io=direct_io, split=split,
        split_block_pfns=split_block_pfns, mem_map=mem_map, iomem=iomem, vmcoreinfo_file=vmcoreinfo_file,
        stats_json=stats_json, size_limit=size_limit, dry_run=dry_run, erase_config=erase_config, vmlinux=vmlinux)
    d = Dump(o.source, o.targets, levels=o.levels, compress=o.compress, threads=o.threads, format=o.format,
             progress=progress, force=o.force, window_bytes=o.window_bytes, use_mmap=o.use_mmap,
             elf_class=o.elf_class, warn=warn, flat=o.flat, split_parts=o.split, dmesg=o.dmesg,
             split_block_pfns=o.split_block_pfns, mem_map=o.mem_map, iomem=o.iomem,
             vmcoreinfo_file=o.vmcoreinfo_file, direct_io=o.direct_io, size_limit=o.size_limit,
             dry_run=o.dry_run, erase_config=o.erase_config, vmlinux=o.vmlinux)
    stats = d.run()
    if o.stats_json:
        try:
            safefile.write_file(o.stats_json, json.dumps(stats.to_dict(), indent=1).encode(), force=o.force)
        except FastdumpError as e:   # the dump is saved: statistics must not turn it into a failure
            d.warn(f"statistics not written: {e}")
            stats.warnings.append(f"statistics not written: {e}")
    return stats
