"""makedumpfile's filter config (``--config FILE``, makedumpfile.conf(5)): kernel data to erase.

    [vmlinux]
    erase init_uts_ns.name.nodename
    erase mystruct.buffer size 1K
    erase mystruct.addr size mystruct.addr_size
    erase mystruct.addr nullify
    for node in node_list within struct_name:list_member
        erase node.secret
    endfor

``parse`` turns the file into commands (any bad line: one UsageError naming file:line);
``resolve`` finds every named byte in the crashed kernel with its own kallsyms and
BTF (``kernel/types``), without a debug vmlinux (given one, ``-x``, gdb names the type of
a global BTF has no VAR for: a struct, or a pointer, array or scalar), and returns an :class:`EraseList`:
the bytes as (pfn, offset, length, fill) pieces, each inside one page, which the copy
core overwrites in every page it copies, and the eraseinfo text makedumpfile records
in the dump.  As makedumpfile: ``erase`` fills with 'X', ``nullify`` sets a pointer to
0, a pointer (member or global) is followed to the data it points to, a ``char *`` erases
its string (at most 1024 bytes; an ``unsigned char *`` one byte), a NULL pointer on the way
skips the command (nothing lies behind it).  Anything else that cannot be resolved is an error, never a dump
that silently keeps the secret.
"""

import re
import struct
from array import array

from ..errors import FastdumpError, UsageError
from ..formats.elfdump import ERASEINFO as NOTE_NAME
from .types import NotAvailable
from .types import btf as B

ERASE_FILL = ord("X")         # makedumpfile's erase character
NULLIFY_FILL = 0
MAX_STRLEN = 1024             # makedumpfile's bound on a char * string
MAX_LOOP = 1 << 20            # elements of one list or array walked at most
MAX_ERASED = 1 << 30          # bytes one command may erase
MAX_CONFIG = 1 << 20          # bytes of a config file
PAGE = 4096
KERNEL_SPACE = 0xFFFF800000000000   # x86_64: below it, kallsyms gives per-CPU offsets
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_EXPR = re.compile(rf"{_IDENT}(\.{_IDENT})*")
_SIZE = re.compile(r"([0-9]+)([kKmM]?)")


class ConfigError(UsageError):
    """A line of the filter config that makedumpfile's syntax does not allow."""


class EraseError(FastdumpError):
    """A command that names data this dump cannot locate."""


class _Null(Exception):
    """A NULL pointer met on the way: nothing lies behind it to erase, so makedumpfile skips
    the command (or loop), records nothing for it and goes on."""


class Erase:
    """One ``erase`` command: ``expr`` (``sym.member...`` or ``id.member...`` in a loop) and
    ``size`` (None, an int, or an expression) or ``nullify``."""

    def __init__(self, where, expr, size=None, nullify=False):
        self.where, self.expr, self.size, self.nullify = where, expr, size, nullify


class Loop:
    """``for ID in LIST [via NEXT | within STRUCT:MEMBER]`` ... ``endfor``."""

    def __init__(self, where, ident, target, via=None, within=None):
        self.where, self.ident, self.target, self.via, self.within = where, ident, target, via, within
        self.body = []


def parse(text, path="config"):
    """The commands of the ``[vmlinux]`` section (and of the unnamed start); module
    sections are refused: fastdump reads no module's types."""
    commands, loop = [], None
    for n, raw in enumerate(text.splitlines(), 1):
        where = f"{path}:{n}"
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        m = re.fullmatch(r"\[\s*(\S+)\s*\]", line)
        if m:
            if m.group(1) != "vmlinux":
                raise ConfigError(f"{where}: module section [{m.group(1)}] is not supported "
                                  "(fastdump erases only vmlinux data)")
            if loop:
                raise ConfigError(f"{where}: section inside a for loop (missing endfor)")
            continue
        if words[0] == "erase":
            cmd = _erase(where, words[1:])
            (loop.body if loop else commands).append(cmd)
        elif words[0] == "for":
            if loop:
                raise ConfigError(f"{where}: for loops cannot be nested")
            loop = _loop(where, words[1:])
        elif words == ["endfor"]:
            if not loop:
                raise ConfigError(f"{where}: endfor without for")
            if not loop.body:
                raise ConfigError(f"{where}: empty for loop")
            commands.append(loop)
            loop = None
        else:
            raise ConfigError(f"{where}: expected erase, for or endfor, not {words[0]!r:.40}")
    if loop:
        raise ConfigError(f"{loop.where}: for without endfor")
    return commands


