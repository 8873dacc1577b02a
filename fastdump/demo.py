"""``fastdump demo [DIR]``: the main job on an embedded example.

Generates a synthetic vmcore (a PC-like memory map with zero, text, pointer-rich
and random pages), copies it to a kdump-compressed dump with zstd at dump level
1, and summarizes the result.
"""

import argparse
import os

from .errors import UsageError


def main(argv):
    p = argparse.ArgumentParser(prog="fastdump demo", description=__doc__)
    p.add_argument("dir", nargs="?", default="fastdump-demo")
    p.add_argument("--size", type=int, default=512, help="RAM size of the example, MiB")
    p.error = lambda m: (_ for _ in ()).throw(UsageError(m))
    args = p.parse_args(argv)
    from . import dump
    from .info import main as info_main
    from .testing.generator import make_vmcore

    os.makedirs(args.dir, exist_ok=True)
    src = os.path.join(args.dir, "vmcore.example")
    out = os.path.join(args.dir, "dump.kdump")
    make_vmcore(src, ram_size=args.size << 20)
    print(f"generated {src} ({os.path.getsize(src) >> 20} MiB ELF vmcore, {args.size} MiB RAM)")
    stats = dump(src, out, level=1, compress="zstd", force=True, progress="auto")
    print(f"copied to {out}: {stats.pages_kept} pages kept, {stats.pages_zero} zero pages dropped, "
          f"{stats.bytes_written >> 20} MiB written in {stats.seconds:.2f} s with {stats.threads} threads")
    return info_main([out])
