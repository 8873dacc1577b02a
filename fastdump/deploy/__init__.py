"""``fastdump setup SYSTEM``: make a distribution's kdump save its dumps through fastdump.

One module per distribution tool; each has ``add_arguments(parser)`` and ``run(args)``.
"""

import argparse

from ..errors import UsageError
from . import kdump_tools, kdump_utils

SYSTEMS = {"kdump-tools": kdump_tools, "kdump-utils": kdump_utils}


def main(argv):
    p = argparse.ArgumentParser(prog="fastdump setup",
                                description="Make the installed kdump tooling run fastdump as its collector.")
    p.error = lambda m: (_ for _ in ()).throw(UsageError(m))
    sub = p.add_subparsers(dest="system", metavar="SYSTEM", required=True)
    for name, module in SYSTEMS.items():
        module.add_arguments(sub.add_parser(name, help=module.__doc__.splitlines()[0]))
    for action in sub.choices.values():
        action.error = p.error
    args = p.parse_args(argv)
    return SYSTEMS[args.system].run(args)
