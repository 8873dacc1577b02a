"""--direct-io: the same bytes as a buffered write, without filling the page cache."""

import filecmp
import os

import pytest

import fastdump
from fastdump.targets.sinks import DirectFileSink
from support import fastdump_cli


@pytest.mark.parametrize("args", [["-z", "-d", "1"], ["-c", "-d", "0"], ["-E", "-d", "1"]])
def test_direct_io_writes_the_same_file(vmcore, tmp_path, args):
    a, b = str(tmp_path / "buffered"), str(tmp_path / "direct")
    fastdump_cli(*args, vmcore, a)
    fastdump_cli(*args, "--direct-io", vmcore, b)
    assert filecmp.cmp(a, b, shallow=False)


def test_direct_sink_streams_patches_and_unaligned_heads(tmp_path):
    """Interleaved sequential streams, an unaligned stream start, small patches into
    bytes still buffered and into bytes already written."""
    path = str(tmp_path / "f")
    sink = DirectFileSink(path)
    if sink.dfd < 0:
        pytest.fail(f"O_DIRECT refused on {tmp_path}: {sink.direct_error}")
    expect = bytearray(5 << 20)
    sink.barrier()                         # what follows is page data: streamed
    rng = __import__("random").Random(1)
    a, b = 8192, (3 << 20) + 100           # a: aligned stream, b: unaligned one
    for _ in range(300):
        for pos_name in ("a", "b"):
            n = rng.randrange(1, 9000)
            data = rng.randbytes(n)
            pos = a if pos_name == "a" else b
            if pos + n > len(expect):
                continue
            sink.pwrite(data, pos)
            expect[pos:pos + n] = data
            if pos_name == "a":
                a += n
            else:
                b += n
    for off in (8192 + 10, b - 50, 100):    # patches: flushed region, pending buffer, header
        sink.pwrite(b"PATCH", off)
        expect[off:off + 5] = b"PATCH"
    sink.commit()
    with open(path, "rb") as f:
        got = f.read()
    assert got == bytes(expect[:len(got)]) and len(got) == max(a, b)
    assert sink.direct_bytes > 0
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_direct_io_survives_a_filesystem_without_o_direct(vmcore, tmp_path):
    out = "/dev/shm/fastdump-direct-test"
    try:
        fastdump_cli("-z", "-d", "1", "--direct-io", "-f", vmcore, out)
        with fastdump.open(out) as d:
            assert not d.incomplete
    finally:
        if os.path.exists(out):
            os.unlink(out)


def test_direct_io_reaches_the_o_direct_sink(vmcore, tmp_path, monkeypatch):
    """The option is wired through: page data really goes through O_DIRECT writes."""
    made = []
    real_commit = DirectFileSink.commit

    def spy(self):
        made.append(self.direct_bytes)
        return real_commit(self)
    monkeypatch.setattr(DirectFileSink, "commit", spy)
    fastdump.dump(vmcore, str(tmp_path / "d"), level=1, compress="zstd", direct_io=True)
    fastdump.dump(vmcore, str(tmp_path / "b"), level=1, compress="zstd")
    assert len(made) == 1 and made[0] > 1 << 20
