"""``fastdump convert IN OUT``: rewrite any readable dump at another level, format or compressor.

ELF input goes straight through the pipeline.  A kdump-compressed (or
flattened) input is first unpacked into a sparse temporary ELF vmcore beside the
output: one PT_LOAD per run of dumped pages, ``p_memsz`` reaching over the pages
the input had excluded, so memory that existed stays described.  Then the usual
pipeline judges and writes it, so a higher dump level, another compressor (for
instance fastdump's lz4 to zstd) or ELF output all work the same way.  Offline
work, so pages are decoded in Python.  An input flagged incomplete (its writer did not
finish it) gives an output flagged incomplete, after a warning with the number of pages
it never got where its headers tell it, and status 3; the input's record of erased data
(eraseinfo, ``--config``) stays in it (the writers keep it in unfinished dumps too).
"""

import functools
import os
import re
import sys

from .. import safefile
from ..copy.pipeline import SPLITBLOCK_PFNS, Dump
from ..copy.progress import Progress
from ..errors import EXIT_PARTIAL, FastdumpError, FormatError, UsageError
from ..formats import codecs, elf
from ..formats.flat import rearrange
from ..formats.elfdump import notes_recording
from ..kernel.erase import recorded
from ..options import PROGRESS, DumpOptions, choice_arg, path_arg
from ..sources.opener import open_dump, sniff
from ..sources.vmcore import fold_extents, pfn_runs
from .cli import _levels
from .parsing import Parser

DIRECT_MAP = 0xFFFF888000000000
#: program headers kept free for cutting unreadable pages out of the PT_LOADs (and marking
#: them): the header is laid out before the pages are read
SPARE_PHDRS = 4096


def _cut(pieces, lost, ps):
    """The PT_LOAD pieces ``(start, stored, described, file offset)`` without the pfns in
    ``lost`` (sorted): each is left out of every piece, so the memory reads as missing."""
    out, j = [], 0
    for start, stored, described, off in pieces:
        while j < len(lost) and lost[j] < start:
            j += 1
        a = start
        while j < len(lost) and lost[j] < stored:
            p = lost[j]
            if p > a:
                out.append((a, p, p, off + (a - start) * ps))
            a = p + 1
            j += 1
        if a < described:
            out.append((a, max(a, stored), described, off + (a - start) * ps))
    return out


def _runs(pfns):
    runs = []
    for p in pfns:
        if runs and runs[-1][1] == p:
            runs[-1][1] = p + 1
        else:
            runs.append([p, p + 1])
    return runs


