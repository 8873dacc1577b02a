"""One dump from source to target: cycles -> judgement -> copy engine -> format.

Two passes.  The first (``plan.py``) decides, cycle by cycle, which pages to keep
(from struct pages, never from page contents; for ELF also which pages are zero)
and keeps the bitmaps: in memory up to a cap, beyond it in a temporary file.  Only
then is a target opened: its room is checked against an estimate (``room.py``),
and the second pass (``kdump_copy.py``, ``elf_copy.py``) reads, compresses and
writes the kept pages.  A target that fails is left marked incomplete and the
next one (or the next dump level, for ``-d 11,31``) is tried with the same first
pass.  This module only drives that: targets, levels and the last resort.
"""

from __future__ import annotations

import functools
import os
import time

from .. import safefile
from ..errors import FastdumpError, Interrupted, NoSpaceError, TargetError, UsageError
from ..formats import elf as elfmod
from ..kernel.levels import MAX_LEVEL
from ..kernel.utsname import read_utsname
from ..options import PROGRESS, DumpOptions, choice_arg
from ..sources.vmcore import ElfSource
from ..targets.kinds import FileTarget, host_name, parse_target
from .elf_copy import ElfCopy
from .engine import CopyEngine
from .kdump_copy import KdumpCopy
from .plan import Plan, elf_class, make_plan, split_ranges
from .progress import Progress
from .room import check_header_room, check_room
from .stats import Stats

TYPE_CHECKING = False
if TYPE_CHECKING:       # typing is not imported at run time: about 5 ms of every start
    from typing import Callable, Optional, Sequence, Union

    from ..options import PathArg

__all__ = ["Dump", "Stats", "dump", "run"]

SPLITBLOCK_PFNS = 1 << 18     # split parts start on 1 GiB boundaries (crash needs multiples of 64)


class _Run:
    """What the attempts of one run share, made once the source is open: ``elfclass``, the
    ELF class to write (None for a kdump dump); ``eraseinfo``, what the dump records as
    erased (its source's record, then this run's); ``erased``, this run's
    erase.EraseList (--config) or None."""

    log_saved = None          # the kernel log saved when no target had room
    classify_seconds = 0.0    # seconds in pass 1 (every level planned)

    def __init__(self, *, src, engine, utsname, host, when, elfclass, eraseinfo, erased=None, opened=0.0):
        self.src, self.engine, self.utsname, self.host, self.when = src, engine, utsname, host, when
        self.elfclass, self.eraseinfo, self.erased = elfclass, eraseinfo, erased
        self.opened = opened      # seconds to open the source (notes, VMCOREINFO, erase)
        self.plans = {}           # dump level -> Plan (pass 1 is done once per level)
        self.leftovers = {}       # target spec -> (path, inode) of the incomplete file left


def _own_file(sink):
    """(temp path, inode) of the file a sink created, or None for streams."""
    fd, path = getattr(sink, "fd", -1), getattr(sink, "temp_path", None)
    return (path, os.fstat(fd).st_ino) if path and fd >= 0 else None


def _write_file(sink, stats, start):
    """``start()`` makes the format's copy (and so its writer); then its pages, the header
    that says complete, and the final name.  Returns the bytes written; a failure leaves
    the file flagged incomplete (``_abandon``)."""
    copy = None
    try:
        copy = start()
        copy.run(stats)
        sink.barrier()                # page data on disk before the header that says complete
        copy.writer.finish()
        sink.commit()
        return sink.bytes_written
    except BaseException as e:
        _abandon(sink, copy, stats, e)


def _abandon(sink, copy, stats, e):
    """Finish what was written as an incomplete dump (or remove a file nothing was
    written to) and raise ``e`` saying where it is."""
    stats.incomplete = True
    if copy is not None:
        try:
            copy.trust_only_durable(sink.settle())
            copy.finish_incomplete()
        except FastdumpError:
            pass
    path = sink.abandon()
    if copy is None and getattr(sink, "temp_path", None) and os.path.exists(sink.temp_path) \
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


def _not_a_vmcore(path, e):
    """Raise ``e``, or, when ``path`` is a dump file rather than a vmcore, one line saying so
    and what reads it (``e`` only said "not an ELF file", without the file's name)."""
    from ..sources.opener import NOT_A_VMCORE, sniff
    try:
        kind = sniff(path)
    except FastdumpError:
        kind = None
    if kind in NOT_A_VMCORE:
        raise type(e)(f"{path} is {NOT_A_VMCORE[kind]}, not a vmcore: `fastdump convert` rewrites a dump"
                      + (" (after `fastdump -R` rebuilds the stream)" if kind == "flattened" else "")) from None
    if str(path) not in str(e):
        raise type(e)(f"{path}: {e}") from None
    raise e


