# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The kernel's own tables (kallsyms, BTF) walked in C: once per dump, before any page
is copied, so their cost is start-up.  In Python, decoding 170,000 kallsyms names and
indexing 150,000 BTF records took about 0.3 s of a 6.12 kernel's dump, as much as
makedumpfile's whole -d 31 run of a 16 GiB machine.

The callers (fastdump/kernel/types/) keep every rule and check that decides what the
tables mean; here are only the loops, bounded by the buffers they are given.

* ``kallsyms_entries(raw, count, starts)``: where each ``kallsyms_names`` entry starts;
* ``kallsyms_find(raw, starts, tokens, wanted)``: the first entry whose decoded name
  (type letter dropped) is each wanted name;
* ``btf_records(blob, pos, end)``: where each BTF type record lies, and its kind;
* ``btf_enumerator(blob, at, str0, str_end, name)``: the first enumerator of a name.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t, int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcmp, memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize

cdef enum:
    KSYM_NAME_LEN = 512
    # BTF kinds (include/uapi/linux/btf.h)
    K_INT = 1
    K_PTR = 2
    K_ARRAY = 3
    K_STRUCT = 4
    K_UNION = 5
    K_ENUM = 6
    K_FWD = 7
    K_TYPEDEF = 8
    K_VOLATILE = 9
    K_CONST = 10
    K_RESTRICT = 11
    K_FUNC = 12
    K_FUNC_PROTO = 13
    K_VAR = 14
    K_DATASEC = 15
    K_FLOAT = 16
    K_DECL_TAG = 17
    K_TYPE_TAG = 18
    K_ENUM64 = 19


class TableError(ValueError):
    """A table does not parse; the message says where (the caller words it for the user)."""


# -- kallsyms ---------------------------------------------------------------------------
def kallsyms_entries(const uint8_t[::1] raw not None, uint32_t count, uint32_t[::1] starts not None,
                     uint32_t first=0, uint32_t pos=0):
    """Record where entries ``first``.. start (``starts[i]``), from byte ``pos`` of ``raw``,
    as far as ``raw`` holds whole entries.  Returns (entries done, byte position reached).
    An entry's length is one byte, or two when bit 7 is set (6.1+ "big symbols")."""
    cdef uint32_t i = first
    cdef Py_ssize_t n = raw.shape[0], p = pos, length
    cdef int empty = 0
    if starts.shape[0] < count:
        raise ValueError("starts too small")
    with nogil:
        while i < count:
            if p >= n:
                break
            length = raw[p]
            if length & 0x80:
                if p + 1 >= n:
                    break
                length = (length & 0x7F) | (<Py_ssize_t>raw[p + 1] << 7)
                if p + 2 + length > n:
                    break
                starts[i] = <uint32_t>p
                p += 2 + length
            else:
                if p + 1 + length > n:
                    break
                starts[i] = <uint32_t>p
                p += 1 + length
            if length == 0:
                empty = 1
                break
            i += 1
    if empty:
        raise TableError(f"kallsyms_names entry {i} is empty")
    return i, p


cdef inline int tokens_spell(const uint8_t* tt, const uint32_t* tok_off, const uint8_t* toks,
                             uint32_t ntoks, const uint8_t* want, uint8_t* letter) noexcept nogil:
    """1 when the tokens ``toks`` expand to a type letter (stored in ``letter``) followed by
    ``want``, whose length the caller has matched; compared token by token, so that most
    names are rejected at their first token, without being decoded."""
    cdef uint32_t j, t, tl, at = 0
    cdef const uint8_t* piece
    for j in range(ntoks):
        t = toks[j]
        tl = tok_off[t + 1] - tok_off[t]
        if tl == 0:
            continue
        piece = tt + tok_off[t]
        if at == 0:
            letter[0] = piece[0]
            if tl > 1 and memcmp(piece + 1, want, tl - 1) != 0:
                return 0
        elif memcmp(piece, want + at - 1, tl) != 0:
            return 0
        at += tl
    return 1


