"""Fuzz targets: one function per parser, each taking the raw bytes of one input.

A target returns ``"ok"`` (the input was accepted and everything in it was read)
or ``"error"`` (a one-line FastdumpError).  Anything else it raises is a bug:
another exception type, an error message of more than one line, or a CLI run
that printed a traceback or an "internal error".  Hangs, crashes and runaway
memory are caught by the runner (``tests/fuzz/run.py``) around these functions.

Seeds are small real inputs built on the fly: synthetic vmcores (ELF64, ELF32,
PN_XNUM), their notes and VMCOREINFO, kdump-compressed dumps in every codec
(complete and incomplete), and a synthetic kernel's struct pages and page tables;
flattened streams and split parts from fastdump and makedumpfile, and dumps that
hold a kernel log of each printk generation.
"""

import contextlib
import io
import os
import struct
import tempfile
import threading

from fastdump.formats import elf
from fastdump.errors import EXIT_PARTIAL, FastdumpError
from fastdump.testing.generator import MiB, SyntheticVmcore, VmcoreSpec, make_vmcore

PAGE = 4096
#: pages read back per input at most (keeps each input in the millisecond range)
MAX_PAGES = 512


class Bug(AssertionError):
    """A target misbehaved on an input (not a FastdumpError, or a bad CLI answer)."""


def _one_line(e):
    text = str(e)
    if not text or "\n" in text:
        raise Bug(f"{type(e).__name__} message is not one line: {text!r}")
    return "error"


def _scratch_dir():
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="fastdump-fuzz-", dir=base)


_local = threading.local()


