"""``fastdump dmesg VMCORE [OUTFILE]``: the crashed kernel's log, as ``makedumpfile --dump-dmesg`` writes it."""

import sys

from .. import safefile
from ..kernel.dmesg import extract_dmesg
from .parsing import Parser


def main(argv):
    """``fastdump dmesg VMCORE [OUTFILE]``: write the crashed kernel's log."""
    p = Parser(prog="fastdump dmesg",
                                description="Write the kernel log (dmesg) stored in a vmcore or dump, "
                                            "as makedumpfile --dump-dmesg does.")
    p.add_argument("vmcore", help="ELF vmcore or dump file (kdump-compressed or ELF)")
    p.add_argument("outfile", nargs="?", help="file to write (default: standard output)")
    p.add_argument("--caller", action="store_true",
                   help="add the caller column [T<pid>]/[C<cpu>] (as makedumpfile 1.7.5+)")
    p.add_argument("--partial", "--partial-dmesg", dest="partial", action="store_true",
                   help="only the messages since the log was last cleared")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing OUTFILE")
    p.add_argument("--config", dest="erase_config", metavar="FILE",
                   help="makedumpfile's filter config: its erased bytes are erased in the log too, as in "
                        "the log written beside a dump")
    p.add_argument("-x", dest="vmlinux", metavar="VMLINUX", help="with --config: the types BTF does not give")
    args = p.parse_args(argv)
    problems = []
    if args.outfile not in (None, "-"):
        safefile.refuse_clashes([args.outfile], [args.vmcore])
    text = _log(args, problems)
    if args.outfile in (None, "-"):
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("latin-1"))
        sys.stdout.buffer.flush()
    else:
        safefile.write_file(args.outfile, text.encode("latin-1"), force=args.force)
    for line in problems[:1]:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        print(f"fastdump dmesg: warning: {line}{more}", file=sys.stderr)
    return 0


def _log(args, problems):
    """The log text; with ``--config``, read through the erase a dump of the same config
    applies (an erased secret in the log would otherwise be written out in the clear)."""
    if not args.erase_config:
        return extract_dmesg(args.vmcore, caller=args.caller, partial=args.partial, problems=problems)
    from ..kernel import erase
    from ..sources.opener import open_dump
    config = erase.load(args.erase_config)
    with open_dump(args.vmcore) as d:
        erased = erase.resolve(config, d.kernel, vmlinux=args.vmlinux)
        return extract_dmesg(d, caller=args.caller, partial=args.partial, problems=problems, erased=erased)