def _expr(where, word, what):
    if not _EXPR.fullmatch(word):
        raise ConfigError(f"{where}: bad {what} {word!r:.60} (SYMBOL[.member...])")
    return word


def _erase(where, args):
    if not args:
        raise ConfigError(f"{where}: erase needs a symbol")
    expr = _expr(where, args[0], "symbol")
    rest = args[1:]
    if not rest:
        return Erase(where, expr)
    if rest == ["nullify"]:
        return Erase(where, expr, nullify=True)
    if rest[0] == "size" and len(rest) == 2:
        m = _SIZE.fullmatch(rest[1])
        if m:
            size = int(m.group(1)) << {"": 0, "k": 10, "m": 20}[m.group(2).lower()]
            if not 0 < size <= MAX_ERASED:
                raise ConfigError(f"{where}: size {rest[1]} is out of range 1..{MAX_ERASED}")
            return Erase(where, expr, size=size)
        return Erase(where, expr, size=_expr(where, rest[1], "size"))
    raise ConfigError(f"{where}: after the symbol: size N[K|M], size SYMBOL or nullify, not {' '.join(rest)!r:.60}")


def _loop(where, args):
    if len(args) not in (3, 5) or args[1] != "in":
        raise ConfigError(f"{where}: for ID in LIST [via NEXT | within STRUCT:MEMBER]")
    ident = args[0]
    if not re.fullmatch(_IDENT, ident):
        raise ConfigError(f"{where}: bad loop variable {ident!r:.40}")
    target = _expr(where, args[2], "list")
    if len(args) == 3:
        return Loop(where, ident, target)
    if args[3] == "via" and re.fullmatch(_IDENT, args[4]):
        return Loop(where, ident, target, via=args[4])
    m = re.fullmatch(rf"({_IDENT}):({_IDENT})", args[4])
    if args[3] == "within" and m:
        return Loop(where, ident, target, within=(m.group(1), m.group(2)))
    raise ConfigError(f"{where}: after the list: via NEXT or within STRUCT:MEMBER, not {' '.join(args[3:])!r:.60}")


def recorded(dump):
    """The eraseinfo an opened dump already carries (a kdump dump's eraseinfo section, or the
    ERASEINFO notes of an ELF dump or vmcore); b"" when none.  A dump made from it carries it on,
    as makedumpfile's re-filtering does."""
    if getattr(dump, "format", None) == "kdump":
        return dump.read_at(dump.offset_eraseinfo, dump.size_eraseinfo) \
            if dump.offset_eraseinfo and dump.size_eraseinfo else b""
    return b"".join(n.desc for n in getattr(dump, "notes", ()) if n.name == NOTE_NAME)


def load(path):
    """parse() of a file; an unreadable or longer than MAX_CONFIG file is one line (never
    parsed in part: the commands past a cut would silently not be erased)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG + 1)
        if len(data) > MAX_CONFIG:
            raise ConfigError(f"--config {path}: longer than {MAX_CONFIG} bytes")
        text = data.decode("utf-8")
    except OSError as e:
        raise UsageError(f"--config {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path}: not a text file") from None
    return parse(text, path)


# -- resolution -----------------------------------------------------------------------
class EraseList:
    """What to erase: ``table`` (u64 quadruples pfn, offset, length, fill, sorted, each inside
    one page) for the copy core, and ``eraseinfo``, makedumpfile's text record."""

    def __init__(self, pieces, eraseinfo):
        pieces.sort()
        self.table = array("Q", [v for p in pieces for v in p])
        self.eraseinfo = eraseinfo.encode()
        self.nbytes = sum(p[2] for p in pieces)

    def __len__(self):
        return len(self.table) // 4

    def overlay(self, pa, data):
        """``data`` read at physical ``pa``, erased as the copy core erases pages: whatever
        fastdump writes into a dump from the crashed kernel's memory outside the page copy
        (the kdump header's utsname) reads through this, so no erased byte survives there."""
        out, t, end = bytearray(data), self.table, pa + len(data)
        for i in range(0, len(t), 4):
            lo = t[i] * PAGE + t[i + 1]
            a, b = max(lo, pa), min(lo + t[i + 2], end)
            if a < b:
                out[a - pa:b - pa] = bytes([t[i + 3]]) * (b - a)
        return bytes(out)