def _tmpfile(data, name="input"):
    d = getattr(_local, "dir", None)
    if d is None:
        d = _local.dir = _scratch_dir()
    path = os.path.join(d, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _clean(path):
    for p in (path, path + ".incomplete"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


# ------------------------------------------------------------------ seeds --

class Seeds:
    """Builds every seed once (about a second) in a private temp dir."""

    def __init__(self):
        self.dir = _scratch_dir()
        self._cache = {}

    def path(self, name):
        return os.path.join(self.dir, name)

    def vmcore(self, elfclass=elf.ELFCLASS64):
        key = ("vmcore", elfclass)
        if key not in self._cache:
            p = self.path(f"vmcore{elfclass}")
            make_vmcore(p, ram_ranges=[(0x1000, 0x9000), (0x100000, 0x100000 + 24 * PAGE + 100)],
                        kernel_text=(0x100000, 0x104000), seed=3, elfclass=elfclass, run_pages=3,
                        mix={"zero": 40, "text": 30, "pointers": 25, "random": 5})
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p + ".truth.json")
            self._cache[key] = open(p, "rb").read()
        return self._cache[key]

    def xnum_header(self):
        """An ELF64 header that uses PN_XNUM (count in section header 0's sh_info)."""
        data = bytearray(self.vmcore())
        ehdr = elf._EHDR[elf.ELFCLASS64]
        fields = list(ehdr.unpack_from(data))
        nph = fields[10]
        phoff = fields[5]
        shoff = phoff + nph * 56
        table = bytes(data[phoff:shoff])
        fields[6], fields[10], fields[11], fields[12] = shoff, elf.PN_XNUM, 64, 1
        head = ehdr.pack(*fields) + bytes(phoff - ehdr.size) + table
        return head + elf._SHDR[elf.ELFCLASS64].pack(0, 0, 0, 0, 0, 0, 0, nph, 0, 0)

    def elf_headers(self):
        out = []
        for cls in (elf.ELFCLASS64, elf.ELFCLASS32):
            data = self.vmcore(cls)
            h = elf.parse_header(lambda o, n: data[o:o + n], len(data))
            end = h.phoff + len(h.phdrs) * (56 if cls == elf.ELFCLASS64 else 32)
            out.append(data[:end])
        out.append(self.xnum_header())
        return out

    def note_segments(self):
        out = []
        for cls in (elf.ELFCLASS64, elf.ELFCLASS32):
            data = self.vmcore(cls)
            h = elf.parse_header(lambda o, n: data[o:o + n], len(data))
            p = [p for p in h.phdrs if p.type == elf.PT_NOTE][0]
            out.append(data[p.offset:p.offset + p.filesz])
        return out

    def vmcoreinfo_texts(self):
        from fastdump.sources.vmcore import ElfSource
        with ElfSource(self._vmcore_path()) as s:
            text = s.vmcoreinfo_note.desc
        jl = self.judge_parts()[0]
        return [text, jl, b"OSRELEASE=6.1.0\nPAGESIZE=4096\nSYMBOL(x)=ffffffff81000000\nNUMBER(y)=-5\n"
                b"OFFSET(page.flags)=0\nSIZE(page)=64\nLENGTH(zone.free_area)=11\nCRASHTIME=1700000000\n"
                b"KERNELOFFSET=1c000000\nNUMBER(phys_base)=-1000000\n"]

    def _vmcore_path(self):
        p = self.path("vmcore2")
        if not os.path.exists(p):
            self.vmcore()
        return p

    def kdumps(self):
        if "kdumps" not in self._cache:
            import fastdump
            from fastdump.formats import kdump
            src = self._vmcore_path()
            out = []
            for codec, level in (("zstd", 1), ("zlib", 1), ("lz4", 0), ("none", 1)):
                p = self.path(f"dump.{codec}")
                _clean(p)
                fastdump.dump(src, p, level=level, compress=codec)
                out.append(open(p, "rb").read())
            # an incomplete dump: header flag set, the last descriptors never written
            inc = bytearray(out[0])
            status_at = kdump.HEADER.offset("status")
            struct.pack_into("<I", inc, status_at, struct.unpack_from("<I", inc, status_at)[0]
                             | kdump.STATUS_INCOMPLETE)
            out.append(bytes(inc[:len(inc) - 3 * PAGE]))
            self._cache["kdumps"] = out
        return self._cache["kdumps"]

    def judge_layout(self):
        if "judge" not in self._cache:
            from fastdump.testing.kernel_layout import KernelLayout
            ram = [(0x1000, 0x9FC00), (MiB, 16 * MiB)]
            kt = (2 * MiB, 4 * MiB)
            layout = KernelLayout(ram, encoding="6.12", seed=5, kernel_text=kt)
            p = self.path("judge.vmcore")
            SyntheticVmcore(VmcoreSpec(ram_size=16 * MiB, ram_ranges=ram, sparse=True, kernel_text=kt),
                            layout=layout).write(p)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p + ".truth.json")
            writes = sorted((a, bytes(d)) for a, d in layout.metadata_writes())
            from fastdump.sources.vmcore import ElfSource
            with ElfSource(p) as s:
                text = s.vmcoreinfo_note.desc
            self._cache["judge"] = (p, writes, text)
        return self._cache["judge"]

    def judge_parts(self):
        _, writes, text = self.judge_layout()
        return text, writes

    def judge_inputs(self):
        text, writes = self.judge_parts()
        blob = b"".join(d for _, d in writes)
        return [struct.pack("<I", len(text)) + text + blob]

    def _fastdump(self, argv, stdout=None):
        """Run ``python3 -m fastdump ARGV`` once; ``stdout``: a file that gets what it prints."""
        import subprocess
        import sys
        with open(stdout, "wb") if stdout else contextlib.nullcontext() as out:
            subprocess.run([sys.executable, "-m", "fastdump", "--message-level", "4", *argv],
                           stdout=out or subprocess.DEVNULL, check=True)
        return stdout

    def makedumpfile_source(self):
        """A vmcore makedumpfile accepts (its page tables reach system_utsname), mostly zero pages."""
        p = self.path("mdf.vmcore")
        if not os.path.exists(p):
            make_vmcore(p, ram_size=64 * MiB, seed=7, mix={"zero": 97, "text": 2, "random": 1})
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p + ".truth.json")
        return p

    def _makedumpfile(self, args, stdout=None):
        """Run makedumpfile for a seed; False where it is not installed or fails (the seed is left out)."""
        import shutil
        import subprocess
        if not shutil.which("makedumpfile"):
            return False
        with open(stdout, "wb") if stdout else contextlib.nullcontext() as out:
            r = subprocess.run(["makedumpfile", *args], stdout=out or subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return r.returncode == 0

    def flat_streams(self):
        """Flattened streams: fastdump's (-z, -E) and makedumpfile's (-F -c)."""
        if "flat" not in self._cache:
            src = self._vmcore_path()
            out = [open(self._fastdump(["-F", *opts, src, "-"], stdout=self.path(f"flat{k}")), "rb").read()
                   for k, opts in enumerate((["-z", "-d", "1"], ["-E", "-d", "1"]))]
            theirs = self.path("flat.mdf")
            if self._makedumpfile(["-F", "-c", "-d", "1", self.makedumpfile_source()], stdout=theirs):
                out.append(open(theirs, "rb").read())
            self._cache["flat"] = out
        return self._cache["flat"]

    def split_parts(self):
        """Split dumps as one input each (``pack_parts``): fastdump's and makedumpfile's."""
        if "split" not in self._cache:
            src = self.makedumpfile_source()
            out = []
            for k, (tool, opts) in enumerate((("fastdump", ["-z", "-d", "1", "--splitblock-size", "4096"]),
                                              ("makedumpfile", ["-c", "-d", "1"]))):
                parts = [self.path(f"split{k}.{i}") for i in range(2)]
                for q in parts:
                    _clean(q)
                if tool == "fastdump":
                    self._fastdump(["--split", *opts, src, *parts])
                elif not self._makedumpfile(["--split", *opts, src, *parts]):
                    continue
                out.append(pack_parts([open(q, "rb").read() for q in parts]))
            self._cache["split"] = out
        return self._cache["split"]

    def printk_dumps(self):
        """Dumps that hold a kernel log (3 printk generations): kdump -d 31 and ELF -d 31 (mostly zero RAM)."""
        if "printk" not in self._cache:
            import fastdump
            from fastdump.testing.printk_layout import PrintkLayout
            out = []
            for kind, fmt in (("lockless", "kdump"), ("lockless", "elf"), ("structured", "elf"), ("plain", "kdump")):
                p = self.path(f"printk-{kind}")
                if not os.path.exists(p):
                    SyntheticVmcore(VmcoreSpec(ram_size=64 * MiB, sparse=True, mix={"zero": 1}),
                                    layout=PrintkLayout(None, kind=kind)).write(p)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(p + ".truth.json")
                d = f"{p}.{fmt}"
                _clean(d)
                fastdump.dump(p, d, level=31, format=fmt, compress="zstd" if fmt == "kdump" else "none")
                out.append(open(d, "rb").read())
            self._cache["printk"] = out
        return self._cache["printk"]

    def api_calls(self):
        """Encoded API calls (see ``t_api``): one per call, plus a few hostile keyword sets."""
        return [bytes([0]), bytes([1]), bytes([2]), bytes([0, 0, 5, 1, 9]), bytes([0, 8, 13, 4, 2]),
                bytes([2, 2, 3]), bytes([1, 0, 1])]

    def for_target(self, name):
        return {
            "elf_header": self.elf_headers,
            "elf_notes": self.note_segments,
            "elf_source": lambda: [self.vmcore(), self.vmcore(elf.ELFCLASS32), self.xnum_header()
                                   + self.vmcore()[len(self.xnum_header()):]],
            "vmcoreinfo": self.vmcoreinfo_texts,
            "kdump": self.kdumps,
            "cli_dump": lambda: [self.vmcore(), self.vmcore(elf.ELFCLASS32)],
            "cli_info": self.kdumps,
            "judge": self.judge_inputs,
            "verify": lambda: self.kdumps() + [self.vmcore()],
            "rearrange": self.flat_streams,
            "reassemble": self.split_parts,
            "convert": lambda: self.kdumps() + self.flat_streams()[:1],
            "dmesg": self.printk_dumps,
            "api": self.api_calls,
            "kernel_types": self.kernel_types,
        }[name]()


    def kernel_types(self):
        """The made-up kernel's kallsyms tables and BTF, one after the other (see t_kernel_types)."""
        from fastdump.testing.kernel_types import made_up_kernel
        seeds = []
        for rule in ("absolute-percpu", "relative", "place-relative"):
            _, layout = made_up_kernel(rule=rule)
            seeds.append(b"".join(data for _, data in layout.values()))
        return seeds


_seeds = None


def seeds():
    global _seeds
    if _seeds is None:
        _seeds = Seeds()
    return _seeds


# ----------------------------------------------------------------- targets --

def t_elf_header(data):
    try:
        for size in (len(data), None):
            h = elf.parse_header(lambda o, n: data[o:o + n], size)
            assert h.phdrs
        return "ok"
    except FastdumpError as e:
        return _one_line(e)


def t_elf_notes(data):
    try:
        notes = elf.parse_notes(data)
    except FastdumpError as e:
        return _one_line(e)
    for n in notes:
        if not n.offset <= n.desc_offset <= n.end <= len(data):
            raise Bug(f"note offsets out of order: {n.offset} {n.desc_offset} {n.end} size {len(data)}")
    return "ok"


def _read_all(d, max_pages=MAX_PAGES):
    d.describe()
    n = 0
    for pfn in d.pfns():
        page = d.read_pfn(pfn)
        if len(page) != d.page_size:
            raise Bug(f"read_pfn({pfn:#x}) returned {len(page)} bytes, page size {d.page_size}")
        n += 1
        if n >= max_pages:
            break
    return n


def t_elf_source(data):
    from fastdump.sources.opener import open_dump
    from fastdump.sources.vmcore import ElfSource
    from fastdump.kernel.utsname import read_utsname
    path = _tmpfile(data)
    try:
        with ElfSource(path) as s:
            _read_all(s)
            for a, b in s.present_runs()[:4]:
                s.read_phys(a * s.page_size, min(b - a, 4) * s.page_size, zero_fill=True)
            read_utsname(s)
        with open_dump(path) as d:
            _read_all(d, 8)
        return "ok"
    except FastdumpError as e:
        return _one_line(e)


def t_vmcoreinfo(data):
    from fastdump.kernel.vmcoreinfo import VmcoreInfo
    try:
        v = VmcoreInfo(data)
        v.summary()
        for prop in ("osrelease", "build_id", "page_size", "crashtime", "kerneloffset", "phys_base"):
            getattr(v, prop)
        for name in list(v.symbols)[:5]:
            v.symbol(name)
        return "ok"
    except FastdumpError as e:
        return _one_line(e)


def t_kdump(data):
    from fastdump.formats.kdump import KdumpReader
    from fastdump.commands.info import summary
    path = _tmpfile(data)
    try:
        with KdumpReader(path) as d:
            _read_all(d)
            d.bitmap1()
        summary(path)
        return "ok"
    except FastdumpError as e:
        return _one_line(e)


def _cli(argv, verdict=False):
    from fastdump.commands import cli
    err = io.StringIO()
    out = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = cli.main(argv)
    text = err.getvalue()
    lines = [x for x in text.splitlines() if x.strip()]
    if rc == 0:
        return "ok", out.getvalue()
    if verdict and rc == 1 and not text:   # verify: a FAILED verdict on stdout, nothing on stderr
        said = out.getvalue().splitlines()
        if len(said) != 1 or not said[0].startswith("FAILED: "):
            raise Bug(f"verify exit 1 with stdout {out.getvalue()[-300:]!r}")
        return "error", out.getvalue()
    if "Traceback" in text or "internal error" in text or len(lines) != 1 \
            or not lines[0].startswith("fastdump: error: "):
        raise Bug(f"exit {rc} with stderr {text.strip()[-400:]!r}")
    if rc == EXIT_PARTIAL:                  # written, without pages the input could not give
        return "partial", out.getvalue()
    return "error", out.getvalue()


CLI_VARIANTS = (["-z", "-d", "1"], ["-c", "-d", "0"], ["-E", "-d", "1"], ["--compress", "lz4", "-d", "31"],
                ["--compress", "none", "-d", "17"])


#: Inputs whose PT_LOADs span more pfns than this are not dumped to kdump files: correct
#: but slow, as kdump bitmaps grow with the address space, not the data.  ELF output
#: (no bitmaps) must stay bounded by the stored data, so it always runs.
BIG_PFNS = 1 << 26


def t_cli_dump(data):
    src = _tmpfile(data, "src")
    out = _tmpfile(b"", "out")
    _clean(out)
    from fastdump.sources.vmcore import ElfSource
    variant = CLI_VARIANTS[sum(data[:64:7]) % len(CLI_VARIANTS)]
    try:
        with ElfSource(src) as s:
            if s.max_pfn > BIG_PFNS and "-E" not in variant:
                return "big"
    except FastdumpError:
        pass   # the CLI must say so itself
    try:
        res, _ = _cli(["--message-level", "4", "--threads", "2", *variant, src, out])
        if res == "ok":
            from fastdump.sources.opener import open_dump
            with open_dump(out) as d:
                _read_all(d, 64)
        elif os.path.exists(out):
            raise Bug("a failed dump left a file under the final name")
        return res
    finally:
        _clean(out)


def t_cli_info(data):
    path = _tmpfile(data)
    res, _ = _cli(["info", path])
    return res


def t_verify(data):
    path = _tmpfile(data)
    src = seeds()._vmcore_path() if data[:4] == b"KDUM" and sum(data[:32]) % 2 else None
    res, out = _cli(["verify", "--threads", "2", path] + ([src] if src else []), verdict=True)
    verdict = out.strip().splitlines()
    if res == "ok" and (len(verdict) != 1 or not verdict[0].startswith("OK")):
        raise Bug(f"verify exit 0 but printed {out[-300:]!r}")
    if res == "ok":   # a dump verify passes must read back in full (and match the source it was given)
        from fastdump.sources.opener import open_dump
        from fastdump.sources.vmcore import ElfSource
        with open_dump(path) as d, contextlib.ExitStack() as stack:
            s = stack.enter_context(ElfSource(src)) if src else None
            try:
                for k, pfn in enumerate(d.pfns()):
                    page = d.read_pfn(pfn)
                    if s is not None and page != s.read_pfn(pfn):
                        raise Bug(f"verify passed but pfn {pfn:#x} differs from the source")
                    if k >= MAX_PAGES:
                        break
            except FastdumpError as e:
                raise Bug(f"verify passed a dump that does not read back: {e}") from None
    return res


def _read_back(path, decoded, max_pages=64):
    """A dump the CLI said it wrote is read back.  ``decoded``: the command wrote every page
    from decoded data, so all of it must read; a byte copy (-R, --reassemble) carries the
    input's damage along, so its output need only give one-line errors."""
    from fastdump.sources.opener import open_dump
    try:
        with open_dump(path) as d:
            _read_all(d, max_pages)
    except FastdumpError as e:
        if decoded:
            raise Bug(f"the command succeeded but its output does not read back: {e}") from None
        _one_line(e)


def _writes(argv, out, decoded):
    """Run a CLI command that writes ``out``: read back on success, nothing under the final name on failure."""
    _clean(out)
    try:
        res, _ = _cli(argv)
        if res in ("ok", "partial"):
            _read_back(out, decoded)
        elif os.path.exists(out):
            raise Bug("a failed command left a file under the final name")
        elif os.path.exists(out + ".incomplete"):   # what a failed run leaves must still be readable
            _read_back(out + ".incomplete", decoded=False)
        return res
    finally:
        _clean(out)


def t_rearrange(data):
    """``fastdump -R`` of a mutated flattened stream (fastdump's or makedumpfile's)."""
    stream = _tmpfile(data, "stream")
    return _writes(["-R", "--message-level", "4", "--from-device", stream, _tmpfile(b"", "out")],
                   os.path.join(os.path.dirname(stream), "out"), decoded=False)


def pack_parts(parts):
    """Several files as one fuzz input: a u32 count, u32 sizes, then the files."""
    return struct.pack(f"<{len(parts) + 1}I", len(parts), *map(len, parts)) + b"".join(parts)


def unpack_parts(data):
    if len(data) < 4:
        return []
    n = min(struct.unpack_from("<I", data)[0], 4, (len(data) - 4) // 4)
    sizes = struct.unpack_from(f"<{n}I", data, 4)
    parts, pos = [], 4 + 4 * n
    for size in sizes:
        parts.append(data[pos:pos + size])
        pos += size
    if parts:
        parts[-1] += data[pos:]
    return parts


def t_reassemble(data):
    """``fastdump --reassemble`` of mutated split parts (fastdump's or makedumpfile's)."""
    parts = [_tmpfile(p, f"part{i}") for i, p in enumerate(unpack_parts(data))]
    out = _tmpfile(b"", "out")
    if len(parts) < 2:
        return "error"
    return _writes(["--reassemble", "--message-level", "4", *parts, out], out, decoded=False)


def t_convert(data):
    """``fastdump convert`` of a mutated kdump dump or flattened stream, to kdump or ELF."""
    src = _tmpfile(data, "src")
    out = _tmpfile(b"", "out")
    variant = (["-d", "1", "-z"], ["-d", "1", "-E"], ["-d", "0", "--compress", "lz4"])[sum(data[:64:5]) % 3]
    return _writes(["convert", "--threads", "2", *variant, src, out], out, decoded=True)


def t_dmesg(data):
    """``fastdump dmesg`` of a mutated dump or vmcore holding a kernel log."""
    src = _tmpfile(data, "src")
    out = _tmpfile(b"", "log")
    _clean(out)
    try:
        res, _ = _cli(["dmesg", src, out])
        if res == "ok" and not os.path.isfile(out):
            raise Bug("dmesg succeeded but wrote no file")
        if res == "error" and os.path.exists(out):
            raise Bug("a failed dmesg left its output file")
        return res
    finally:
        _clean(out)


#: argument values ``t_api`` draws from: types and values a caller gets wrong
API_VALUES = (None, True, False, 0, 1, -1, 2, 16, 31, 32, 64, 1 << 70, -(1 << 63), 1.5, float("nan"), float("inf"),
              "", "x", "zstd", "elf", "kdump", "lzo", "0,31", "\0", b"", b"\xff", [], [0, 31], [64], {}, {"a": 1},
              (), object(), "raw:", "ssh://", "/", ".")
API_KEYS = ("level", "compress", "threads", "format", "progress", "force", "window_bytes", "use_mmap", "elf_class",
            "flat", "split", "dmesg", "split_block_pfns", "mem_map", "iomem", "vmcoreinfo_file", "direct_io",
            "targets", "stats_json")


@contextlib.contextmanager
def _chdir(path):
    """contextlib.chdir, which is Python 3.11+."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def t_api(data):
    """``fastdump.dump/open/verify`` with hostile arguments: a result or a one-line FastdumpError.

    The input encodes the call: byte 0 picks dump, open or verify; each later pair
    picks a keyword and its value (open and verify: the first value is the path).
    Paths are the seed vmcore, its ``pathlib.Path``, a missing file or a value
    above; an int "path" is never one of this process's open descriptors.  The
    call runs in a fresh private directory, where relative names land."""
    import pathlib
    import shutil

    import fastdump
    from fastdump.commands.verify import verify
    src = seeds()._vmcore_path()
    here = os.path.join(os.path.dirname(_tmpfile(b"")), "api")
    shutil.rmtree(here, ignore_errors=True)
    os.mkdir(here, 0o700)
    out = os.path.join(here, "out")
    call = data[0] % 3 if data else 0
    kwargs = {}
    for i in range(1, len(data) - 1, 2):
        value = API_VALUES[data[i + 1] % len(API_VALUES)]
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1000:
            value += 1000          # never an fd this process holds
        kwargs[API_KEYS[data[i] % len(API_KEYS)]] = value
    paths = (src, pathlib.Path(src), "missing", src.encode())
    path = paths[len(data) % len(paths)] if len(data) % 5 else next(iter(kwargs.values()), None)
    try:
        with _chdir(here), contextlib.redirect_stderr(io.StringIO()):
            if call == 0:
                fastdump.dump(src, out, **{"progress": "quiet", **kwargs})
            elif call == 1:
                fastdump.open(path).close()
            else:
                verify(path, threads=kwargs.get("threads"))
        return "ok"
    except FastdumpError as e:
        return _one_line(e)
    finally:
        shutil.rmtree(here, ignore_errors=True)


class PatchedSource:
    """An ElfSource whose physical memory has byte patches laid over it."""

    def __new__(cls, path, patches, vmcoreinfo):
        from fastdump.sources.vmcore import ElfSource

        class _Patched(ElfSource):
            def read_phys(self, addr, size, *, zero_fill=False):
                data = super().read_phys(addr, size, zero_fill=zero_fill)
                end = addr + size
                hit = [(a, d) for a, d in patches if a < end and a + len(d) > addr]
                if not hit:
                    return data
                buf = bytearray(data)
                for a, d in hit:
                    lo, hi = max(a, addr), min(a + len(d), end)
                    buf[lo - addr:hi - addr] = d[lo - a:hi - a]
                return bytes(buf)

        s = _Patched(path)
        s.vmcoreinfo = vmcoreinfo
        return s


def t_judge(data):
    """Classify every pfn of a synthetic kernel whose VMCOREINFO and metadata are mutated."""
    from fastdump.kernel.judge import bitmap_with_range, make_judge
    from fastdump.kernel.vmcoreinfo import VmcoreInfo
    path, writes, _ = seeds().judge_layout()
    if len(data) < 4:
        return "error"
    n = min(struct.unpack_from("<I", data)[0], len(data) - 4)
    text, blob = data[4:4 + n], data[4 + n:]
    patches, pos = [], 0
    for addr, orig in writes:
        piece = blob[pos:pos + len(orig)]
        patches.append((addr, piece + orig[len(piece):]))
        pos += len(orig)
    try:
        vi = VmcoreInfo(text)
    except FastdumpError as e:
        return _one_line(e)
    level = (31, 16, 8, 2, 1)[sum(blob[:32]) % 5]
    src = PatchedSource(path, patches, vi)
    try:
        judge = make_judge(src, level, warn=lambda m: None)
        for first, end in src.present_runs():
            a = first - first % 64
            for s in range(a, end, 1 << 13):
                e = min(end, s + (1 << 13))
                keep = bitmap_with_range(e - s, max(first, s) - s, e - s)
                before = bytes(keep)
                counts = judge.classify(s, e, keep)
                if any(k & ~b for k, b in zip(keep, before)):
                    raise Bug("classify set a keep bit that was clear")
                dropped = sum(bin(b & ~k).count("1") for k, b in zip(keep, before))
                if dropped != sum(v for k, v in counts.items() if k != "unclassified"):
                    raise Bug(f"classify cleared {dropped} bits but counted {counts}")
        return "ok"
    except FastdumpError as e:
        return _one_line(e)
    finally:
        src.close()


def t_kernel_types(data):
    """kallsyms + BTF of a made-up kernel, their bytes mutated: every question gets an answer
    or a one-line NotAvailable (``fastdump.kernel.types``)."""
    from fastdump.kernel.types.kernel import Kernel
    from fastdump.kernel.vmcoreinfo import VmcoreInfo
    from fastdump.testing.kernel_types import PageMemory, made_up_kernel
    rule = ("absolute-percpu", "relative", "place-relative")[len(data) % 3]
    text, layout = made_up_kernel(rule=rule)
    regions, pos = [], 0
    for va, orig in layout.values():
        piece = data[pos:pos + len(orig)]
        regions.append((va, piece + orig[len(piece):]))
        pos += len(orig)

    class Dump:
        machine = 62
        vmcoreinfo = VmcoreInfo(text)

    k = Kernel(Dump(), read=PageMemory(regions).read)
    k.available()
    verdict = "ok"
    for ask in (lambda: k.symbol("jiffies"), lambda: k.sizeof("page"), lambda: k.member("page", "high"),
                lambda: k.offsetof("per_cpu_pages", "lists"), lambda: k.member("page", "priv[1]")):
        try:
            ask()
        except FastdumpError as e:
            verdict = _one_line(e)
    return verdict


TARGETS = {
    "elf_header": t_elf_header,
    "elf_notes": t_elf_notes,
    "elf_source": t_elf_source,
    "vmcoreinfo": t_vmcoreinfo,
    "kdump": t_kdump,
    "cli_dump": t_cli_dump,
    "cli_info": t_cli_info,
    "verify": t_verify,
    "judge": t_judge,
    "rearrange": t_rearrange,
    "reassemble": t_reassemble,
    "convert": t_convert,
    "dmesg": t_dmesg,
    "api": t_api,
    "kernel_types": t_kernel_types,
}
