"""Every option a dump takes, checked in one place.

The API, the command line and the settings file all end in ``DumpOptions.check``,
so a bad value (wrong type, out of range, a file descriptor where a path is
wanted) is one UsageError naming the option, never a TypeError or KeyError from
deep inside a run.  The small ``*_arg`` checks are also what the subcommands and
the argparse types use for the same kinds of values.
"""

from __future__ import annotations

import os

from .errors import UsageError
from .formats.codecs import NAMES as CODECS
from .kernel.levels import MAX_LEVEL

FORMATS = ("kdump", "elf")
PROGRESS = ("auto", "bar", "lines", "quiet")
#: far above any machine, small enough that nothing sized from it overflows
MAX_THREADS = 4096
MAX_WINDOW_BYTES = 1 << 30
TYPE_CHECKING = False
if TYPE_CHECKING:       # typing is not imported at run time: about 5 ms of every start
    from typing import Union
    #: what the API takes as a path (``path_arg`` checks it; a file descriptor is refused)
    PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


def path_arg(value: object, what: str) -> str:
    """A path (str, bytes or os.PathLike) as str.  An int is refused: a file descriptor
    is not ours to read or close."""
    if isinstance(value, (bool, int)) or not isinstance(value, (str, bytes, os.PathLike)):
        raise UsageError(f"{what} must be a path, not {type(value).__name__} {value!r:.40}")
    path = os.fsdecode(os.fspath(value))
    if not path or "\0" in path:
        raise UsageError(f"{what} {path!r:.60} is not a valid path")
    return path


def _optional_path(value, what):
    return None if value is None else path_arg(value, what)


def int_arg(value, what, lo, hi, *, optional=False):
    """An int in lo..hi (None when ``optional``); bools and floats are refused."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{what} must be an integer, not {type(value).__name__} {value!r:.40}")
    if not lo <= value <= hi:
        raise UsageError(f"{what} {value} is out of range {lo}..{hi}")
    return value


def int_type(what, lo, hi):
    """An argparse ``type=`` for an int in lo..hi: the same check as int_arg."""
    import argparse

    def parse(text):
        try:
            return int_arg(int(text), what, lo, hi)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad {what} {text!r}") from None
        except UsageError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def choice_arg(value, what, choices):
    if not isinstance(value, str) or value not in choices:
        raise UsageError(f"unknown {what} {value!r:.40} (one of: {', '.join(choices)})")
    return value


def bool_arg(value, what, *, optional=False):
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise UsageError(f"{what} must be true or false, not {value!r:.40}")
    return value


def levels_arg(level):
    """makedumpfile's dump level, or a non-empty list of them (the fallback order)."""
    levels = list(level) if isinstance(level, (list, tuple)) else [level]
    if not levels:
        raise UsageError(f"no dump level given (0..{MAX_LEVEL}, or a list of them)")
    return tuple(int_arg(lv, "dump level", 0, MAX_LEVEL) for lv in levels)


def threads_arg(value):
    return int_arg(value, "thread count", 1, MAX_THREADS, optional=True)