def resolve(commands, kernel, *, vmlinux=None):
    """The commands' bytes in ``kernel`` (a ``kernel.types.Kernel``).  Variable types come
    from the dump's BTF; with ``vmlinux``, the type of a global BTF has no VAR for is the
    one the vmlinux's debug info gives it (a struct, union or typedef by name, its layout
    still from BTF; a pointer, array or C scalar built from gdb's answer, so that a
    ``char *`` global erases its string as makedumpfile does)."""
    r = _Resolver(kernel, vmlinux, _globals(commands))
    try:
        for cmd in commands:
            if isinstance(cmd, Loop):
                r.loop(cmd)
            else:
                r.erase(cmd, {})
        pieces = r.pieces()
    finally:
        kernel.forget()          # a capture kernel needs the memory for the copy
    return EraseList(pieces, "".join(r.info))


def _globals(commands):
    """The global names the commands use (loop variables aside): asked of gdb in one run."""
    out = []

    def add(expr, scope):
        if isinstance(expr, str):
            first = expr.split(".", 1)[0]
            if first not in scope and first not in out:
                out.append(first)
    for cmd in commands:
        if isinstance(cmd, Loop):
            add(cmd.target, ())
            body, scope = cmd.body, (cmd.ident,)
        else:
            body, scope = [cmd], ()
        for e in body:
            add(e.expr, scope)
            add(e.size, scope)
    return out


# The C scalar types gdb names (gcc's DWARF base types, as gdb prints them): their sizes on x86_64.
_SCALAR_WORDS = {"signed", "unsigned", "int", "short", "long", "char", "_Bool", "bool", "__int128"}
_QUALIFIERS = re.compile(r"\b(?:const|volatile|restrict|__restrict)\b")


def _scalar_size(base):
    words = base.split()
    if not words or not set(words) <= _SCALAR_WORDS:
        return None
    if words in (["_Bool"], ["bool"]):
        return 1
    rest = [w for w in words if w not in ("signed", "unsigned")]
    if rest == ["char"]:
        return 1
    rest = [w for w in rest if w != "int"]
    return {(): 4, ("short",): 2, ("long",): 8, ("long", "long"): 8, ("__int128",): 16}.get(tuple(rest))