def kallsyms_find(const uint8_t[::1] raw not None, const uint32_t[::1] starts not None,
                  tokens, wanted):
    """``tokens``: the 256 token expansions (bytes); ``wanted``: names (bytes, no type
    letter).  Returns {name: (index, type letter)} for the names found, the first
    entry of a name winning; stops when all are found.  Raises TableError at an entry
    met before that which decodes to an impossible length (under 2 or over
    KSYM_NAME_LEN bytes) or lies past ``raw``."""
    cdef uint32_t count = <uint32_t>starts.shape[0]
    cdef uint32_t tok_off[257]
    cdef bytes table
    cdef const uint8_t* tt
    cdef Py_ssize_t k, nw, left, n = raw.shape[0]
    cdef uint32_t i = 0, pos, length, j, outlen, t
    cdef uint8_t letter = 0
    cdef int32_t by_len[KSYM_NAME_LEN + 2]     # first wanted name of each decoded length, or -1
    cdef int bad = 0
    cdef const char** wp
    cdef uint32_t* wl
    cdef int64_t* hit_at
    cdef uint8_t* hit_type
    cdef int32_t* same_len                      # the next wanted name of the same length, or -1
    cdef int32_t cand
    if len(tokens) != 256:
        raise ValueError("256 tokens expected")
    table = b"".join(tokens)
    tt = <const uint8_t*>(<const char*>table)
    tok_off[0] = 0
    for k in range(256):
        tok_off[k + 1] = tok_off[k] + <uint32_t>len(tokens[k])
    names = [bytes(w) for w in dict.fromkeys(wanted) if 0 < len(w) < KSYM_NAME_LEN]
    nw = len(names)
    if nw == 0 or count == 0:
        return {}
    wp = <const char**>malloc(nw * sizeof(char*))
    wl = <uint32_t*>malloc(nw * sizeof(uint32_t))
    hit_at = <int64_t*>malloc(nw * sizeof(int64_t))
    hit_type = <uint8_t*>malloc(nw)
    same_len = <int32_t*>malloc(nw * sizeof(int32_t))
    try:
        if wp == NULL or wl == NULL or hit_at == NULL or hit_type == NULL or same_len == NULL:
            raise MemoryError()
        for k in range(KSYM_NAME_LEN + 2):
            by_len[k] = -1
        for k in range(nw):
            wp[k] = <const char*>(<bytes>names[k])
            wl[k] = <uint32_t>len(names[k])
            hit_at[k] = -1
            same_len[k] = by_len[wl[k] + 1]          # + the type letter
            by_len[wl[k] + 1] = <int32_t>k
        left = nw
        with nogil:
            while i < count and left > 0:
                pos = starts[i]
                if pos >= n:
                    bad = 2
                    break
                length = raw[pos]
                pos += 1
                if length & 0x80:
                    if pos >= n:
                        bad = 2
                        break
                    length = (length & 0x7F) | (<uint32_t>raw[pos] << 7)
                    pos += 1
                if pos + length > n:
                    bad = 2
                    break
                # the decoded length first (a table look-up per token); only a name as long
                # as a wanted one is decoded and compared, and only with those
                outlen = 0
                for j in range(length):
                    t = raw[pos + j]
                    outlen += tok_off[t + 1] - tok_off[t]
                    if outlen > KSYM_NAME_LEN:      # no wrap, however long the tokens
                        break
                if outlen < 2 or outlen > KSYM_NAME_LEN:
                    bad = 1
                    break
                cand = by_len[outlen]
                while cand >= 0:
                    if hit_at[cand] < 0 and tokens_spell(tt, tok_off, &raw[pos], length,
                                                         <const uint8_t*>wp[cand], &letter):
                        hit_at[cand] = i
                        hit_type[cand] = letter
                        left -= 1
                        break
                    cand = same_len[cand]
                i += 1
        if bad == 1:
            raise TableError(f"kallsyms symbol {i} has an impossible length")
        if bad == 2:
            raise TableError(f"kallsyms_names entry {i} lies past the table")
        return {names[k]: (hit_at[k], chr(hit_type[k])) for k in range(nw) if hit_at[k] >= 0}
    finally:
        free(wp)
        free(wl)
        free(hit_at)
        free(hit_type)
        free(same_len)