class DumpOptions:
    """The checked options of one dump (see ``pipeline.dump`` for their meaning): built
    once by ``check`` from the API, the command line or the settings file, then only read
    (a plain read-only class: dataclasses would cost every start its import)."""

    source: str
    targets: tuple
    levels: tuple
    compress: str
    format: str
    threads: int
    window_bytes: int
    use_mmap: bool
    elf_class: int
    force: bool
    flat: bool
    dmesg: bool
    direct_io: bool
    split: tuple
    split_block_pfns: int
    mem_map: str
    iomem: str
    vmcoreinfo_file: str
    stats_json: str
    size_limit: int
    dry_run: bool
    erase_config: str
    vmlinux: str

    __slots__ = (
        "source", "targets", "levels", "compress", "format", "threads", "window_bytes", "use_mmap",
        "elf_class", "force", "flat", "dmesg", "direct_io", "split", "split_block_pfns", "mem_map",
        "iomem", "vmcoreinfo_file", "stats_json", "size_limit", "dry_run", "erase_config",
        "vmlinux")

    def __init__(self, **values):
        if set(values) != set(self.__slots__):
            raise TypeError(f"DumpOptions takes exactly {', '.join(self.__slots__)}")
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"DumpOptions are read-only ({name})")

    def __repr__(self):
        return f"DumpOptions({', '.join(f'{n}={getattr(self, n)!r}' for n in self.__slots__)})"

    @classmethod
    def check(cls, *, source, target=None, targets=None, level=0, compress="none", format="kdump", threads=None,
              window_bytes=None, use_mmap=None, elf_class=None, force=False, flat=False, dmesg=True,
              direct_io=False, split=None, split_block_pfns, mem_map=None, iomem=None,
              vmcoreinfo_file=None, stats_json=None, size_limit=None, dry_run=False, erase_config=None,
              vmlinux=None):
        from .targets.kinds import FileTarget, RawTarget, Target, parse_target

        if targets is not None and not isinstance(targets, (list, tuple)):
            raise UsageError("targets must be a list of targets")
        targets = ([target] if target is not None else []) + list(targets or ())
        if split is not None and not isinstance(split, (list, tuple)):
            raise UsageError("split must be a list of part files")
        fmt = choice_arg(format, "format", FORMATS)
        codec = choice_arg(compress, "compression", CODECS)
        if fmt == "elf" and codec != "none":
            raise UsageError("ELF dumps are not compressed; drop -c/-l/-z/--compress or use kdump format")
        block = int_arg(split_block_pfns, "split block (pages)", 1, 1 << 40)
        if block % 64:
            raise UsageError("the split block must be a positive multiple of 64 pages (256 KiB)")
        if elf_class is not None and (isinstance(elf_class, bool) or elf_class not in (32, 64)):
            raise UsageError(f"ELF class must be 32 or 64, not {elf_class!r:.40}")
        if mem_map is not None and not isinstance(mem_map, str):
            raise UsageError("mem_map must be a string of START-END ranges")
        targets = tuple(t if isinstance(t, Target) else parse_target(path_arg(t, "target")) for t in targets)
        if not targets and not split:
            raise UsageError("no target given")
        if split and (fmt != "kdump" or flat):
            raise UsageError("--split writes kdump-compressed files; it cannot be combined with -E or -F")
        if flat and any(isinstance(t, FileTarget) for t in targets):
            raise UsageError("-F writes a stream: give '-' (stdout), raw:DEV or ssh://... as the target")
        source = path_arg(source, "source")
        split = None if split is None else tuple(path_arg(p, "split part") for p in split)
        stats_json, iomem = _optional_path(stats_json, "stats file"), _optional_path(iomem, "iomem file")
        vmcoreinfo_file, vmlinux = _optional_path(vmcoreinfo_file, "VMCOREINFO file"), _optional_path(vmlinux, "vmlinux")
        erase_config = _erase_config(erase_config)
        from .safefile import refuse_clashes
        refuse_clashes([t.path for t in targets if isinstance(t, (FileTarget, RawTarget))] + list(split or ())
                       + [stats_json], [source, iomem, vmcoreinfo_file, erase_config, vmlinux])
        return cls(
            source=source,
            targets=targets,
            levels=levels_arg(level), compress=codec, format=fmt, threads=threads_arg(threads),
            window_bytes=int_arg(window_bytes, "window size", 1, MAX_WINDOW_BYTES, optional=True),
            use_mmap=bool_arg(use_mmap, "use_mmap", optional=True), elf_class=elf_class,
            force=bool_arg(force, "force"), flat=bool_arg(flat, "flat"), dmesg=bool_arg(dmesg, "dmesg"),
            direct_io=bool_arg(direct_io, "direct_io"),
            split=split, split_block_pfns=block, mem_map=mem_map, iomem=iomem,
            vmcoreinfo_file=vmcoreinfo_file, stats_json=stats_json,
            size_limit=int_arg(size_limit, "size limit", 1, (1 << 63) - 1, optional=True),
            dry_run=bool_arg(dry_run, "dry_run"), erase_config=erase_config, vmlinux=vmlinux)


def _erase_config(value):
    """makedumpfile's filter config, its syntax checked now (a bad line fails before anything opens)."""
    path = _optional_path(value, "filter config")
    if path is not None:
        from .kernel.erase import load
        load(path)
    return path
