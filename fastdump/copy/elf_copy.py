"""Pass 2 for filtered ELF files: the laid-out segments' pieces, read and written in place."""

from collections import deque

from .. import _core
from ..formats import elfdump
from .plan import cycles


class ElfCopy:
    """Copies ``plan``'s non-zero kept pages of ``src`` into ``sink`` as ``elfclass`` ELF."""

    def __init__(self, src, plan, engine, sink, *, elfclass, progress, eraseinfo=b""):
        self.src, self.plan, self.engine, self.progress = src, plan, engine, progress
        self.writer = elfdump.ElfDumpWriter(sink, src, plan.segments, elfclass=elfclass, eraseinfo=eraseinfo)

    def run(self, stats):
        src, plan, engine, writer, sink = self.src, self.plan, self.engine, self.writer, self.writer.sink
        writer.write_prologue()
        sink.reserve(writer.total_size)   # a killed run: readers find zeros under the incomplete flag, not EOF
        sink.barrier()               # header and notes on disk before any page data
        total = sum(e - s for _, s, e in writer.piece_jobs())
        self.progress.phase("copying", total)
        pieces = deque()

        def windows():
            for ph, first, end in writer.piece_jobs():
                for c0, c1 in cycles(src.max_pfn, first, end):
                    lo, hi = max(first, c0), min(end, c1)
                    if lo < hi:
                        for w in engine.windows(plan.reads.get(c0), c0, hi - c0, start=lo - c0, dense=True):
                            pieces.append(ph)
                            yield w

        def commit(job):
            writer.commit_window(pieces.popleft(), job)
            stats.tally(job, zeros=False)
            self.progress.update(job.n_pages)

        engine.run(windows(), commit, dense=True)
        stats.pages_kept = sum(_core.bitmap_count(plan.reads.get(c0), c1 - c0) for c0, c1 in cycles(src.max_pfn)
                               if not plan.reads.is_empty(c0))

    def trust_only_durable(self, lost):
        """Nothing at or past the first lost byte counts as written."""
        if lost:
            self.writer.written_to = min([getattr(self.writer, "written_to", 0)] + [a for a, _ in lost])

    def finish_incomplete(self):
        self.writer.finish(incomplete=True)