def kdump_to_elf(reader, path):
    """Unpack an opened kdump-compressed dump into a sparse ELF vmcore at ``path``; returns
    how many dumped pages could not be read.  Those are left out of every PT_LOAD and
    marked PT_FASTDUMP_UNREADABLE, as a dump with unreadable source pages has them: the
    memory reads as missing, never as zeros.  Pages whose descriptors lie past the end
    of the file stay described but not stored (as excluded), and are counted too."""
    from .. import _core
    ps = reader.page_size
    present = reader.bitmap1()
    nbits = reader.max_mapnr
    pieces = []   # (start_pfn, stored_end_pfn, described_end_pfn)
    dumped_runs, j = list(reader.runs_in_file()), 0
    for a, b in _core.bitmap_runs(present, nbits):
        # both run lists are sorted: one merge, never present runs x dumped runs
        while j < len(dumped_runs) and dumped_runs[j][1] <= a:
            j += 1
        inner, k = [], j
        while k < len(dumped_runs) and dumped_runs[k][0] < b:
            inner.append((max(a, dumped_runs[k][0]), min(b, dumped_runs[k][1])))
            k += 1
        if not inner:
            pieces.append((a, a, b))
            continue
        if inner[0][0] > a:
            pieces.append((a, a, inner[0][0]))
        for i, (x, y) in enumerate(inner):
            pieces.append((x, y, inner[i + 1][0] if i + 1 < len(inner) else b))
    past_end = sum(b - a for a, b in reader.dumped_runs()) - sum(b - a for a, b in dumped_runs)
    erased = recorded(reader)             # carried on as the ELF note, so the output records it too
    notes = notes_recording(reader, erased)
    room = 1 + len(pieces) + SPARE_PHDRS
    hdr = elf.header_size(elf.ELFCLASS64, room)
    offset = -(-(hdr + len(notes)) // ps) * ps
    placed = []
    for start, stored, described in pieces:
        placed.append((start, stored, described, offset))
        offset += (stored - start) * ps
    lost = []
    fd = safefile.create(path)
    try:
        os.ftruncate(fd, offset)
        os.pwrite(fd, notes, hdr)
        zero = bytes(ps)
        for start, stored, _, off in placed:
            for pfn in range(start, stored):
                try:
                    page = reader.read_pfn(pfn)
                except FormatError:
                    lost.append(pfn)      # undecodable, or never written: not zeros
                    continue
                if page != zero:
                    os.pwrite(fd, page, off + (pfn - start) * ps)
        loads = _cut(placed, lost, ps)
        marks = _runs(lost)
        if 1 + len(loads) + len(marks) > room:
            raise FormatError(f"{len(lost)} pages of the input cannot be read, in too many places "
                              f"to describe: nothing converted")
        phdrs = [elf.Phdr(elf.PT_NOTE, 0, hdr, 0, 0, len(notes), len(notes), 0)]
        phdrs += [elf.Phdr(elf.PT_LOAD, 7, off if stored > start else 0, DIRECT_MAP + start * ps, start * ps,
                           (stored - start) * ps, (described - start) * ps, 0)
                  for start, stored, described, off in loads]
        phdrs += [elf.Phdr(elf.PT_FASTDUMP_UNREADABLE, 0, 0, DIRECT_MAP + a * ps, a * ps, 0, 0, (b - a) * ps)
                  for a, b in marks]
        os.pwrite(fd, elf.build_header(elf.ELFCLASS64, elf.EM_X86_64, phdrs), 0)
    finally:
        os.close(fd)
    return len(lost) + max(0, past_end)


def _kdump_never_got(reader):
    """How many pages a kdump dump flagged incomplete planned to hold and no longer
    claims, or None when that cannot be told (no page data arrived).  Its writer, or
    the rebuild of a stream cut short (``salvage``), took the pages never written out
    of the 2nd bitmap; the descriptor table keeps their slots, between the descriptors
    the bitmap counts and the first page data (``data_gap``; pages the source could not
    read lie there too, and are as missing)."""
    first = None
    for descs in reader.descriptor_chunks():      # (as far as the file holds the table)
        written = [off for off in descs.offsets if off > 0]
        if written:
            first = min(written) if first is None else min(first, min(written))
    gap = reader.data_gap(first) if first is not None else None
    return gap[0] if gap else None


def _elf_never_got(reader):
    """How many pages an ELF dump flagged incomplete names as stored but does not hold
    (its PT_LOADs' data past the end of the file: a stream cut short keeps the first
    header, which names all of it), or None when its headers do not say: a dump its
    writer finished as incomplete had its PT_LOADs cut back to what it wrote, and the
    pages it never got then look like pages filtered out."""
    if not reader.truncated:
        return None
    named = pfn_runs(fold_extents([(p.paddr, p.paddr + p.filesz, p.offset) for p in reader.loads]),
                     reader.page_size)
    return sum(b - a for a, b in named) - sum(b - a for a, b in reader.stored_runs())


def _unfinished(given, missing, *, exact):
    """The warning about an input flagged incomplete: how many pages it never got."""
    if missing is None or (not exact and not missing):
        return f"{given} is marked incomplete; the pages it never got stay missing (its headers do not say how many)"
    if not exact:
        return (f"{given} is marked incomplete; at least {missing} pages it never got stay missing "
                f"(its headers do not say how many more)")
    return f"{given} is marked incomplete; {missing} pages it never got stay missing"


class _Dump(Dump):
    """The pipeline's Dump; with ``unfinished`` its output is flagged incomplete as the
    writers flag a dump they could not finish (``finish(incomplete=True)``): every page
    the input holds is written, but the pages the input never got are missing from the
    output too, and must not read as pages filtered out of a complete dump."""

    def __init__(self, options, *, unfinished, **kw):
        super().__init__(options, **kw)
        self.unfinished = unfinished

    def _copy(self, r, plan, sink, split=None):
        copy = super()._copy(r, plan, sink, split)
        if self.unfinished:       # the finish() that ends every dump then writes the flagged header
            copy.writer.finish = functools.partial(copy.writer.finish, incomplete=True)
        return copy


def convert(src, target, *, level=0, compress="zstd", format="kdump", force=False, threads=None,
            progress="quiet", warn=None, stats_json=None):
    """Rewrite ``src`` (ELF, kdump-compressed or flattened) into ``target``; returns Stats.
    An input flagged incomplete gives an output flagged incomplete (``Stats.incomplete``),
    after a warning saying how many pages it never got."""
    src, target = path_arg(src, "input dump"), path_arg(target, "target")
    kind = sniff(src)
    if kind not in ("elf", "kdump", "flattened"):
        raise UsageError(f"{src}: not a dump fastdump can convert")
    if not isinstance(progress, Progress):
        progress = choice_arg(progress or "quiet", "progress mode", PROGRESS)
    if warn is not None and not callable(warn):
        raise UsageError("warn must be a callable taking one line of text")
    wanted = dict(target=target, level=level, compress=compress, format=format, force=force, threads=threads,
                  stats_json=stats_json, split_block_pfns=SPLITBLOCK_PFNS)
    # checked against the input itself, not the temporary files made from it: an output
    # must never replace what it is converted from, even with -f
    DumpOptions.check(source=src, **wanted)

    def run(vmcore, unfinished=None, lost=0):
        """The pipeline on ``vmcore``; ``unfinished``: the warning that the input is flagged
        incomplete (the output then is too); ``lost``: pages of a complete input that could
        not be read."""
        options = DumpOptions.check(source=vmcore, **wanted)
        d = _Dump(options, unfinished=unfinished is not None, progress=progress, warn=warn)
        if unfinished:
            d.warn(unfinished)      # in Stats.warnings too
        stats = d.run()
        stats.pages_unreadable += lost     # a complete dump that lost pages since: say so
        stats.incomplete = stats.incomplete or unfinished is not None
        if options.stats_json:      # written here, not by the pipeline: with the counts above
            import json
            try:
                safefile.write_file(options.stats_json, json.dumps(stats.to_dict(), indent=1).encode(),
                                    force=options.force)
            except FastdumpError as e:   # the output is written: statistics must not fail it
                d.warn(f"statistics not written: {e}")
                stats.warnings.append(f"statistics not written: {e}")
        return stats

    given = src     # what messages name: not the temporary files made from it

    def elf_input(path):
        with open_dump(path) as reader:
            return _unfinished(given, _elf_never_got(reader), exact=True) if reader.incomplete else None

    if kind == "elf":
        return run(src, elf_input(src))
    with safefile.private_tempdir(os.path.dirname(os.path.abspath(target)) or ".") as tmp:
        if kind == "flattened":
            flat_out = os.path.join(tmp, "rearranged")
            try:
                with open(src, "rb") as stream:
                    rearrange(stream, flat_out, allow_incomplete=True)   # warned about below, as any input
            except FastdumpError as e:
                raise type(e)(f"{given}: {_without(str(e), tmp)}; nothing converted") from None
            src, kind = flat_out, sniff(flat_out)
        if kind == "elf":
            return run(src, elf_input(src))
        unpacked = os.path.join(tmp, "unpacked")
        with open_dump(src) as reader:
            if reader.split:
                raise UsageError(f"{given} is one part of a split dump: --reassemble it first")
            incomplete = reader.incomplete
            never_got = _kdump_never_got(reader) if incomplete else None
            lost = kdump_to_elf(reader, unpacked)
        if not incomplete:
            return run(unpacked, lost=lost)
        # pages it claims but cannot give (never written, or past the end of the file) and
        # pages it no longer claims: both missing
        return run(unpacked, _unfinished(given, lost + (never_got or 0), exact=never_got is not None))


def _without(text, tmp):
    """A failure to rebuild the flattened input in the temporary directory ``tmp``, told
    without naming it: the directory is gone by the time the message is read."""
    for clause in ("; what arrived is in ", " (what arrived is in "):
        text = text.split(clause + tmp, 1)[0]
    return re.sub(re.escape(os.path.join(tmp, "")) + r"[^\s:,)]*", "its temporary rebuild", text)


def main(argv):
    p = Parser(prog="fastdump convert", description=__doc__.splitlines()[0])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("-d", "--dump-level", type=_levels, default=[0])
    codecs.add_options(p)
    p.set_defaults(compress="zstd")
    p.add_argument("-E", dest="format", action="store_const", const="elf")
    p.add_argument("--format", choices=["kdump", "elf"])
    p.set_defaults(format="kdump")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--threads", type=int)
    p.add_argument("--stats-json")
    args = p.parse_args(argv)
    compress = "none" if args.format == "elf" else args.compress
    stats = convert(args.input, args.output, level=args.dump_level[0], compress=compress, format=args.format,
                    force=args.force, threads=args.threads, stats_json=args.stats_json,
                    warn=lambda t: print(f"fastdump: warning: {t}"))
    print(f"fastdump: converted {args.input} -> {args.output}: {stats.pages_kept} pages kept, "
          f"{stats.bytes_written / 1e6:.1f} MB")
    if stats.incomplete:        # as --reassemble of a part flagged incomplete
        print(f"fastdump: error: converted but partial: {args.input} is flagged incomplete, and the pages "
              f"it never got are missing; {args.output} is flagged incomplete", file=sys.stderr)
        return EXIT_PARTIAL
    if stats.pages_unreadable:
        print(f"fastdump: error: converted but partial: {stats.pages_unreadable} pages of {args.input} "
              f"could not be read and are missing from {args.output}", file=sys.stderr)
        return EXIT_PARTIAL
    return 0

