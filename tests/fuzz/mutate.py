"""A small structure-blind but size-field-aware mutator (deterministic per seed).

Each mutant is one seed with 1..8 stacked edits: bit flips, random bytes,
"interesting" integers (0, -1, 2**31, 2**63, the input length, ...) written as
1/2/4/8-byte little-endian fields at aligned offsets, truncation, deletion,
insertion, duplication and splicing with another seed.  Half of all edits land
in the first 8 KiB, where every format keeps its headers and size fields.
"""

import random
import struct

INTERESTING = (0, 1, 2, 3, 4, 7, 8, 0x10, 0x20, 0x40, 0x7F, 0x80, 0xFF, 0x100, 0x1000, 0x7FFF, 0x8000,
               0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, 1 << 40, 1 << 52,
               (1 << 63) - 1, 1 << 63, (1 << 64) - 1, (1 << 64) - 4096)
HEAD = 8192


def _offset(rng, size, align=1):
    if size <= 0:
        return 0
    top = min(size, HEAD) if rng.random() < 0.5 else size
    off = rng.randrange(top)
    return off - off % align


def _int_field(rng, buf, seeds_len):
    width = rng.choice((1, 2, 4, 4, 8, 8))
    if len(buf) < width:
        return
    off = _offset(rng, len(buf) - width + 1, width if rng.random() < 0.8 else 1)
    r = rng.random()
    if r < 0.6:
        v = rng.choice(INTERESTING)
    elif r < 0.75:
        v = rng.choice((len(buf), len(buf) - 1, len(buf) + 1, seeds_len, len(buf) // 2, len(buf) * 8))
    elif r < 0.9:  # nudge the current value
        cur = int.from_bytes(buf[off:off + width], "little")
        v = cur + rng.choice((-4096, -8, -1, 1, 8, 4096, cur, -cur))
    else:
        v = rng.getrandbits(8 * width)
    buf[off:off + width] = (v % (1 << (8 * width))).to_bytes(width, "little")


def mutate(rng, data, others=()):
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        op = rng.random()
        n = len(buf)
        if op < 0.25 and n:
            off = _offset(rng, n)
            buf[off] ^= 1 << rng.randrange(8)
        elif op < 0.55:
            _int_field(rng, buf, len(data))
        elif op < 0.62 and n:
            off = _offset(rng, n)
            k = min(n - off, rng.choice((1, 2, 4, 16, 64)))
            buf[off:off + k] = rng.randbytes(k)
        elif op < 0.70 and n:   # truncate
            cut = rng.choice((rng.randrange(n), _offset(rng, n), n - rng.randrange(1, min(n, 5000) + 1)))
            del buf[max(cut, 0):]
        elif op < 0.78 and n:   # delete a chunk
            off = _offset(rng, n)
            del buf[off:off + rng.choice((1, 4, 8, 64, 512, 4096))]
        elif op < 0.85:         # insert
            off = _offset(rng, n + 1)
            buf[off:off] = rng.choice((bytes(rng.choice((1, 4, 8, 4096))), rng.randbytes(rng.choice((1, 3, 8, 100)))))
        elif op < 0.92 and n:   # duplicate a chunk elsewhere
            a = _offset(rng, n)
            chunk = bytes(buf[a:a + rng.choice((8, 24, 56, 64, 512))])
            b = _offset(rng, n)
            buf[b:b + len(chunk)] = chunk
        elif others:            # splice with another seed
            other = rng.choice(others)
            if other:
                cut = rng.randrange(max(1, min(len(buf), len(other))))
                buf[cut:] = other[cut:]
        else:
            off = _offset(rng, n) if n else 0
            buf[off:off + 1] = b"\0" if rng.random() < 0.5 else b"\xff"
    return bytes(buf)


def text_mutate(rng, data, others=()):
    """Line-aware edits for KEY=VALUE text (VMCOREINFO), then maybe a byte-level one."""
    lines = bytes(data).split(b"\n")
    for _ in range(rng.choice((1, 2, 3))):
        op = rng.random()
        i = rng.randrange(len(lines)) if lines else 0
        if op < 0.35 and lines:
            key = lines[i].split(b"=", 1)[0]
            val = rng.choice((b"", b"0", b"-1", b"0x", b"-0x10", b"ffffffffffffffffff", b"9" * 5000, b"1_0",
                              b"4096", b"65536", b"1099511627776", b"-4096", b"0x1p3", b" 12 ", b"\xff\xfe",
                              b"18446744073709551616", b"170141183460469231731687303715884105728",
                              str(rng.getrandbits(rng.choice((8, 32, 64, 80)))).encode(),
                              format(rng.getrandbits(64), "x").encode()))
            lines[i] = key + b"=" + val
        elif op < 0.5 and lines:
            del lines[i]
        elif op < 0.65:
            lines.insert(i, rng.choice((b"PAGESIZE=", b"NUMBER(", b"SYMBOL()=1", b"=x", b"SIZE(page)=0",
                                        b"OFFSET(page.flags)=99999999999", b"PAGESIZE=1", b"PAGESIZE=1099511627776",
                                        b"CRASHTIME=99999999999999999999999", b"\0", b"LENGTH(x)=-1"))
                                        + rng.choice((b"", b"1", b"=0")))
        elif op < 0.8 and lines:
            lines.insert(rng.randrange(len(lines) + 1), lines[i])  # duplicate: first wins
        else:
            return mutate(rng, b"\n".join(lines), others)
    return b"\n".join(lines)


def judge_mutate(rng, data, others=()):
    """Inputs are ``len(text) | VMCOREINFO text | metadata blob``: mutate one part."""
    n = int.from_bytes(data[:4], "little")
    text, blob = data[4:4 + n], data[4 + n:]
    if rng.random() < 0.3:
        text = text_mutate(rng, text)
    else:   # in place only: the blob is laid over fixed addresses
        m = mutate(rng, blob)
        blob = m[:len(blob)] + blob[len(m):] if rng.random() < 0.9 else m
    return struct.pack("<I", len(text)) + text + blob


def parts_mutate(rng, data, others=()):
    """Inputs are several files (``targets.pack_parts``): mutate one, sometimes swap two or
    take one from another seed (parts of different dumps)."""
    from .targets import pack_parts, unpack_parts
    parts = unpack_parts(data)
    if not parts:
        return mutate(rng, data, others)
    i = rng.randrange(len(parts))
    r = rng.random()
    if r < 0.1 and len(parts) > 1:
        j = rng.randrange(len(parts))
        parts[i], parts[j] = parts[j], parts[i]
    elif r < 0.2 and others:
        other = unpack_parts(rng.choice(others))
        if other:
            parts[i] = rng.choice(other)
    else:
        parts[i] = mutate(rng, parts[i])
    return pack_parts(parts)


MUTATORS = {"vmcoreinfo": text_mutate, "judge": judge_mutate, "reassemble": parts_mutate}


def mutator_for(target):
    return MUTATORS.get(target, mutate)


def mutant(target, seeds, index, base_seed=0):
    """The ``index``-th input of ``target``: deterministic from (base_seed, target, index)."""
    rng = random.Random(f"{base_seed}:{target}:{index}")
    seed = seeds[index % len(seeds)]
    if index < len(seeds):
        return seed
    return mutator_for(target)(rng, seed, seeds)


__all__ = ["mutate", "text_mutate", "judge_mutate", "parts_mutate", "mutant", "struct"]
