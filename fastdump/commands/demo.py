"""``fastdump demo [DIR]``: the main job on an embedded example.

Generates a synthetic vmcore of a 6.12-style x86_64 kernel (struct pages,
page tables, a printk buffer; free, cache, user, zero and kernel pages), copies
it at dump level 31 with zstd, the way a capture kernel would, and summarizes
the result: what was dropped, what was kept, and the dump's own description.
"""

import os

from .. import safefile
from ..kernel.levels import MAX_LEVEL
from ..options import int_type
from .parsing import Parser


def main(argv):
    p = Parser(prog="fastdump demo", description=__doc__)
    p.add_argument("dir", nargs="?", default="fastdump-demo")
    p.add_argument("--size", type=int_type("size (MiB)", 64, 1 << 20), default=512,
                   help="RAM size of the example, MiB (64..1048576: room for its kernel, a sparse file)")
    p.add_argument("-f", "--force", action="store_true", help="replace the files of an earlier demo in DIR")
    args = p.parse_args(argv)
    from .. import dump
    from ..testing.generator import SyntheticVmcore, VmcoreSpec, default_ram_ranges
    from ..testing.kernel_layout import KernelLayout
    from ..testing.printk_layout import PrintkLayout
    from .info import main as info_main

    safefile.make_dir(args.dir, reuse=True)
    src = os.path.join(args.dir, "vmcore.example")
    out = os.path.join(args.dir, "dump.kdump")
    for path in (src, src + ".truth.json", out):   # refuse before minutes of work, not after
        safefile.check_free(path, force=args.force)
    ram = args.size << 20
    layout = PrintkLayout(KernelLayout(default_ram_ranges(ram), encoding="6.12", seed=1))
    example = SyntheticVmcore(VmcoreSpec(ram_size=ram, osrelease="6.12.0-fastdump-demo"), layout=layout)
    example.write(src, force=args.force)
    print(f"generated {src}: an ELF vmcore of a {args.size} MiB machine ({os.path.getsize(src) >> 20} MiB file)")
    stats = dump(src, out, level=MAX_LEVEL, compress="zstd", force=args.force, progress="auto")
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(stats.excluded.items()))
    print(f"copied to {out} at -d {MAX_LEVEL} with zstd on {stats.threads} threads in {stats.seconds:.2f} s: "
          f"{stats.pages_kept} pages kept, dropped {dropped}; {stats.bytes_written >> 20} MiB written")
    return info_main([out])
