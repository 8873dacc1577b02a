"""The one way a subcommand builds its parser: a usage error is a UsageError (one line, exit 2)."""

import argparse

from ..errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so every command's bad
    arguments end the same way: one line on stderr, exit status 2 (see commands.cli.main)."""

    def error(self, message):
        raise UsageError(message)

    def add_subparsers(self, **kwargs):
        kwargs.setdefault("parser_class", Parser)
        return super().add_subparsers(**kwargs)