# -- BTF ----------------------------------------------------------------------------------
cdef inline uint32_t rd32(const uint8_t* p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef struct Growing:
    char* data
    Py_ssize_t n, cap


cdef inline int push(Growing* g, uint64_t v, int width) noexcept nogil:
    """Append a u32 (width 4) or u64 (width 8); 1 when memory runs out."""
    cdef char* grown
    if g.n == g.cap:
        g.cap = g.cap * 2 if g.cap else 4096
        grown = <char*>realloc(g.data, g.cap * width)
        if grown == NULL:
            return 1
        g.data = grown
    if width == 4:
        (<uint32_t*>g.data)[g.n] = <uint32_t>v
    else:
        (<uint64_t*>g.data)[g.n] = v
    g.n += 1
    return 0


cdef inline int extra_bytes(int kind, uint32_t vlen, uint64_t* out) noexcept nogil:
    """Bytes after a btf_type of this kind; 0 for a kind not known here (then -1)."""
    if kind == K_INT or kind == K_VAR or kind == K_DECL_TAG:
        out[0] = 4
    elif kind == K_ARRAY:
        out[0] = 12
    elif kind == K_STRUCT or kind == K_UNION or kind == K_DATASEC or kind == K_ENUM64:
        out[0] = 12 * <uint64_t>vlen
    elif kind == K_ENUM or kind == K_FUNC_PROTO:
        out[0] = 8 * <uint64_t>vlen
    elif kind in (K_PTR, K_FWD, K_TYPEDEF, K_VOLATILE, K_CONST, K_RESTRICT, K_FUNC, K_FLOAT, K_TYPE_TAG):
        out[0] = 0
    else:
        return -1
    return 0


def btf_records(const uint8_t[::1] blob not None, Py_ssize_t pos, Py_ssize_t end, uint32_t names_len):
    """Walk the type section [pos, end): returns (positions, structs, others) as bytes
    of native u32 / u64 / u64 arrays.  ``positions[i]`` is where type id i+1 lies;
    ``structs`` holds ``name offset << 32 | type id`` of each named struct and union,
    ``others`` of each named typedef, enum, int and float.  Raises TableError naming
    the first record that does not fit (cut short, unknown kind, name outside the
    ``names_len`` bytes of the string section, data past the section)."""
    cdef uint64_t extra
    cdef uint32_t name_off, info, nid = 1
    cdef int kind = 0, err = 0
    cdef Growing at, structs, others
    if pos < 0 or end > blob.shape[0] or pos > end:
        raise ValueError("type section outside the blob")
    at.data = structs.data = others.data = NULL
    at.n = structs.n = others.n = at.cap = structs.cap = others.cap = 0
    try:
        with nogil:
            while pos < end:
                if pos + 12 > end:
                    err = 1
                    break
                name_off = rd32(&blob[pos])
                info = rd32(&blob[pos + 4])
                kind = (info >> 24) & 0x1F
                if extra_bytes(kind, info & 0xFFFF, &extra) < 0:
                    err = 2
                    break
                if name_off >= names_len:
                    err = 3
                    break
                if pos + 12 + <Py_ssize_t>extra > end:
                    err = 4
                    break
                if push(&at, <uint32_t>pos, 4):
                    err = 5
                    break
                if name_off and (kind == K_STRUCT or kind == K_UNION):
                    err = 5 * push(&structs, (<uint64_t>name_off << 32) | nid, 8)
                elif name_off and kind in (K_TYPEDEF, K_ENUM, K_ENUM64, K_INT, K_FLOAT):
                    err = 5 * push(&others, (<uint64_t>name_off << 32) | nid, 8)
                if err:
                    break
                nid += 1
                pos += 12 + <Py_ssize_t>extra
        if err == 5:
            raise MemoryError()
        if err:
            what = {1: "is cut short", 2: f"has an unknown kind {kind}",
                    3: "names a string outside the string section",
                    4: "has data running past the type section"}[err]
            raise TableError(f"type {nid} {what}")
        return (PyBytes_FromStringAndSize(at.data, at.n * 4),
                PyBytes_FromStringAndSize(structs.data, structs.n * 8),
                PyBytes_FromStringAndSize(others.data, others.n * 8))
    finally:
        free(at.data)
        free(structs.data)
        free(others.data)


def btf_enumerator(const uint8_t[::1] blob not None, const uint32_t[::1] at not None,
                   Py_ssize_t str0, Py_ssize_t str_end, bytes name not None):
    """The value of the first enumerator (in type id order) named ``name``, or None.
    Names are compared as strings of the string section [str0, str_end), so a BTF whose
    strings are not deduplicated reads alike.  ``at``: record positions as ``btf_records``
    gave (index 0 unused: id 0 is void)."""
    cdef Py_ssize_t i, n = at.shape[0], size = blob.shape[0], nlen = len(name), so
    cdef const char* want = name
    cdef uint32_t info, vlen, j
    cdef int kind, step
    cdef const uint8_t* e
    cdef int64_t value = 0
    cdef int hit = 0
    if str0 < 0 or str_end > size or str0 > str_end:
        raise ValueError("string section outside the blob")
    with nogil:
        for i in range(1, n):
            if <Py_ssize_t>at[i] + 12 > size:
                break
            info = rd32(&blob[at[i] + 4])
            kind = (info >> 24) & 0x1F
            if kind != K_ENUM and kind != K_ENUM64:
                continue
            vlen = info & 0xFFFF
            step = 8 if kind == K_ENUM else 12
            if <Py_ssize_t>at[i] + 12 + step * <Py_ssize_t>vlen > size:
                break
            for j in range(vlen):
                e = &blob[at[i] + 12 + step * j]
                so = str0 + <Py_ssize_t>rd32(e)
                if so + nlen >= str_end or memcmp(&blob[so], want, nlen) != 0 or blob[so + nlen] != 0:
                    continue
                if kind == K_ENUM:
                    value = <int32_t>rd32(e + 4)
                else:
                    value = <int64_t>((<uint64_t><int32_t>rd32(e + 8) << 32) | rd32(e + 4))
                hit = 1
                break
            if hit:
                break
    return value if hit else None
