"""Every page compressor fastdump knows, in one table: the name users type, the
kdump descriptor flag (also the header's status bit), makedumpfile's option
letter and the compiled core's codec id.  Everything that names, parses,
writes or decodes a codec looks it up here (``by_name``, ``by_flag``)."""

from __future__ import annotations

from collections import namedtuple

from .. import _core


class Codec(namedtuple("Codec", "name flag option core label")):
    """One codec (a named tuple: read-only, and no dataclasses import at start-up):
    ``name`` as --compress takes it (and verify's and info's counts); ``flag``, the kdump
    page descriptor flag and header status bit (0: stored raw); ``option``, makedumpfile's
    option letter (None when it has none); ``core``, the compiled core's codec id
    (_core.CODEC_*); ``label``, how help texts name it."""

    __slots__ = ()

    @property
    def standard(self):
        """Read by crash, makedumpfile and libkdumpfile (lz4 is fastdump's own)."""
        return self.name != "lz4"


#: the flags are the compiled core's (makedumpfile's DUMP_DH_COMPRESSED_*, and fastdump's
#: own for LZ4 block pages, which ``fastdump convert`` rewrites for other tools)
CODECS = (
    Codec("zstd", _core.KD_ZSTD, "-z", _core.CODEC_ZSTD, "zstd"),
    Codec("lz4", _core.KD_LZ4_FASTDUMP, None, _core.CODEC_LZ4, "LZ4"),
    Codec("lzo", _core.KD_LZO, "-l", _core.CODEC_LZO, "LZO"),
    Codec("snappy", _core.KD_SNAPPY, "-p", _core.CODEC_SNAPPY, "snappy"),
    Codec("zlib", _core.KD_ZLIB, "-c", _core.CODEC_ZLIB, "zlib"),
    Codec("none", 0, None, _core.CODEC_NONE, "no compression"),
)
NAMES = tuple(c.name for c in CODECS)
#: every compression bit a kdump header's status or a descriptor's flags may carry
FLAG_MASK = 0
for _c in CODECS:
    FLAG_MASK |= _c.flag
_BY_NAME = {c.name: c for c in CODECS}
_BY_FLAG = {c.flag: c for c in CODECS}

ZSTD, LZ4, LZO, SNAPPY, ZLIB, NONE = (_BY_NAME[n] for n in NAMES)


def by_name(name):
    """The codec called ``name`` (KeyError when there is none: names are checked by options.py)."""
    return _BY_NAME[name]


def by_flag(flag):
    """The codec of one kdump page descriptor's flags, None when no codec has exactly that flag."""
    return _BY_FLAG.get(flag)


def flag_name(flag):
    """A descriptor or header flag as users read it: the codec's name, or hex."""
    c = by_flag(flag)
    return c.name if c else hex(flag)


def add_options(group):
    """``--compress NAME`` and makedumpfile's codec letters, all setting ``compress``."""
    group.add_argument("--compress", choices=NAMES,
                       help="page compression (lz4 is fastdump's own: convert before sharing)")
    for c in CODECS:
        if c.option:
            group.add_argument(c.option, dest="compress", action="store_const", const=c.name,
                               help=f"{c.label} (as makedumpfile {c.option})")
