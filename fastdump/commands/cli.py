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

from .. import __version__
from .std_streams import BestEffort, guard, is_closed, restore
from ..errors import EXIT_ERROR, EXIT_PARTIAL, EXIT_USAGE, FastdumpError, TargetError, UsageError, printable
from ..options import DumpOptions, int_arg, int_type
from ..formats import codecs
from ..kernel.levels import MAX_LEVEL
from . import makedumpfile_options as mdf
from .parsing import Parser

SUBCOMMANDS = {"info": "fastdump.commands.info", "demo": "fastdump.commands.demo", "initrd": "fastdump.deploy.initrd",
               "estimate": "fastdump.commands.estimate", "verify": "fastdump.commands.verify",
               "dmesg": "fastdump.commands.dmesg", "convert": "fastdump.commands.convert", "setup": "fastdump.deploy",
               "list": "fastdump.commands.listing"}

# makedumpfile --message-level bits
MSG_PROGRESS, MSG_COMMON, MSG_ERROR = 1, 2, 4


def _size(text):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("ib")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"bad size {text!r}") from None


#: makedumpfile's --message-level: a bitmask 0..31
_message_level_arg = int_type("message level", 0, 31)


def _levels(text):
    try:
        levels = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad dump level {text!r}") from None
    for lv in levels:
        if not 0 <= lv <= MAX_LEVEL:
            raise argparse.ArgumentTypeError(f"dump level {lv} is out of range 0..{MAX_LEVEL}")
    return levels


