"""BTF, the kernel's own compact type information (``__start_BTF`` .. ``__stop_BTF``).

Layout (include/uapi/linux/btf.h): a header (magic 0xEB9F, version 1, header
length, then the offset and length of the type and string sections, counted
from the header's end), a string section of NUL-terminated names, and a type
section: one ``btf_type`` (name offset, info, size-or-type) per type, numbered
from 1 (0 is void), each followed by data that depends on its kind (members
of a struct, the element type and count of an array, ...).

Only what fastdump asks is kept: names, sizes, members with bit offsets, array
element types and counts, and the chains of typedef/const/volatile.  Every
count and offset is bounded by the section it lies in; reference loops are
cut; a blob that does not parse is NotAvailable.
"""

import bisect
import struct
from array import array

from ..._kerneltables import TableError, btf_enumerator, btf_records
from . import NotAvailable

MAGIC = 0xEB9F
MAX_BTF_BYTES = 256 << 20
MAX_DEPTH = 64          # typedef/const/array chains and nested anonymous members

# kinds
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_MODIFIERS = {TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG}
_HDR = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")


class Type:
    __slots__ = ("kind", "name", "size", "ref", "members", "nelems")

    def __init__(self, kind, name, size, ref):
        self.kind, self.name, self.size, self.ref = kind, name, size, ref
        self.members = None     # [(name, type id, bit offset, bitfield size)] for STRUCT/UNION
        self.nelems = 0         # ARRAY


