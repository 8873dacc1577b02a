"""The command line: ``fastdump [options] SOURCE TARGET`` and a few subcommands.

makedumpfile's spellings work for what fastdump does (``-d``, ``-c``, ``-z``,
``-E``, ``-f``, ``--num-threads``, ``--message-level``), so an existing kdump
configuration can call fastdump unchanged.  Every failure ends with one line on
stderr and a non-zero status, never a traceback (set FASTDUMP_DEBUG=1 for one).
"""

import argparse
import os
import signal
import sys

from . import __version__
from .errors import EXIT_ERROR, EXIT_PARTIAL, EXIT_USAGE, FastdumpError, UsageError

SUBCOMMANDS = {"info": "fastdump.info", "demo": "fastdump.demo", "initrd": "fastdump.initrd",
               "estimate": "fastdump.kernel.estimate_cli", "verify": "fastdump.verify"}

# makedumpfile --message-level bits
MSG_PROGRESS, MSG_COMMON, MSG_ERROR = 1, 2, 4


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _size(text):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("ib")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}") from None


def _levels(text):
    try:
        levels = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad dump level {text!r}") from None
    for lv in levels:
        if not 0 <= lv <= 31:
            raise argparse.ArgumentTypeError(f"dump level {lv} is out of range 0..31")
    return levels


def build_parser():
    p = _Parser(prog="fastdump", description="Copy a Linux crash dump: filter, compress, write "
                "kdump-compressed or ELF. Subcommands: info, demo, initrd, estimate, verify "
                "(`fastdump SUBCOMMAND --help`).")
    p.add_argument("source", help="ELF vmcore to read (e.g. /proc/vmcore)")
    p.add_argument("target", help="dump file to write")
    p.add_argument("-d", "--dump-level", type=_levels, default=[0], metavar="LEVEL",
                   help="makedumpfile dump level 0..31: 1 zero, 2 cache, 4 private cache, 8 user, 16 free")
    comp = p.add_mutually_exclusive_group()
    comp.add_argument("--compress", choices=["zstd", "lz4", "zlib", "none"], help="page compression")
    comp.add_argument("-c", dest="compress", action="store_const", const="zlib", help="zlib (as makedumpfile -c)")
    comp.add_argument("-z", dest="compress", action="store_const", const="zstd", help="zstd (as makedumpfile -z)")
    comp.add_argument("-l", dest="compress", action="store_const", const="zstd",
                      help="makedumpfile's LZO; fastdump writes zstd instead (readable by crash and libkdumpfile)")
    comp.add_argument("-p", dest="compress", action="store_const", const="zstd",
                      help="makedumpfile's snappy; fastdump writes zstd instead")
    p.add_argument("-E", dest="format", action="store_const", const="elf", help="write a filtered ELF dump")
    p.add_argument("--format", choices=["kdump", "elf"], help="output format (default kdump)")
    p.add_argument("--elf-class", type=int, choices=[32, 64], help="ELF output class (default: the source's)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing dump")
    p.add_argument("--threads", "--num-threads", dest="threads", type=int, metavar="N",
                   help="compression threads (default: CPUs available)")
    p.add_argument("--window", type=_size, metavar="SIZE", help="read window per job (default 2M)")
    p.add_argument("--mmap", dest="use_mmap", action="store_true", default=None, help="read the source with mmap")
    p.add_argument("--non-mmap", "--no-mmap", dest="use_mmap", action="store_false", help="read with pread")
    p.add_argument("--stats-json", metavar="FILE", help="write statistics as JSON")
    p.add_argument("--message-level", type=int, default=7, metavar="N",
                   help="makedumpfile bitmask: 1 progress, 2 messages, 4 errors (default 7)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    p.add_argument("--progress", choices=["auto", "bar", "lines", "quiet"], default="auto")
    p.add_argument("-v", "--version", action="version", version=f"fastdump {__version__}")
    return p


def _run_dump(argv):
    from .pipeline import dump
    from .progress import Progress

    args = build_parser().parse_args(argv)
    msg = 0 if args.quiet else args.message_level
    progress = Progress(args.progress if msg & MSG_PROGRESS else "quiet")

    def say(text):
        if msg & MSG_COMMON:
            print(f"fastdump: {text}", file=sys.stderr, flush=True)

    if args.dump_level[1:]:
        say(f"dump level list {args.dump_level}: using {args.dump_level[0]}")
    stats = dump(args.source, args.target, level=args.dump_level[0], compress=args.compress or "none",
                 threads=args.threads, format=args.format or "kdump", progress=progress, force=args.force,
                 window_bytes=args.window, use_mmap=args.use_mmap, elf_class=args.elf_class,
                 stats_json=args.stats_json, warn=lambda t: say(f"warning: {t}"))
    rate = stats.bytes_read / stats.seconds / 1e6 if stats.seconds else 0.0
    dropped = sum(stats.excluded.values())
    say(f"wrote {args.target}: {stats.pages_kept} pages kept, {dropped} excluded "
        f"({', '.join(f'{k} {v}' for k, v in sorted(stats.excluded.items())) or 'none'}), "
        f"{stats.bytes_written / 1e6:.1f} MB in {stats.seconds:.2f} s ({rate:.0f} MB/s read)")
    if stats.pages_unreadable:
        print(f"fastdump: error: dump complete but partial: {stats.pages_unreadable} pages were unreadable",
              file=sys.stderr)
        return EXIT_PARTIAL
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _term_as_interrupt)
    quiet_errors = _message_level(argv) & MSG_ERROR == 0
    try:
        if argv and argv[0] in SUBCOMMANDS:
            import importlib
            return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:]) or 0
        return _run_dump(argv)
    except FastdumpError as e:
        if not quiet_errors:
            print(f"fastdump: error: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("fastdump: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        if os.environ.get("FASTDUMP_DEBUG"):
            raise
        print(f"fastdump: error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # a bug: still one line, with a hint how to see more
        if os.environ.get("FASTDUMP_DEBUG"):
            raise
        print(f"fastdump: internal error: {type(e).__name__}: {e} (FASTDUMP_DEBUG=1 shows a traceback)",
              file=sys.stderr)
        return EXIT_ERROR


def _term_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def _message_level(argv):
    for i, a in enumerate(argv):
        if a == "--message-level" and i + 1 < len(argv):
            try:
                return int(argv[i + 1])
            except ValueError:
                return 7
        if a.startswith("--message-level="):
            try:
                return int(a.split("=", 1)[1])
            except ValueError:
                return 7
    return 7


__all__ = ["main", "build_parser", "EXIT_USAGE"]