def build_parser():
    p = Parser(prog="fastdump", description="Copy a Linux crash dump: filter, compress, write "
                "kdump-compressed, ELF or flattened dumps to files, directories, devices, stdout or ssh. "
                "Other modes: -R (rebuild a flattened stream), --reassemble, --dump-dmesg; subcommands: "
                "info, demo, initrd, estimate, verify, dmesg, convert, setup, list (`fastdump SUBCOMMAND --help`).")
    p.add_argument("source", nargs="?", help="ELF vmcore to read (default /proc/vmcore with --settings)")
    p.add_argument("target", nargs="*", help="where the dump goes: FILE, DIR/, -, raw:DEV, ssh://user@host/dir, "
                   "s3://BUCKET/PREFIX/; "
                   "with --split, one file per part")
    p.add_argument("--target", dest="extra_targets", action="append", default=[], metavar="TARGET",
                   help="another target, tried in order when the previous one fails or has no room")
    p.add_argument("--settings", metavar="FILE", help="fastdump's TOML file with targets and options (see README)")
    p.add_argument("-d", "--dump-level", type=_levels, metavar="LEVEL[,LEVEL...]",
                   help="makedumpfile dump level 0..31: 1 zero, 2 cache, 4 private cache, 8 user, 16 free; "
                        "a list falls back to the next level when the target fills up")
    comp = p.add_mutually_exclusive_group()
    codecs.add_options(comp)
    p.add_argument("-E", dest="format", action="store_const", const="elf", help="write a filtered ELF dump")
    p.add_argument("--format", choices=["kdump", "elf"], help="output format (default kdump)")
    p.add_argument("-F", "--flatten", dest="flat", action="store_true",
                   help="write the flattened format (to stdout when no target is given)")
    p.add_argument("--split", action="store_true", help="write one kdump file per target, each a pfn range")
    p.add_argument("--splitblock-size", type=int, metavar="KB", default=1 << 20,
                   help="--split ranges are made of blocks of this size (default 1 GiB, as makedumpfile)")
    p.add_argument("--elf-class", type=int, choices=[32, 64], help="ELF output class (default: the source's)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing dump")
    p.add_argument("--threads", "--num-threads", dest="threads", type=int, metavar="N",
                   help="compression threads (default and at most: the CPUs this process may run on)")
    p.add_argument("--window", type=_size, metavar="SIZE", help="read window per job (default 2M)")
    p.add_argument("--mmap", dest="use_mmap", action="store_true", default=None, help="read the source with mmap")
    p.add_argument("--non-mmap", "--no-mmap", dest="use_mmap", action="store_false", help="read with pread")
    p.add_argument("--direct-io", action="store_true", help="write the page data with O_DIRECT, so the dump "
                   "does not fill the page cache (capture kernels have little memory)")
    p.add_argument("--ssh-key", metavar="FILE", help="private key for ssh:// targets (mode 0600)")
    p.add_argument("--known-hosts", metavar="FILE", help="known_hosts file for ssh:// targets")
    p.add_argument("--no-dmesg", dest="dmesg", action="store_false", help="no vmcore-dmesg.txt in directory and s3:// targets")
    p.add_argument("--stats-json", metavar="FILE", help="write statistics as JSON")
    p.add_argument("--message-level", type=_message_level_arg, default=None, metavar="N",
                   help="makedumpfile bitmask: 1 progress, 2 messages, 4 errors (default 7)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    p.add_argument("--progress", choices=["auto", "bar", "lines", "quiet"], default="auto")
    p.add_argument("-x", dest="vmlinux", metavar="VMLINUX", help="accepted for makedumpfile compatibility; "
                   "fastdump needs only the VMCOREINFO note (with --config: names the types BTF does not give)")
    p.add_argument("-i", dest="vmcoreinfo_file", metavar="FILE", help="VMCOREINFO text (makedumpfile -i / -g "
                   "output) for raw memory or a vmcore without the note")
    p.add_argument("--mem-map", metavar="RANGES", help="raw memory source (/dev/oldmem copy): physical RAM "
                   "ranges START-END[,...] in hex, END inclusive")
    p.add_argument("--iomem", metavar="FILE", help="raw memory source: the crashed system's /proc/iomem")
    p.add_argument("-v", "--version", action="version", version=f"fastdump {__version__}")
    mdf.add_arguments(p)
    return p


CONFIG_KEYS = {"source": str, "targets": list, "dump_level": (int, list), "compress": str, "format": str,
               "threads": int, "ssh_key": str, "known_hosts": str, "message_level": int, "force": bool,
               "flat": bool, "window": (int, str), "s3_credentials": str}
#: what the elements of a list value must be
CONFIG_ITEMS = {"targets": str, "dump_level": int}


def load_config(path):
    """``--settings``: a small TOML file of defaults; options on the command line win."""
    try:
        import tomllib  # novermin: the fallback follows
    except ImportError:   # Python < 3.11 (RHEL 9's 3.9): its backport, if installed
        try:
            import tomli as tomllib
        except ImportError:
            raise UsageError(f"--settings {path}: reading TOML needs Python 3.11 or the tomli package") from None
    try:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
    except OSError as e:
        raise UsageError(f"config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config {path}: {e}") from None
    for key, value in cfg.items():
        if key not in CONFIG_KEYS:
            raise UsageError(f"config {path}: unknown key {key!r} (known: {', '.join(sorted(CONFIG_KEYS))})")
        if not isinstance(value, CONFIG_KEYS[key]) or (
                isinstance(value, list) and not all(isinstance(v, CONFIG_ITEMS[key]) for v in value)):
            raise UsageError(f"config {path}: {key} has the wrong type")
    if isinstance(cfg.get("dump_level"), int):
        cfg["dump_level"] = [cfg["dump_level"]]
    try:
        if isinstance(cfg.get("window"), str):
            cfg["window"] = _size(cfg["window"])
        if "message_level" in cfg:
            int_arg(cfg["message_level"], "message_level", 0, 31)
    except (argparse.ArgumentTypeError, UsageError) as e:
        raise UsageError(f"config {path}: {e}") from None
    return cfg   # the other values are checked with the command line's (DumpOptions)


def _run_dump(argv):
    from ..copy.pipeline import run
    from ..copy.progress import Progress
    from ..targets.kinds import StdoutTarget, parse_target

    args = build_parser().parse_args(argv)
    mdf.check(args)
    cfg = load_config(args.settings) if args.settings else {}
    level = args.dump_level or cfg.get("dump_level", [0])
    msg = 0 if args.quiet else (args.message_level if args.message_level is not None
                                 else cfg.get("message_level", 7))
    progress = Progress(args.progress if msg & MSG_PROGRESS else "quiet")

    def say(text):
        if msg & MSG_COMMON:
            print(f"fastdump: {text}", file=sys.stderr, flush=True)

    compress = args.compress or cfg.get("compress") or "none"
    source = args.source or cfg.get("source", "/proc/vmcore" if args.settings else None)
    if source is None:
        raise UsageError("no source given (e.g. /proc/vmcore)")
    flat = args.flat or cfg.get("flat", False)
    targets = list(args.target) + list(args.extra_targets)
    no_stdout = is_closed(sys.stdout)
    if not targets:   # no target and stdout a pipe: the stream to it, as makedumpfile (kdump-utils' ssh form)
        targets = list(cfg.get("targets", [])) or (["-"] if flat or not sys.stdout.isatty() else [])
    if not targets:
        raise UsageError("no target given")
    ssh = dict(ssh_key=args.ssh_key or cfg.get("ssh_key"), known_hosts=args.known_hosts or cfg.get("known_hosts"),
               s3_credentials=cfg.get("s3_credentials"))
    split = None
    if args.split:
        split, targets = targets, []
        if len(split) < 2:
            raise UsageError("--split needs at least two part files")
    elif len(args.target) > 1:
        raise UsageError("more than one target: use --target for fallbacks or --split for parts")
    parsed = [parse_target(t, **ssh) for t in targets]
    options = {"targets": parsed, "level": level, "compress": compress,
               "threads": _given(args.threads, cfg.get("threads")),
               "format": args.format or cfg.get("format", "kdump"), "force": args.force or cfg.get("force", False),
               "window_bytes": _given(args.window, cfg.get("window")), "use_mmap": args.use_mmap,
               "elf_class": args.elf_class, "stats_json": args.stats_json, "flat": flat, "split": split,
               "dmesg": args.dmesg, "split_block_pfns": args.splitblock_size // 4, "mem_map": args.mem_map,
               "iomem": args.iomem, "vmcoreinfo_file": args.vmcoreinfo_file, "direct_io": args.direct_io,
               "size_limit": args.size_limit, "dry_run": args.dry_run, "erase_config": args.erase_config,
               "vmlinux": args.vmlinux if args.erase_config else None}
    options = DumpOptions.check(source=source, **options)
    if no_stdout and parsed and all(isinstance(t, StdoutTarget) for t in parsed):
        raise TargetError(f"standard output is closed: nowhere to write the dump"
                          f"{'' if args.target or args.extra_targets else ' (no target given)'}")
    if args.check_params:   # makedumpfile --check-params: checked as for a run, nothing opened
        return 0
    tuning_note = mdf.note(args)
    if tuning_note:
        say(tuning_note)
    to_stdout = any(isinstance(t, StdoutTarget) for t in parsed)
    report_to = sys.stderr if to_stdout else BestEffort(sys.stdout)   # reports do not fail a dump
    if args.vtop:
        mdf.print_vtop(source, args.vtop, report_to)
    stats = run(options, progress=progress, warn=lambda t: say(f"warning: {printable(t)}"))
    if args.show_stats:
        mdf.print_report(stats, report_to)
    rate = stats.bytes_read / stats.seconds / 1e6 if stats.seconds else 0.0
    dropped = sum(stats.excluded.values())
    where = stats.dump_path or stats.target
    say(f"{'dry run, nothing written to' if args.dry_run else 'wrote'} {where}: "
        f"{stats.pages_kept} pages kept, {dropped} excluded "
        f"({', '.join(f'{k} {v}' for k, v in sorted(stats.excluded.items())) or 'none'}), "
        f"{stats.bytes_written / 1e6:.1f} MB in {stats.seconds:.2f} s ({rate:.0f} MB/s read)")
    if stats.pages_unreadable:
        print(f"fastdump: error: dump complete but partial: {stats.pages_unreadable} pages were unreadable",
              file=sys.stderr)
        return EXIT_PARTIAL
    return 0


def _given(option, default):
    """The command line's value, even 0 (checked, not dropped), else the config's."""
    return default if option is None else option


def _mode_parser(flag, description):
    """The parser of a makedumpfile mode (``-R``, ``--reassemble``...): the options every mode takes."""
    p = Parser(prog=f"fastdump {flag}", description=description)
    p.add_argument(flag, action="store_true", required=True)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--message-level", type=_message_level_arg, default=7)
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line (errors are still printed)")
    p.add_argument("--check-params", action="store_true", help="only check the arguments; open nothing")
    return p


def _run_rearrange(argv):
    """``fastdump -R DUMPFILE < stream`` / ``fastdump -R --from-device DEV DUMPFILE``."""
    from ..formats.flat import rearrange

    p = _mode_parser("-R", "Rebuild a dump from a flattened stream (stdin or a device).")
    p.add_argument("--from-device", metavar="DEV", help="read the stream from a raw device or file")
    p.add_argument("target")
    args = p.parse_args(argv)
    if args.check_params:
        return 0
    if args.from_device:
        try:
            stream = open(args.from_device, "rb", buffering=1 << 20)
        except OSError as e:
            raise UsageError(f"cannot open {args.from_device}: {e.strerror}") from None
    elif is_closed(sys.stdin):
        raise FastdumpError("standard input is closed: no stream to rebuild (give it on stdin or "
                            "with --from-device DEV)")
    else:
        stream = sys.stdin.buffer
    with stream:
        n = rearrange(stream, args.target, force=args.force)
    if args.message_level & MSG_COMMON and not args.quiet:
        print(f"fastdump: rebuilt {args.target} from {n} records", file=sys.stderr)
    return 0


def _run_reassemble(argv):
    from ..formats.split import reassemble

    p = _mode_parser("--reassemble", "Join --split parts into one kdump file.")
    p.add_argument("files", nargs="+", help="PART... OUTPUT")
    args = p.parse_args(argv)
    if len(args.files) < 3:
        raise UsageError("--reassemble needs at least two parts and an output file")
    if args.check_params:
        return 0
    *parts, out = args.files
    joined = reassemble(parts, out, force=args.force)
    if joined.lost:
        print(f"fastdump: error: reassembled but partial: {joined.lost} pages of the parts could not be read; "
              f"{out} is flagged incomplete", file=sys.stderr)
        return EXIT_PARTIAL
    if joined.incomplete_parts:
        print(f"fastdump: error: reassembled but partial: {', '.join(joined.incomplete_parts)} "
              f"{'was' if len(joined.incomplete_parts) == 1 else 'were'} flagged incomplete, and the pages "
              f"never written there are missing; {out} is flagged incomplete", file=sys.stderr)
        return EXIT_PARTIAL
    if args.message_level & MSG_COMMON and not args.quiet:
        print(f"fastdump: reassembled {len(parts)} parts into {out}", file=sys.stderr)
    return 0


def _dump_options_mode(argv, flag, **extra):
    """A makedumpfile mode that, like makedumpfile, takes every option of a dump
    (checked by the same rules, then unused): ``--dump-dmesg``, ``--mem-usage``."""
    p = build_parser()
    p.add_argument(flag, action="store_true", required=True)
    for name, help_text in extra.items():
        p.add_argument(f"--{name}", action="store_true", help=help_text)
    args = p.parse_args(argv)
    mdf.check(args)
    if args.dry_run:
        raise UsageError(f"--dry-run cannot be used with {flag} (as in makedumpfile)")
    if args.source is None:
        raise UsageError("no source given (e.g. /proc/vmcore)")
    return args


def _run_dump_dmesg(argv):
    args = _dump_options_mode(argv, "--dump-dmesg")
    if len(args.target) > 1:
        raise UsageError("--dump-dmesg writes one file (or stdout)")
    if args.target in ([], ["-"]) and is_closed(sys.stdout):
        raise TargetError("standard output is closed: nowhere to write the kernel log (give a file)")
    if args.check_params:
        return 0
    from .dmesg import main as dmesg_main
    return dmesg_main([args.source, *args.target] + (["-f"] if args.force else [])
                      + (["--partial"] if args.partial_dmesg else [])
                      + (["--config", args.erase_config] if args.erase_config else [])
                      + (["-x", args.vmlinux] if args.erase_config and args.vmlinux else []))


def _run_mem_usage(argv):
    """makedumpfile --mem-usage: pages per class and size per dump level, nothing written."""
    from .estimate import main as estimate_main

    args = _dump_options_mode(argv, "--mem-usage", json="print the result as JSON")
    if args.target:
        raise UsageError("--mem-usage writes nothing: give only the source")
    if args.check_params:
        return 0
    return estimate_main([args.source] + (["--json"] if args.json else []))


MODES = {"-R": _run_rearrange, "--reassemble": _run_reassemble, "--dump-dmesg": _run_dump_dmesg,
         "--mem-usage": _run_mem_usage}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):   # SIGHUP: a dropped ssh session, as an interruption
        signal.signal(sig, _term_as_interrupt)
    quiet_errors = _message_level(argv) & MSG_ERROR == 0
    guarded = guard()
    try:
        return _main(argv, quiet_errors)
    finally:
        restore(guarded)