class Btf:
    """Parsed BTF: types by id, and struct/union/typedef names to ids.

    Memory stays small (a capture kernel has little): the blob is kept as it is, with the
    position of each type's record and a sorted index of the names fastdump looks up;
    a type is decoded when it is asked for."""

    def __init__(self, blob):
        if len(blob) < _HDR.size:
            raise NotAvailable("BTF: shorter than its header")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(blob)
        if magic != MAGIC or version != 1:
            raise NotAvailable(f"BTF: bad magic {magic:#x} or version {version}")
        if not _HDR.size <= hdr_len <= len(blob):
            raise NotAvailable("BTF: header length out of range")
        body = len(blob) - hdr_len
        if type_off + type_len > body or str_off + str_len > body or type_len % 4:
            raise NotAvailable("BTF: sections run past the blob")
        self._blob = blob               # kept whole: the names are looked up inside it, not copied
        self._str0, self._str_end = hdr_len + str_off, hdr_len + str_off + str_len
        self._at = array("I", [0])      # id -> record position; id 0: void
        self._cache = {}
        self._struct_ids = {}         # name -> id, answered once (VMCOREINFO's check asks each struct often)
        self._enumerators = None
        self._vars = None
        self._index(hdr_len + type_off, hdr_len + type_off + type_len)

    def __len__(self):
        return len(self._at)

    def _name(self, off):
        start = self._str0 + off
        if start >= self._str_end:
            raise NotAvailable("BTF: a name lies outside the string section")
        end = self._blob.find(b"\0", start, self._str_end)
        return bytes(self._blob[start:end if end >= 0 else self._str_end]).decode("ascii", "replace")

    def _index(self, pos, end):
        """Check every record's extent and kind; remember where each is and, sorted by name
        offset, the named structs/unions and the named typedefs and scalars.  The walk
        is compiled (fastdump/_kerneltables): 150,000 records took 0.1 s in Python."""
        try:
            at, structs, others = btf_records(self._blob, pos, end, self._str_end - self._str0)
        except TableError as e:
            raise NotAvailable(f"BTF: {e}") from None
        self._at.frombytes(at)
        self._structs = _SortedIndex(array("Q", structs))
        self._others = _SortedIndex(array("Q", others))

    def get(self, tid):
        if not 0 < tid < len(self._at):
            raise NotAvailable(f"BTF: type id {tid} out of range")
        t = self._cache.get(tid)
        if t is None:
            t = self._cache[tid] = self._decode(self._at[tid])
        return t

    def _decode(self, pos):
        blob = self._blob
        name_off, info, size_or_type = _TYPE.unpack_from(blob, pos)
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        pos += _TYPE.size
        t = Type(kind, self._name(name_off) if name_off else "", size_or_type, size_or_type)
        if kind == ARRAY:
            t.ref, _index, t.nelems = struct.unpack_from("<III", blob, pos)
        elif kind in (STRUCT, UNION):
            t.members = []
            for i in range(vlen):
                m_name, m_type, m_off = struct.unpack_from("<III", blob, pos + 12 * i)
                bits, bitsize = (m_off & 0xFFFFFF, m_off >> 24) if kflag else (m_off, 0)
                t.members.append((self._name(m_name) if m_name else "", m_type, bits, bitsize))
        return t

    @property
    def enumerators(self):
        """Enumerator name -> value (the first one of a name), decoded on first use."""
        if self._enumerators is None:
            out = {}
            for pos in self._at[1:]:
                _, info, _ = _TYPE.unpack_from(self._blob, pos)
                kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
                if kind not in (ENUM, ENUM64):
                    continue
                step, at = (8 if kind == ENUM else 12), pos + _TYPE.size
                for i in range(vlen):
                    e_name, lo = struct.unpack_from("<Ii" if kind == ENUM else "<II", self._blob, at + step * i)
                    value = lo if kind == ENUM else lo | struct.unpack_from("<i", self._blob, at + step * i + 8)[0] << 32
                    out.setdefault(self._name(e_name), value)
            self._enumerators = out
        return self._enumerators

    def enumerator(self, name):
        """The value of enumerator ``name`` (the first one of that name), or None; found with
        a compiled walk over the enums, without decoding them all."""
        if self._enumerators is not None:
            return self._enumerators.get(name)
        return btf_enumerator(self._blob, self._at, self._str0, self._str_end,
                              name.encode("ascii", "replace"))

    def _name_offset(self, name):
        """Where ``name`` is in the string section (kernel BTF has each string once), or None."""
        key = name.encode("ascii", "replace") + b"\0"
        if self._blob.startswith(key, self._str0, self._str_end):
            return 0
        at = self._blob.find(b"\0" + key, self._str0, self._str_end)
        return None if at < 0 else at + 1 - self._str0

    def resolve(self, tid):
        """Follow typedef/const/volatile/restrict/type tags to the type they name."""
        for _ in range(MAX_DEPTH):
            t = self.get(tid)
            if t.kind not in _MODIFIERS:
                return tid, t
            tid = t.ref
        raise NotAvailable("BTF: a chain of typedefs does not end")

    def sizeof(self, tid, depth=0):
        """Bytes a type takes; NotAvailable for void, functions and incomplete types."""
        if depth > MAX_DEPTH:
            raise NotAvailable("BTF: arrays nested too deep")
        tid, t = self.resolve(tid)
        if t.kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC):
            return t.size
        if t.kind == PTR:
            return 8
        if t.kind == ARRAY:
            return t.nelems * self.sizeof(t.ref, depth + 1)
        raise NotAvailable(f"BTF: type {t.name or tid} has no size")

    def variable(self, name):
        """Type id of the variable ``name`` (BTF lists per-CPU variables, and all globals on
        kernels built with pahole's global_var), or None.  The VARs are indexed on first use."""
        if self._vars is None:
            self._vars = {}
            for tid in range(1, len(self._at)):
                info = _TYPE.unpack_from(self._blob, self._at[tid])[1]
                if (info >> 24) & 0x1F == VAR:
                    t = self.get(tid)
                    self._vars.setdefault(t.name, t.ref)
                    del self._cache[tid]
        return self._vars.get(name)

    def struct_id(self, name):
        tid = self._struct_ids.get(name)
        if tid is None:
            tid = self._struct_ids[name] = self._find_struct(name)
        return tid

    def _find_struct(self, name):
        off = self._name_offset(name)
        tid = None if off is None else self._structs.first(off)
        if tid is not None:
            return tid
        tid = None if off is None else self._others.first(off)
        if tid is not None:
            return self.resolve(tid)[0]
        raise NotAvailable(f"BTF: no struct or union {name!r}")

    def member(self, tid, path):
        """(bit offset, type id, bitfield size) of ``path`` ("a.b.c" or "a[3].b") inside type ``tid``;
        members of anonymous structs and unions are found as the compiler finds them."""
        bits = 0
        for part in path.split("."):
            name, _, index = part.partition("[")
            found = self._find(tid, name, 0)
            if found is None:
                raise NotAvailable(f"BTF: {self.get(tid).name or 'type'} has no member {name!r}")
            off, tid, bitsize = found
            bits += off
            if index:
                i = int(index.rstrip("]"), 0)
                atid, arr = self.resolve(tid)
                if arr.kind != ARRAY or not 0 <= i < max(arr.nelems, 1):
                    raise NotAvailable(f"BTF: {name} is not an array of more than {i} elements")
                tid = arr.ref
                bits += 8 * i * self.sizeof(tid)
        return bits, tid, bitsize

    def containers(self, name):
        """Ids of every struct and union (named or not) with a member ``name`` (anonymous
        members looked into): the types a variable used as ``var.name...`` can have.
        Decoded without caching (a kernel has tens of thousands)."""
        out = []
        for tid in range(1, len(self._at)):
            info = _TYPE.unpack_from(self._blob, self._at[tid])[1]
            if (info >> 24) & 0x1F not in (STRUCT, UNION):
                continue
            names = [m[0] for m in self._decode(self._at[tid]).members]
            if name in names or ("" in names and self._find(tid, name, 0) is not None):
                out.append(tid)
        return out

    def length(self, tid):
        """Element count of an array type (through typedefs)."""
        _, t = self.resolve(tid)
        if t.kind != ARRAY:
            raise NotAvailable(f"BTF: {t.name or 'type'} is not an array")
        return t.nelems

    def _find(self, tid, name, depth):
        if depth > MAX_DEPTH:
            return None
        _, t = self.resolve(tid)
        if t.kind not in (STRUCT, UNION):
            return None
        for m_name, m_type, m_bits, m_size in t.members:
            if m_name == name:
                return m_bits, m_type, m_size
            if not m_name:
                inner = self._find(m_type, name, depth + 1)
                if inner is not None:
                    return m_bits + inner[0], inner[1], inner[2]
        return None


class _SortedIndex:
    """(name offset, type id) pairs packed as ``offset << 32 | id`` and sorted: the first id
    of a name by bisection, in 8 bytes a name."""

    def __init__(self, packed):
        self.keys = array("Q", sorted(packed))

    def first(self, key):
        i = bisect.bisect_left(self.keys, key << 32)
        if i < len(self.keys) and self.keys[i] >> 32 == key:
            return self.keys[i] & 0xFFFFFFFF
        return None
