"""``fastdump demo [DIR]``: the main job on an embedded example.

Generates a synthetic vmcore of a 6.12-style x86_64 kernel (struct pages,
page tables, a printk buffer; free, cache, user, zero and kernel pages), copies
it at dump level 31 with zstd, the way a capture kernel would, and summarizes
the result: what was dropped, what was kept, and the dump's own description.
"""

import argparse
import os

from .errors import UsageError
from .options import int_type


def main(argv):
    p = argparse.ArgumentParser(prog="fastdump demo", description=__doc__)
    p.add_argument("dir", nargs="?", default="fastdump-demo")
    p.add_argument("--size", type=int_type("size (MiB)", 64, 1 << 20), default=512,
                   help="RAM size of the example, MiB (64..1048576: room for its kernel, a sparse file)")
    p.error = lambda m: (_ for _ in ()).throw(UsageError(m))
    args = p.parse_args(argv)
    from . import dump
    from .info import main as info_main
    from .testing.generator import SyntheticVmcore, VmcoreSpec, default_ram_ranges
    from .testing.kernel_layout import KernelLayout
    from .testing.printk_layout import PrintkLayout

    os.makedirs(args.dir, exist_ok=True)
    src = os.path.join(args.dir, "vmcore.example")
    out = os.path.join(args.dir, "dump.kdump")
    ram = args.size << 20
    layout = PrintkLayout(KernelLayout(default_ram_ranges(ram), encoding="6.12", seed=1))
    SyntheticVmcore(VmcoreSpec(ram_size=ram, osrelease="6.12.0-fastdump-demo"), layout=layout).write(src)
    print(f"generated {src}: an ELF vmcore of a {args.size} MiB machine ({os.path.getsize(src) >> 20} MiB file)")
    stats = dump(src, out, level=31, compress="zstd", force=True, progress="auto")
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(stats.excluded.items()))
    print(f"copied to {out} at -d 31 with zstd on {stats.threads} threads in {stats.seconds:.2f} s: "
          f"{stats.pages_kept} pages kept, dropped {dropped}; {stats.bytes_written >> 20} MiB written")
    return info_main([out])