def _main(argv, quiet_errors):
    try:
        if argv and argv[0] in SUBCOMMANDS:
            import importlib
            return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:]) or 0
        for flag, run in MODES.items():
            if flag in argv:
                return run(argv)
        return _run_dump(argv)
    except FastdumpError as e:
        if not quiet_errors:         # (its text may quote the dump: a hostile one sends no escapes)
            print(f"fastdump: error: {printable(e)}", file=sys.stderr)
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


def run(entry=None):
    """The command's entry point (console script, ``python3 -m fastdump``, the capture
    initrd's launcher, and the kdump-tools shim with its own ``entry``): ``main()``, then
    its exit status without the interpreter's teardown.  By then the dump is committed
    and closed; freeing a hundred modules and their objects would add about 9 ms of one
    core to every dump (strace, 2 GiB guest, 2026-12-02), which a 0.16 s ``-d 31`` dump
    feels.  ``main()`` itself returns, so capture scripts and tests that call it keep
    their interpreter.  Standard streams closed or failing are guarded first (the shim's
    ``entry`` wraps stdout before ``main()``); stderr's failures never change the status."""
    guard()
    try:
        rc = (entry or main)()
    except SystemExit as e:               # argparse's --help, --version and usage errors
        rc = e.code
        if rc is not None and not isinstance(rc, int):
            print(rc, file=sys.stderr)
            rc = EXIT_ERROR
    rc = rc or 0
    try:
        if sys.stdout is not None:              # a Closed stand-in when started with fd 1 closed
            sys.stdout.flush()
    except (OSError, ValueError) as e:          # the reader of a pipe gone, a closed stream
        try:
            print(f"fastdump: error: cannot write to standard output: {getattr(e, 'strerror', None) or e}",
                  file=sys.stderr)
        except (OSError, ValueError):
            pass
        rc = rc or EXIT_ERROR
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):
        pass                                    # nowhere left to say it
    os._exit(rc)


def _term_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def _message_level(argv):
    """The level errors are printed at, before the arguments are parsed: a bad value is
    itself an error to print, so it counts as the default 7."""
    for i, a in enumerate(argv):
        if a == "--message-level" and i + 1 < len(argv):
            text = argv[i + 1]
        elif a.startswith("--message-level="):
            text = a.split("=", 1)[1]
        else:
            continue
        try:
            return _message_level_arg(text)
        except argparse.ArgumentTypeError:
            return 7
    return 7


__all__ = ["main", "run", "build_parser", "EXIT_USAGE"]
