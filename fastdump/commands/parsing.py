"""The one way a subcommand builds its parser: a usage error is a UsageError (one line, exit 2)."""

import argparse
import functools
import os
import sys

from ..errors import UsageError


def help_width():
    """The width argparse would take from shutil.get_terminal_size (COLUMNS, else the
    terminal, else 80), less its margin of 2: asked here, because argparse imports shutil
    for it (and shutil bz2, lzma and fnmatch), about 4 ms of every start."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so every command's bad
    arguments end the same way: one line on stderr, exit status 2 (see commands.cli.main)."""

    def __init__(self, *args, formatter_class=argparse.HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=functools.partial(formatter_class, width=help_width()), **kwargs)

    def error(self, message):
        raise UsageError(message)

    def add_subparsers(self, **kwargs):
        kwargs.setdefault("parser_class", Parser)
        return super().add_subparsers(**kwargs)
