"""mmapprobe.py [VMCORE]: which mmap windows of /proc/vmcore fail, per PT_LOAD chunk.

Diagnostic run for the capture kernel: maps every 4 MiB-aligned window of the
file (as a reader with fixed windows would) and, separately, windows clipped to
the chunk ends, and prints the failures with their file offsets.
"""
import errno, mmap, os, struct, sys

path = sys.argv[1] if len(sys.argv) > 1 else "/proc/vmcore"
W = 4 << 20
fd = os.open(path, os.O_RDONLY)
hdr = os.pread(fd, 64, 0)
phoff, = struct.unpack_from("<Q", hdr, 32)
phnum, = struct.unpack_from("<H", hdr, 56)
ph = os.pread(fd, 56 * phnum, phoff)
chunks = []
for i in range(phnum):
    typ, flags, off, vaddr, paddr, filesz = struct.unpack_from("<IIQQQQ", ph, 56 * i)
    print("phdr %d type %d off %#x paddr %#x filesz %#x" % (i, typ, off, paddr, filesz))
    if typ == 1:
        chunks.append((off & ~4095, (off + filesz + 4095) & ~4095))
size = max(e for _, e in chunks)


def try_map(off, length):
    try:
        m = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ, offset=off)
        m[0]; m[length - 1]
        m.close()
        return None
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


fails = []
off = 0
while off < size:
    r = try_map(off, min(W, size - off))
    if r:
        fails.append((off, r))
    off += W
print("aligned windows: %d failures" % len(fails))
for off, r in fails[:20]:
    inside = [c for c in chunks if c[0] < off + W and c[1] > off]
    print("  FAIL %#x..%#x %s chunks %s" % (off, off + W, r, [(hex(a), hex(b)) for a, b in inside]))
cfails = 0
for a, b in chunks:
    off = a
    while off < b:
        n = min(W - (off % W), b - off)
        r = try_map(off & ~4095, n)
        if r:
            cfails += 1
            if cfails <= 10:
                print("  clipped FAIL %#x len %#x %s" % (off, n, r))
        off += n
print("clipped windows: %d failures" % cfails)


# Variants closer to a multi-window reader.
for W2 in (8 << 20, 16 << 20, 64 << 20):
    fails = []
    off = 0
    while off < size:
        r = try_map(off, min(W2, size - off))
        if r:
            fails.append((hex(off), r))
        off += W2
    print("aligned %d MiB windows: %d failures %s" % (W2 >> 20, len(fails), fails[:5]))

# two live mappings (as two worker threads), 4 MiB windows, the second one 2 MiB behind
live, fails = [], []
off = 0
while off < size:
    for o in (off, max(0, off - (2 << 20))):
        ln = min(W, size - o)
        try:
            m = mmap.mmap(fd, ln, mmap.MAP_SHARED, mmap.PROT_READ, offset=o)
            m[0]; m[ln - 1]
            live.append(m)
        except OSError as e:
            fails.append((hex(o), errno.errorcode.get(e.errno)))
    while len(live) > 2:
        live.pop(0).close()
    off += W
print("overlapping live windows: %d failures %s" % (len(fails), fails[:5]))