class Dump:
    """One dump of one source to the first target (and dump level) that takes it:
    drives the targets, the level fallbacks and the last-resort saves; the plan,
    the room check and the copy loops are their own modules."""

    def __init__(self, options: DumpOptions, *, progress: Union[str, Progress, None] = "auto",
                 warn: Optional[Callable[[str], object]] = None):
        """``options`` come from ``DumpOptions.check``."""
        self.o = options
        self.targets = [self._bounded(t) for t in options.targets]
        self.progress = progress if isinstance(progress, Progress) else Progress(progress or "quiet")
        self.warnings = []
        self._warn_cb = warn

    def _bounded(self, target):
        """Every target of this run takes ``-L`` and ``--dry-run`` (the target enforces them)."""
        target.size_limit, target.dry_run = self.o.size_limit, self.o.dry_run
        return target

    def warn(self, text):
        self.warnings.append(text)
        if self._warn_cb:
            self._warn_cb(text)
        else:
            self.progress.message(f"warning: {text}")

    # -- the whole run ----------------------------------------------------------
    def run(self) -> Stats:
        t0 = time.monotonic()
        r = None
        try:
            with self._open_source() as src:
                if src.vmcoreinfo is None:
                    self.warn("no VMCOREINFO note: only zero pages can be filtered")
                for text in getattr(src, "warnings", ()):
                    self.warn(text)
                o = self.o
                engine = CopyEngine(src, codec=o.compress, threads=o.threads,
                                    window_bytes=o.window_bytes, use_mmap=o.use_mmap)
                eraseinfo, erased = self._set_erase(src, engine)
                utsname = read_utsname(src, erased)
                host = host_name(utsname, read_utsname(src) if erased else None)
                r = _Run(src=src, engine=engine, utsname=utsname, host=host, when=time.localtime(),
                         elfclass=elf_class(src, o.elf_class) if o.format == "elf" else None,
                         eraseinfo=eraseinfo, erased=erased, opened=time.monotonic() - t0)
                stats = self._run_split(r) if o.split else self._run_targets(r)
        finally:
            for plan in (r.plans.values() if r else ()):
                plan.close()
            self.progress.close()
        if stats.pages_unreadable:
            first = ", ".join(f"{p:#x}" for p in stats.unreadable_pfns[:5])
            self.warn(f"{stats.pages_unreadable} source pages could not be read and are missing "
                      f"from the dump (first: {first})")
        stats.seconds = round(time.monotonic() - t0, 3)
        stats.phase_seconds = {"open": round(r.opened, 3), "classify": round(r.classify_seconds, 3),
                               "write": round(max(0.0, stats.seconds - r.opened - r.classify_seconds), 3)}
        stats.warnings = list(self.warnings)
        return stats

    def _set_erase(self, src, engine):
        """makedumpfile's --config: the named bytes, found before any page is read, are
        overwritten in every page the engine copies (estimates and plans included).
        Returns what the dump records as erased (what its source recorded, then this run's)
        and this run's EraseList (None without --config)."""
        from ..kernel import erase
        if not self.o.erase_config:
            return erase.recorded(src), None
        found = erase.resolve(erase.load(self.o.erase_config), src.kernel, vmlinux=self.o.vmlinux)
        engine.core_source.set_erase(found.table)
        self.progress.message(f"erasing {found.nbytes} bytes in {len(found)} pieces ({self.o.erase_config})")
        return erase.recorded(src) + found.eraseinfo, found

    def _open_source(self):
        """An ELF vmcore, or raw memory (/dev/oldmem) when a memory map is given."""
        o = self.o
        if o.mem_map or o.iomem or os.path.realpath(o.source) == "/dev/oldmem":
            from ..sources.rawmem import open_raw
            return open_raw(o.source, mem_map=o.mem_map, iomem=o.iomem, vmcoreinfo_file=o.vmcoreinfo_file)
        try:
            src = ElfSource(o.source)
        except FastdumpError as e:
            _not_a_vmcore(o.source, e)
        if o.vmcoreinfo_file:   # makedumpfile -i: VMCOREINFO from a file for a vmcore without one
            from ..sources.rawmem import load_vmcoreinfo_file
            from ..kernel.vmcoreinfo import VmcoreInfo
            text = load_vmcoreinfo_file(o.vmcoreinfo_file)
            if src.vmcoreinfo is None:
                note = elfmod.build_note(b"VMCOREINFO", 0, text)
                src.note_bytes += note
                src.notes = elfmod.parse_notes(src.note_bytes)
                src.vmcoreinfo_note = src.notes[-1]
            src.vmcoreinfo = VmcoreInfo(text)
        return src

    def _new_stats(self, r, target, level):
        o = self.o
        return Stats(source=o.source, target=target.spec if target else "", format=o.format,
                     compress=o.compress, dump_level=level, threads=r.engine.threads,
                     erased_bytes=r.erased.nbytes if r.erased else 0, erased_pieces=len(r.erased or ()))

    def _plan(self, r, level) -> Plan:
        """Pass 1 at ``level``, once per run."""
        if level not in r.plans:
            spill = next((d for d in (t.local_dir() for t in self.targets) if d), None)
            t = time.monotonic()
            r.plans[level] = make_plan(r.src, level, r.engine, elfclass=r.elfclass, spill_dir=spill,
                                       progress=self.progress, warn=self.warn)
            r.classify_seconds += time.monotonic() - t
        return r.plans[level]

    def _run_targets(self, r):
        """The user's targets and levels in order; when none has room, ``_save_something``."""
        levels = self.o.levels
        failures, no_room = [], []
        last_error = None
        for ti, target in enumerate(self.targets):
            for li, level in enumerate(levels):
                try:
                    return self._attempt(r, target, level, failures, retry=li > 0)
                except NoSpaceError as e:
                    last_error = e
                    if li + 1 < len(levels):
                        self.warn(f"{e}; retrying with dump level {levels[li + 1]}")
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
            return self._save_something(r, no_room, failures)
        if len(self.targets) == 1:
            raise last_error
        raise TargetError("no target could take the dump: " + "; ".join(failures))

    def _attempt(self, r, target, level, failures, *, retry=False, check=True):
        stats = self._new_stats(r, target, level)
        stats.failed_targets = list(failures)
        plan = self._plan(r, level)
        plan.apply_to(stats)
        if check:
            check_room(r.src, plan, r.engine, target, stats, codec=self.o.compress, elfclass=r.elfclass)
        self._write(r, plan, target, stats, retry=retry)
        self._after(r, target, stats)
        return stats

    def _save_something(self, r, no_room, failures):
        """No target has room for the requested level(s): never save nothing.  The
        kernel log first (small, and often all that is needed), then the highest
        dump level (31, unless the user's -d list said which levels to fall back
        to), and if that does not fit either, what fits: the dump written anyway,
        on the target with the most room, left flagged incomplete (exit non-zero)."""
        levels = self.o.levels
        self._save_kernel_log(r, [t for t, _, _ in no_room])
        filled = {t.spec for t, _, e in no_room if not getattr(e, "estimated", False)}
        level = levels[-1] if len(levels) > 1 else MAX_LEVEL
        if level not in levels:
            for target, _, e in no_room:
                self.warn(f"{target.spec}: no room for dump level {levels[-1]} ({e}); "
                          f"trying dump level {level}")
                try:
                    return self._attempt(r, target, level, failures, retry=True)
                except NoSpaceError as e2:
                    failures.append(f"{target.spec} at dump level {level}: {e2}")
                    if not getattr(e2, "estimated", False):
                        filled.add(target.spec)
                except TargetError as e2:
                    failures.append(f"{target.spec}: {e2}")
                except FastdumpError as e2:   # e.g. this dump cannot be classified: no level 31
                    self.warn(f"dump level {level} is not possible here ({e2}); "
                              f"keeping dump level {levels[-1]}")
                    level = levels[-1]
                    break
        # a target a write filled up already holds what fitted, flagged incomplete
        refused = [t for t, _, _ in no_room if t.spec not in filled]
        if filled or not refused:
            raise NoSpaceError("no target has room for the dump: " + "; ".join(failures))
        target = max(refused, key=lambda t: t.free_bytes() or 0)
        if r.elfclass is None:      # without its whole header and bitmaps no reader opens it
            try:
                check_header_room(r.src, target)
            except NoSpaceError as e:
                raise NoSpaceError(f"no target has room for the dump: {e}") from None
        self.warn(f"no target has room for the dump; writing what fits to {target.spec} "
                  f"at dump level {level} (it will be flagged incomplete)")
        return self._attempt(r, target, level, failures, retry=True, check=False)

    def _save_kernel_log(self, r, targets):
        """The kernel log beside the first local target that takes it."""
        try:
            from ..kernel.dmesg import extract_dmesg
            text = extract_dmesg(r.src, erased=r.erased).encode()
        except (ImportError, FastdumpError) as e:
            self.warn(f"kernel log not saved: {e}")
            return
        for target in targets:
            path = target.side_path("dmesg.txt", host=r.host, when=r.when, force=self.o.force)
            if path is None:
                continue
            try:
                safefile.write_file(path, text, force=self.o.force)
            except FastdumpError as e:
                self.warn(f"kernel log not saved in {target.spec}: {e}")
                continue
            self.warn(f"no room for the dump: kernel log saved in {path}")
            r.log_saved = path
            return

    # -- pass 2: write ------------------------------------------------------------
    def _write(self, r, plan, target, stats, *, retry=False):
        o = self.o
        if retry:
            self._drop_leftover(r, target)
        sink = target.open(host=r.host, when=r.when, flat=o.flat, force=o.force, direct=o.direct_io)
        r.leftovers[target.spec] = _own_file(sink)
        stats.dump_path = target.dump_path
        stats.bytes_written = _write_file(sink, stats, functools.partial(self._copy, r, plan, sink))

    def _copy(self, r, plan, sink, split=None):
        """The copy loop of this run's format, for one file."""
        if r.elfclass is not None:
            return ElfCopy(r.src, plan, r.engine, sink, elfclass=r.elfclass, eraseinfo=r.eraseinfo,
                           progress=self.progress)
        return KdumpCopy(r.src, plan, r.engine, sink, codec=self.o.compress, utsname=r.utsname,
                         eraseinfo=r.eraseinfo, progress=self.progress, split=split)

    @staticmethod
    def _drop_leftover(r, target):
        """A retry at another level replaces the incomplete file this run left, and
        nothing else (never a file that was there before: that needs -f)."""
        path, ino = r.leftovers.pop(target.spec, None) or (None, None)
        try:
            if path and os.lstat(path).st_ino == ino:
                os.unlink(path)
        except OSError:
            pass

    # -- after a dump -------------------------------------------------------------
    def _after(self, r, target, stats):
        """Directory targets also get the kernel log, as kdump-utils leaves it."""
        o = self.o
        if o.dry_run:
            return
        target.after_dump(r.src, stats, self.warn, dmesg=o.dmesg, erased=r.erased)
        path = target.dmesg_path()
        if path is None or not o.dmesg or path == r.log_saved:
            return
        try:
            from ..kernel.dmesg import extract_dmesg
            text = extract_dmesg(r.src, erased=r.erased)
        except ImportError:
            return
        except FastdumpError as e:
            self.warn(f"no vmcore-dmesg.txt: {e}")
            return
        try:
            safefile.write_file(path, text.encode(), force=o.force)
        except FastdumpError as e:   # the dump itself is complete: a missing log must not fail it
            self.warn(f"no vmcore-dmesg.txt: {e}")

    # -- split dumps ----------------------------------------------------------------
    def _run_split(self, r):
        """N kdump files, each a pfn range, with identical headers (crash and makedumpfile
        --reassemble rules); parts start on splitblock boundaries."""
        o = self.o
        level = o.levels[0]
        plan = self._plan(r, level)
        stats = self._new_stats(r, None, level)
        stats.target = " ".join(o.split)
        plan.apply_to(stats)
        targets = [self._bounded(parse_target(path)) for path in o.split]
        for path, target in zip(o.split, targets):   # every name checked before any part is written
            if not isinstance(target, FileTarget):
                raise UsageError(f"--split parts must be files: {path}")
            target.check_free(o.force)
        for path, target, (lo, hi) in zip(o.split, targets,
                                          split_ranges(r.src, plan, len(o.split), o.split_block_pfns)):
            check_header_room(r.src, target)
            sink = target.open(host=r.host, when=r.when, flat=False, force=o.force, direct=o.direct_io)
            stats.bytes_written += _write_file(sink, stats, functools.partial(self._copy, r, plan, sink,
                                                                               split=(lo, hi)))
            stats.parts.append({"path": path, "start_pfn": lo, "end_pfn": hi})
        return stats


def run(options: DumpOptions, *, progress: Union[str, Progress] = "quiet",
        warn: Optional[Callable[[str], object]] = None) -> Stats:
    """One dump of checked ``options``; the statistics file too, when asked for."""
    d = Dump(options, progress=progress, warn=warn)
    stats = d.run()
    if options.stats_json and not options.dry_run:   # --dry-run creates no file at all
        try:
            import json
            safefile.write_file(options.stats_json, json.dumps(stats.to_dict(), indent=1).encode(),
                                force=options.force)
        except FastdumpError as e:   # the dump is saved: statistics must not turn it into a failure
            d.warn(f"statistics not written: {e}")
            stats.warnings.append(f"statistics not written: {e}")
    return stats


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
    options = dict(locals())   # the keywords above are DumpOptions.check's, by the same names
    progress, warn = options.pop("progress"), options.pop("warn")
    if not isinstance(progress, Progress):
        progress = choice_arg(progress or "quiet", "progress mode", PROGRESS)
    if warn is not None and not callable(warn):
        raise UsageError("warn must be a callable taking one line of text")
    return run(DumpOptions.check(**options), progress=progress, warn=warn)
