"""Errors that end a run with one clear line instead of a traceback."""

# Exit statuses of the command line.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3  # dump complete but some source pages were unreadable


class FastdumpError(Exception):
    """A failure the user can act on; its str() is the one line we print."""

    exit_status = EXIT_ERROR


class UsageError(FastdumpError):
    exit_status = EXIT_USAGE


class SourceError(FastdumpError):
    """The input is not a readable vmcore (corrupt, truncated, unsupported)."""


class VmcoreinfoError(FastdumpError):
    """The VMCOREINFO note is missing a key we need or holds a bogus value."""


class FormatError(FastdumpError):
    """A dump file we were asked to read is not in a format we understand."""


class TargetError(FastdumpError):
    """The output cannot be created or written (exists, no room, no permission)."""


class NoSpaceError(TargetError):
    """The target filled up: the next dump level or target may still fit."""


class Interrupted(FastdumpError):
    """SIGINT/SIGTERM while writing: the dump stays, marked incomplete."""

    exit_status = 130


def printable(value):
    """``value`` as text a terminal shows as it is: what a dump says (its eraseinfo, its
    kernel release, any string from its notes or headers) may hold escape sequences.  A
    character that is not printable (control characters, DEL, C1, format characters such
    as a bidi override, lone surrogates) is shown as Python escapes it (``\\x1b``, ``\\n``,
    ``\\u202e``); printable text, plain ASCII included, is left as it is.  ``--json`` needs
    none of this: JSON escapes control characters itself."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