class _Types:
    """Type ids: BTF's (> 0; 0 is void) and, below 0, the pointers, arrays and C scalars that a
    vmlinux's debug info names (``-x``) and BTF need not hold as such (``char *``: BTF has
    no way to find "the pointer to char" by name).  ``resolve``/``sizeof``/``member`` as
    BTF's, on both."""

    def __init__(self, kernel):
        self.k = kernel
        self._made = {}

    def make(self, kind, *, size=0, ref=0, nelems=0, name=""):
        t = B.Type(kind, name, size, ref)
        t.nelems = nelems
        tid = -1 - len(self._made)
        self._made[tid] = t
        return tid

    def resolve(self, tid):
        if tid < 0:
            return tid, self._made[tid]
        return self.k.btf.resolve(tid)

    def sizeof(self, tid, depth=0):
        if tid >= 0:
            return self.k.btf.sizeof(tid)
        t = self._made[tid]
        if t.kind == B.INT:
            return t.size
        if t.kind == B.PTR:
            return 8
        if depth > B.MAX_DEPTH:
            raise NotAvailable("arrays nested too deep")
        return t.nelems * self.sizeof(t.ref, depth + 1)

    def member(self, tid, path):
        if tid < 0:
            raise NotAvailable(f"a {self.describe(tid)} has no member {path!r}")
        return self.k.btf.member(tid, path)

    def describe(self, tid):
        _, t = self.resolve(tid)
        return {B.INT: "scalar", B.PTR: "pointer", B.ARRAY: "array"}.get(t.kind, t.name or "type")

    def from_c(self, text):
        """The type id of gdb's ``whatis`` answer ``text`` ("char *", "struct foo *[4]",
        "unsigned int", "atomic_long_t", "void (*)(int)"); None when fastdump cannot lay it
        out (no debug info, an anonymous struct, a pointer to an array).  A struct, union,
        enum or typedef name not in BTF: NotAvailable."""
        text = " ".join(_QUALIFIERS.sub(" ", text).split())
        if "(" in text:                                      # a function pointer: to code, like a void *
            return self.make(B.PTR) if re.fullmatch(r"[\w\s*]+\(\*\)\s*\(.*\)", text) else None
        m = re.fullmatch(r"(.*?)\s*((?:\*\s*)*)((?:\[\d*\]\s*)*)", text)
        if m is None or not m.group(1):
            return None
        base, stars, dims = m.group(1), m.group(2).count("*"), re.findall(r"\[(\d*)\]", m.group(3))
        words = base.split()
        size = _scalar_size(base)
        if size is not None:
            tid = self.make(B.INT, size=size, name=base)
        elif base == "void":
            if not stars:
                return None
            tid = 0
        elif len(words) == 2 and words[0] in ("struct", "union", "enum") and re.fullmatch(_IDENT, words[1]):
            tid, t = self.k.btf.resolve(self.k.btf.struct_id(words[1]))
            kinds = (B.ENUM, B.ENUM64) if words[0] == "enum" else (B.STRUCT, B.UNION)
            if t.kind not in kinds:
                raise NotAvailable(f"BTF: no {base}")
        elif len(words) == 1 and re.fullmatch(_IDENT, base):
            tid = self.k.btf.struct_id(base)                 # a typedef (or a struct of that name)
        else:
            return None                                      # struct {...}, <data variable, no debug info>
        for _ in range(stars):
            tid = self.make(B.PTR, ref=tid)
        for n in reversed(dims):
            if tid == 0:
                return None
            tid = self.make(B.ARRAY, ref=tid, nelems=int(n or 0))
        return tid


class _Value:
    __slots__ = ("va", "tid")

    def __init__(self, va, tid):
        self.va, self.tid = va, tid


