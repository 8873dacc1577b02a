"""The codec table and the kdump reader's boundary: one table names every codec for
the command line, the writer and every reader, and only the reader's own module
touches its internals."""

import ast
import pathlib
import subprocess

import pytest
from support import fastdump_cli, makedumpfile, need_tool

import fastdump
from fastdump.commands.cli import build_parser
from fastdump.formats import codecs, kdump

PACKAGE = pathlib.Path(fastdump.__file__).parent


def _makedumpfile_codecs():
    """The codecs this makedumpfile was built with (zlib always; ``-v`` lists the rest)."""
    r = subprocess.run([need_tool("makedumpfile"), "-v"], capture_output=True, text=True, check=False)
    enabled = {line.split()[0] for line in (r.stdout + r.stderr).splitlines() if line.split()[1:2] == ["enabled"]}
    return [c for c in codecs.CODECS if c.option and (c.name == "zlib" or c.name in enabled)]


def test_every_codec_is_named_once():
    assert len({c.name for c in codecs.CODECS}) == len({c.flag for c in codecs.CODECS}) == len(codecs.CODECS)
    assert len({c.core for c in codecs.CODECS}) == len(codecs.CODECS)
    for c in codecs.CODECS:
        assert codecs.by_flag(c.flag) is c and codecs.by_name(c.name) is c
    assert codecs.by_flag(0x80) is None and codecs.flag_name(0x80) == "0x80"


@pytest.mark.parametrize("codec", [c for c in codecs.CODECS if c.option], ids=lambda c: c.name)
def test_option_letters_are_makedumpfiles(codec):
    """fastdump's parser takes makedumpfile's letter for the codec the table says."""
    args = build_parser().parse_args([codec.option, "in", "out"])
    assert args.compress == codec.name


@pytest.mark.parametrize("codec", _makedumpfile_codecs(), ids=lambda c: c.name)
def test_makedumpfile_writes_the_flag_the_table_says(vmcore, tmp_path, codec):
    """Given the same option letter, makedumpfile and fastdump write the same header
    status bit and page flags: the table's letter-to-flag pairs are makedumpfile's."""
    for name, run in (("makedumpfile", makedumpfile), ("fastdump", fastdump_cli)):
        out = str(tmp_path / name)
        run(codec.option, "-d", "1", vmcore, out)
        with fastdump.open(out) as d:
            assert d.header_codec_flags() == codec.flag, name
            flags = set(d.read_descriptors(0, d.n_descriptors()).flags)
            assert codec.flag in flags and flags <= {0, codec.flag}, (name, flags)
            assert d.describe()["compression"] == codec.name


def _privates_defined(tree):
    """Private names a module defines: its functions, classes and ``self._x`` attributes."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {n for n in names if n.startswith("_")}


def test_no_module_reaches_into_another_modules_privates():
    """The kdump reader (and every other object) is used through its public methods:
    an ``obj._x`` must be the object's own (``self``, inherited too) or name something
    the same module defines (namedtuple's ``_make``/``_replace`` are its public API, and so is
    ``os._exit``)."""
    public = {"_make", "_replace", "_asdict", "_fields"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        own = _privates_defined(tree) | public
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__") and node.attr not in own \
                    and ast.unparse(node.value) not in ("self", "cls", "super()") \
                    and ast.unparse(node) != "os._exit":      # the standard library's, documented
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, found


def test_header_fields_by_name_match_the_bytes(tmp_path, vmcore):
    """The named layout is the one the writer packs and the reader and crash read."""
    out = str(tmp_path / "d")
    fastdump.dump(vmcore, out, level=1, compress="zstd")
    with fastdump.open(out) as d:
        with open(out, "rb") as f:
            raw = f.read(d.bitmap1_off)
        assert kdump.HEADER.unpack_named(raw) == d.header and d.header.signature == kdump.SIGNATURE
        assert kdump.SUB_HEADER.unpack_named(raw, d.block_size) == d.sub_header
        assert d.sub_header.max_mapnr_64 == d.max_mapnr and d.sub_header.dump_level == 1
        flagged = kdump.flag_incomplete(raw[:kdump.HEADER.size])
        at = kdump.HEADER.offset("status")
        assert flagged[:at] == raw[:at] and flagged[at + 4:] == raw[at + 4:kdump.HEADER.size]
        assert kdump.HEADER.unpack_named(flagged).status == d.status | kdump.STATUS_INCOMPLETE