class _Resolver:
    def __init__(self, kernel, vmlinux, names=()):
        self.k, self.vmlinux = kernel, vmlinux
        self.types = _Types(kernel)
        self.names = list(names)  # the globals the commands use: one gdb run asks for all
        self.gdb_said = {}        # name: gdb's whatis answer, None when it knows no such symbol
        self.ranges = []          # (va, size, fill)
        self.info = []

    def _fail(self, where, text):
        raise EraseError(f"{where}: {text}")

    # -- expressions --------------------------------------------------------------
    def _var_type(self, where, name, members, *, address_only=False):
        """The type id of global variable ``name``: its BTF VAR, else the vmlinux's debug
        info (-x), else the one type its ``members`` path proves; None when not known and
        no member is taken (``address_only``: the caller uses only its address)."""
        typed = members or not address_only
        try:
            tid = self.k.btf.variable(name)
        except NotAvailable:
            if members and not self.vmlinux:
                raise
            tid = None                   # no BTF: the vmlinux may still name a pointer or scalar
        if tid is None and self.vmlinux and typed:
            tid = self._vmlinux_type(where, name, required=bool(members))
        if tid is None and typed:
            self._not_a_pointer(where, name)
        if tid is None and members:
            tid = self._type_from_path(where, name, members)
        return tid                       # None: erase SYMBOL size N needs no type

    def _not_a_pointer(self, where, name):
        """A global of unknown type may be a pointer, which makedumpfile follows: taking its own
        bytes for the data would erase the wrong thing and keep the secret.  Refused unless its
        first 8 bytes are readable and no kernel address this dump can translate."""
        value = self._u64(where, self.k.symbol(name))        # unreadable: cannot tell, refused
        if value < KERNEL_SPACE:
            return
        try:
            self.k.translate(value)
        except FastdumpError:
            return
        if self.vmlinux:
            said = self.gdb_said.get(name)
            self._fail(where, f"{name} may be a pointer (it holds kernel address {value:#x}) and neither the "
                              f"kernel's BTF nor {self.vmlinux} gives its type ("
                              + (f"gdb: {said}" if said else f"gdb knows no symbol {name}") + ")")
        self._fail(where, f"{name} may be a pointer (it holds kernel address {value:#x}) and the kernel's BTF "
                          "does not give its type (no VAR for it): give -x VMLINUX")

    def _type_from_path(self, where, name, members):
        """Debian's BTF has no VAR for an ordinary global, but ``name.a.b`` says its type has
        member path a.b: every struct or union that has it and fits before the next symbol
        is a candidate, and one is taken only when all lay out the path alike (same offsets,
        pointers followed at the same steps, same final type shape).  Otherwise: refused."""
        btf, path = self.k.btf, ".".join(members)
        extent = self.k.symbols.extent(name)
        shapes, too_big = {}, 0
        for tid in btf.containers(members[0]):
            try:
                shape = self._path(where, name, tid, members)
                size = btf.sizeof(tid)
            except (EraseError, NotAvailable):
                continue
            if extent is not None and size > extent:
                too_big += 1
                continue
            shapes.setdefault((tuple(shape[0]), self._shape(shape[1])), tid)
        if len(shapes) == 1:
            return next(iter(shapes.values()))
        if not shapes:
            self._fail(where, f"{name}.{path}: no struct type with member path {path} fits {name}"
                              + (f" ({too_big} larger than its {extent} bytes)" if too_big else "")
                              + "; give -x VMLINUX")
        self._fail(where, f"{name}.{path} is ambiguous without -x: {len(shapes)} struct types have member "
                          f"path {path} laid out differently; give -x VMLINUX")

    def _shape(self, tid):
        """What an erase of a member of type ``tid`` depends on: kind and size, and for a
        pointer the kind and size of what it points to."""
        btf = self.k.btf

        def kind_size(t):
            if not t:
                return None
            tid, typ = btf.resolve(t)
            try:
                return typ.kind, btf.sizeof(tid)
            except NotAvailable:
                return typ.kind, None
        _, t = btf.resolve(tid)
        return kind_size(tid), kind_size(t.ref) if t.kind == B.PTR else None

    def _vmlinux_type(self, where, name, *, required):
        """The type the vmlinux's debug info gives ``name`` (gdb's ``whatis``): a struct or union
        or typedef as its BTF id, a pointer, array or scalar built over one (``_Types``); None
        when it gives none fastdump can lay out (``required``: an error then)."""
        if name not in self.gdb_said:
            self._ask_gdb(where, [name] + [n for n in self.names if n not in self.gdb_said and n != name])
        said = self.gdb_said.get(name)
        tid = self.types.from_c(said) if said else None
        if tid is None and required:
            self._fail(where, f"{self.vmlinux} does not give {name} a type fastdump can lay out ("
                              + (f"gdb: {said}" if said else f"gdb knows no symbol {name}") + ")")
        return tid

    def _ask_gdb(self, where, names):
        """gdb's ``whatis`` of each of ``names`` in one run (reading a distribution vmlinux's
        debug info takes gdb tens of seconds)."""
        import shutil               # here: only -x needs them, and every dump imports this module
        import subprocess
        gdb = shutil.which("gdb")
        if gdb is None:
            self._fail(where, f"-x VMLINUX needs gdb to read the type of {names[0]}")
        argv = [gdb, "-batch", "-nx"]
        for n in names:
            argv += ["-ex", f"echo @@fastdump {n}\\n", "-ex", f"whatis {n}"]
        try:
            out = subprocess.run(argv + ["--", self.vmlinux], capture_output=True, text=True,
                                 timeout=300).stdout
        except (OSError, subprocess.SubprocessError) as e:
            self._fail(where, f"gdb could not read {self.vmlinux}: {e}")
        current = None
        for n in names:
            self.gdb_said[n] = None
        for line in out.splitlines():
            if line.startswith("@@fastdump "):
                current = line.split(" ", 1)[1].strip()
            elif current in self.gdb_said and self.gdb_said[current] is None and line.startswith("type = "):
                self.gdb_said[current] = line[len("type = "):].strip()

    def _deref(self, where, v):
        """A pointer's target (typed by what it points to)."""
        _, t = self.types.resolve(v.tid)
        va = self._u64(where, v.va)
        if va == 0:
            raise _Null
        return _Value(va, t.ref)

    def _u64(self, where, va):
        try:
            return struct.unpack("<Q", self.k.read(va, 8))[0]
        except NotAvailable as e:
            self._fail(where, str(e))

    def value(self, where, expr, scope, *, address_only=False):
        """The object ``expr`` names (a trailing pointer is not followed)."""
        first, *members = expr.split(".")
        if first in scope:
            v = scope[first]
        else:
            va = self.k.symbol(first)
            if va < KERNEL_SPACE:
                self._fail(where, f"{first} is a per-CPU variable (one copy per CPU): not supported")
            v = _Value(va, self._var_type(where, first, members, address_only=address_only))
        if not members:
            return v
        steps, tid = self._path(where, expr, v.tid, members)
        va = v.va
        for deref, off in steps:
            if deref:
                va = self._u64(where, va)
                if va == 0:
                    raise _Null
            va += off
        return _Value(va, tid)

    def _path(self, where, expr, tid, members):
        """How ``members`` lie from type ``tid``: [(follow the pointer first?, byte offset)]
        per member, and the last member's type id."""
        btf, steps = self.types, []
        for name in members:
            _, t = btf.resolve(tid)
            deref = t.kind == B.PTR
            if deref:
                tid = t.ref
                _, t = btf.resolve(tid)
            if t.kind not in (B.STRUCT, B.UNION):
                self._fail(where, f"{expr}: cannot take member {name} of a non-struct")
            bits, tid, bit_size = btf.member(tid, name)
            if bit_size or bits % 8:
                self._fail(where, f"{expr}: {name} is a bitfield")
            steps.append((deref, bits // 8))
        return steps, tid

    def _int(self, where, expr, scope):
        v = self.value(where, expr, scope)
        _, t = self.types.resolve(v.tid) if v.tid else (None, None)
        if t is None or t.kind not in (B.INT, B.ENUM) or t.size not in (1, 2, 4, 8):
            self._fail(where, f"size {expr} is not an integer")
        return int.from_bytes(self.k.read(v.va, t.size), "little")

    # -- commands ---------------------------------------------------------------------
    def erase(self, cmd, scope):
        where = cmd.where
        try:
            v = self.value(where, cmd.expr, scope)
            t = self.types.resolve(v.tid)[1] if v.tid else None
            if cmd.nullify:
                if t is None or t.kind != B.PTR:
                    self._fail(where, f"nullify: {cmd.expr} is not a pointer")
                self._add(v.va, 8, NULLIFY_FILL, f"erase {cmd.expr} nullify\n")
                return
            size = None
            if t is not None and t.kind == B.PTR:        # erase what the pointer points to
                target = self.types.resolve(t.ref)[1] if t.ref else None
                if target is None and cmd.size is None:
                    self._fail(where, f"{cmd.expr} is a void *: give size N or nullify")
                v = self._deref(where, v)
                if cmd.size is None and target.kind == B.INT and target.name == "char":
                    size = self._strlen(v.va)            # a char *: its string (an unsigned char *: 1 byte)
                    if size == 0:
                        return                           # an empty string: nothing to erase
            if cmd.size is not None:
                size = cmd.size if isinstance(cmd.size, int) else self._int(where, cmd.size, scope)
            elif size is None:
                if v.tid is None:
                    self._fail(where, f"the size of {cmd.expr} is not known: give size N")
                size = self.types.sizeof(v.tid)
            if not 0 < size <= MAX_ERASED:
                self._fail(where, f"{cmd.expr}: size {size} is out of range")
            self._add(v.va, size, ERASE_FILL, f"erase {cmd.expr} size {size}\n")
        except _Null:
            return
        except NotAvailable as e:
            self._fail(where, f"{cmd.expr}: {e}")

    def _strlen(self, va):
        data = self._read_upto(va, MAX_STRLEN)
        n = data.find(b"\0")
        return n if n >= 0 else len(data)

    def _read_upto(self, va, size):
        out = b""
        while len(out) < size:
            n = min(size - len(out), PAGE - (va + len(out)) % PAGE)
            try:
                out += self.k.read(va + len(out), n)
            except NotAvailable:
                break
        return out

    def _add(self, va, size, fill, info):
        self.ranges.append((va, size, fill))
        self.info.append(info)

    def loop(self, lp):
        where = lp.where
        try:
            for element in self._elements(lp):
                for cmd in lp.body:
                    self.erase(cmd, {lp.ident: element})
        except _Null:
            return
        except NotAvailable as e:
            self._fail(where, f"for {lp.ident} in {lp.target}: {e}")

    def _elements(self, lp):
        btf, where = self.types, lp.where
        if lp.within:                          # a list_head: its entries' containing structs
            st, member = lp.within
            head = self.value(where, lp.target, {}, address_only=True).va
            sid = self.k.btf.struct_id(st)
            off = self.k.offsetof(st, member)
            yield from (_Value(node - off, sid) for node in self._walk(where, head, 0, head))
            return
        v = self.value(where, lp.target, {})
        if v.tid is None:
            self._fail(where, f"the kernel's BTF does not give the type of {lp.target} (no VAR for it): "
                              "give -x VMLINUX")
        _, t = btf.resolve(v.tid)
        if lp.via:                             # a struct (or pointer to one) linked by ``via``
            if t.kind == B.PTR:
                v = self._deref(where, v)
            bits, _, _ = btf.member(v.tid, lp.via)
            yield v
            yield from (_Value(node, v.tid) for node in self._walk(where, v.va, bits // 8, v.va))
            return
        if t.kind != B.ARRAY:
            self._fail(where, f"{lp.target} is not an array (use via or within for lists)")
        size = btf.sizeof(t.ref)
        for i in range(t.nelems):
            yield _Value(v.va + i * size, t.ref)

    def _walk(self, where, node, link_off, stop):
        """Nodes after ``node`` following the pointer at ``link_off``, until NULL or ``stop``;
        bounded, and a cycle that misses ``stop`` is an error."""
        seen = set()
        for _ in range(MAX_LOOP):
            node = self._u64(where, node + link_off)
            if node == 0 or node == stop:
                return
            if node in seen:
                self._fail(where, "the list loops without returning to its head")
            seen.add(node)
            yield node
        self._fail(where, f"the list has more than {MAX_LOOP} entries")

    # -- to pages ---------------------------------------------------------------------------
    def pieces(self):
        """(pfn, offset, length, fill) of every range, split at page boundaries (each page
        of a range is translated on its own: virtual pages need not be contiguous)."""
        out = []
        for va, size, fill in self.ranges:
            at = va
            while at < va + size:
                n = min(va + size - at, PAGE - at % PAGE)
                try:
                    pa = self.k.translate(at)
                except FastdumpError as e:
                    raise EraseError(f"erase at {at:#x}: {e}") from None
                out.append((pa // PAGE, pa % PAGE, n, fill))
                at += n
        return out
