"""s3:// targets against a real single-node Ceph RGW on 127.0.0.1 (tests/rgw.py), no mock."""

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from fastdump.errors import EXIT_PARTIAL
from fastdump.formats.kdump import KdumpReader
from fastdump.sources.vmcore import ElfSource
from fastdump.targets.s3 import PART_SIZE
from fastdump.targets.s3client import Credentials, S3Client
from fastdump.testing.generator import GiB, MiB, SyntheticVmcore, VmcoreSpec, make_vmcore
from fastdump.testing.printk_layout import Msg, PrintkLayout, default_messages
from support import digests, elf_pages, fastdump_cli, kdumpfile_digests, makedumpfile
from test_unreadable import shim  # noqa: F401  (the EIO shim, a fixture)

FASTDUMP = [sys.executable, "-m", "fastdump"]
OOPS = [b"BUG: kernel NULL pointer dereference, address: 0000000000000008",
        b"Oops: 0000 [#1] PREEMPT SMP NOPTI",
        b"Call Trace:\n <TASK>\n ? show_regs+0x6d/0x80\n ext4_writepages+0x1a2/0x5c0 [ext4]\n"
        b" do_writepages+0xcf/0x1e0\n filemap_fdatawrite_wbc+0x63/0x90\n </TASK>"]


@pytest.fixture
def bucket(rgw):
    """A fresh bucket per test (names are never reused), emptied after it: the OSD keeps
    objects in memory."""
    name = f"fd-{uuid.uuid4().hex[:12]}"
    client(rgw).create_bucket(name)
    yield name
    c = client(rgw)
    for key, _ in list(c.list_objects(name)):
        c.request("DELETE", name, key, ok=(204,))
    _abort_open_uploads(rgw, name)


def client(rgw, **env):
    return S3Client(Credentials.load(rgw.env(**env)), retries=1)


def objects(rgw, bucket, prefix=""):
    return dict(client(rgw).list_objects(bucket, prefix))


def logged_vmcore(path, *, oops=True, crashtime=1764000000):
    """A small vmcore whose kernel log ends in the panic (after an oops with a call trace)."""
    msgs = default_messages(n=30)
    if oops:
        ts = msgs[-1].ts_nsec
        msgs[-2:-2] = [Msg(text, ts - 1000 + i, 900) for i, text in enumerate(OOPS)]
    spec = VmcoreSpec(ram_size=64 * MiB, crashtime=crashtime)
    SyntheticVmcore(spec, layout=PrintkLayout(None, messages=msgs)).write(str(path))
    return str(path)


@pytest.fixture(scope="module")
def oops_vmcore(tmp_path_factory):
    return logged_vmcore(tmp_path_factory.mktemp("oops") / "vmcore")


def run(rgw, *args, env=None, check=True):
    return fastdump_cli(*args, env=env or rgw.env(), check=check)


def test_dump_to_s3_is_page_exact_with_log_and_manifest(rgw, bucket, oops_vmcore, tmp_path):
    stats = tmp_path / "stats.json"
    r = run(rgw, "-c", "-d", "1", "--stats-json", str(stats), oops_vmcore, f"s3://{bucket}/crash/")
    for text in (r.stdout, r.stderr, stats.read_text()):       # never a secret in messages or statistics
        assert rgw.secret_key not in text and rgw.access_key not in text
    keys = objects(rgw, bucket, "crash/")
    (dump_key,) = [k for k in keys if k.endswith("/vmcore")]
    stem = dump_key[:-len("vmcore")]
    assert set(keys) == {dump_key, stem + "vmcore-dmesg.txt", stem + "manifest.json"}
    local = tmp_path / "vmcore"
    local.write_bytes(client(rgw).get_object(bucket, dump_key))
    source = elf_pages(oops_vmcore)
    fmt, got = kdumpfile_digests(str(local), max(source) + 1)
    assert fmt == "diskdump" and got == digests(source)
    makedumpfile("-d", "1", "-c", str(local), str(tmp_path / "refiltered"))   # opens it as it is, no -R
    log = client(rgw).get_object(bucket, stem + "vmcore-dmesg.txt").decode()
    assert "Kernel panic - not syncing: sysrq triggered crash" in log
    m = json.loads(client(rgw).get_object(bucket, stem + "manifest.json"))
    assert m["object"] == f"s3://{bucket}/{dump_key}" and m["bytes"] == keys[dump_key] == local.stat().st_size
    assert m["kernel_release"] and m["dump_level"] == 1 and m["codec"] == "zlib" and not m["incomplete"]
    assert m["panic"] == "Kernel panic - not syncing: sysrq triggered crash"
    assert m["frames"] == ["ext4_writepages", "do_writepages", "filemap_fdatawrite_wbc"]
    assert m["pages"]["kept"] + m["pages"]["zero"] == len(source)
    data, part = local.read_bytes(), m["part_size"]
    assert m["part_sha256"] == [hashlib.sha256(data[i:i + part]).hexdigest() for i in range(0, len(data), part)]


def test_no_dmesg_keeps_the_log_out_of_the_store(rgw, bucket, oops_vmcore):
    run(rgw, "-z", "-d", "1", "--no-dmesg", oops_vmcore, f"s3://{bucket}/")
    names = sorted(k.rsplit("/", 1)[1] for k in objects(rgw, bucket))
    assert names == ["manifest.json", "vmcore"]
    m = json.loads(client(rgw).get_object(bucket, [k for k in objects(rgw, bucket) if k.endswith(".json")][0]))
    assert m["log"] is None and m["panic"] is None


def test_every_part_boundary_holds(rgw, bucket, tmp_path):
    """A dump many parts long, uncompressed: the parts join into the exact file."""
    src = str(tmp_path / "big")
    make_vmcore(src, ram_size=160 * MiB, seed=3)
    run(rgw, "-d", "0", src, f"s3://{bucket}/")
    (key,) = [k for k in objects(rgw, bucket) if k.endswith("/vmcore")]
    assert objects(rgw, bucket)[key] > 20 * MiB            # several 5 MiB parts
    local = tmp_path / "vmcore"
    local.write_bytes(client(rgw).get_object(bucket, key))
    local_ref = tmp_path / "ref"
    fastdump_cli("-d", "0", src, str(local_ref))
    assert local.read_bytes() == local_ref.read_bytes()     # the header too: its final, complete one
    source = elf_pages(src)
    assert kdumpfile_digests(str(local), max(source) + 1)[1] == digests(source)


def _leftovers(rgw, bucket):
    """Objects other than a dump's three, and open uploads: what a run must not leave."""
    stray = [k for k in objects(rgw, bucket) if k.rsplit("/", 1)[-1] not in ("vmcore", "manifest.json",
                                                                             "vmcore-dmesg.txt")]
    return stray, _uploads(rgw, bucket)


def test_past_the_part_limit_segments_are_copied_in(rgw, bucket, tmp_path):
    """Limits made small (12 parts: 8 sent directly, then segments of 3 slices copied in as
    one part each): a 14-slice dump is stored whole, page-exact, as 8 + 2 parts (the ETag
    counts them), with no segment object or open upload left."""
    src = str(tmp_path / "vmcore.src")
    make_vmcore(src, ram_size=64 * MiB, seed=5)
    run(rgw, "-d", "0", src, f"s3://{bucket}/", env=rgw.env(FASTDUMP_TEST_S3_PARTS="12,8,3"))
    (key,) = [k for k in objects(rgw, bucket) if k.endswith("/vmcore")]
    size = objects(rgw, bucket)[key]
    slices = -(-size // (5 * MiB))
    assert 8 + 3 < slices <= 8 + 2 * 3            # one full segment, folded as it filled, and a short one
    assert client(rgw).head_object(bucket, key)["etag"].strip('"').endswith("-10")
    assert _leftovers(rgw, bucket) == ([], [])
    local, reference = tmp_path / "vmcore", tmp_path / "reference"
    local.write_bytes(client(rgw).get_object(bucket, key))
    fastdump_cli("-d", "0", src, str(reference))
    assert local.read_bytes() == reference.read_bytes()     # the header too: its final, complete one
    source = elf_pages(src)
    assert kdumpfile_digests(str(local), max(source) + 1)[1] == digests(source)
    m = json.loads(client(rgw).get_object(bucket, key[:-len("vmcore")] + "manifest.json"))
    data = local.read_bytes()
    assert m["part_sha256"] == [hashlib.sha256(data[i:i + 5 * MiB]).hexdigest() for i in range(0, size, 5 * MiB)]


def test_a_dump_past_every_segment_fails_cleanly_and_leaves_nothing(rgw, bucket, big_vmcore, tmp_path):
    """10 parts (8 direct, 2 segments of 3 slices: 70 MiB at most) and a 256 MiB dump: one
    line, segments deleted or aborted, no object, and the next target gets the dump."""
    local = tmp_path / "local"
    env = rgw.env(FASTDUMP_TEST_S3_PARTS="10,8,3")
    alone = run(rgw, "-d", "0", big_vmcore, f"s3://{bucket}/", env=env, check=False)
    assert alone.returncode != 0 and "Traceback" not in alone.stderr
    assert "outgrows 14 parts of 5 MiB" in alone.stderr.strip().splitlines()[-1]
    assert objects(rgw, bucket) == {} and _uploads(rgw, bucket) == []
    fallback = run(rgw, "-d", "0", big_vmcore, f"s3://{bucket}/", "--target", str(local), env=env)
    assert "outgrows" in fallback.stderr and local.exists()
    assert objects(rgw, bucket) == {} and _uploads(rgw, bucket) == []


def test_open_reads_a_dump_in_place_with_ranged_reads(rgw, bucket, oops_vmcore, tmp_path, monkeypatch):
    import fastdump
    from fastdump.sources import s3object
    run(rgw, "-d", "0", oops_vmcore, f"s3://{bucket}/")
    (key,) = [k for k in objects(rgw, bucket) if k.endswith("/vmcore")]
    size = objects(rgw, bucket)[key]
    for name, value in rgw.env().items():
        monkeypatch.setenv(name, value)
    source = elf_pages(oops_vmcore)
    with fastdump.open(f"s3://{bucket}/{key}") as d:
        assert d.format == "kdump" and not d.incomplete
        some = sorted(source)[::997]
        assert {pfn: d.read_pfn(pfn) for pfn in some} == {pfn: source[pfn] for pfn in some}
        assert d.ranged_reads * s3object.BLOCK < size / 2       # a few blocks, not the whole dump
        assert digests({pfn: d.read_pfn(pfn) for pfn in d.pfns()}) == digests(source)
    with pytest.raises(fastdump.FastdumpError, match="no such object"):
        fastdump.open(f"s3://{bucket}/nothing/vmcore")


def test_elf_dump_to_s3_is_page_exact(rgw, bucket, vmcore, source_pages, tmp_path):
    run(rgw, "-E", "-d", "1", vmcore, f"s3://{bucket}/")
    (key,) = [k for k in objects(rgw, bucket) if k.endswith("/vmcore")]
    local = tmp_path / "vmcore.elf"
    local.write_bytes(client(rgw).get_object(bucket, key))
    got = elf_pages(str(local))
    assert {p: d for p, d in got.items() if any(d)} == {p: d for p, d in source_pages.items() if any(d)}


@pytest.mark.parametrize("fault", ["bad secret", "unknown key", "missing bucket"])
def test_refused_upload_is_one_line_and_the_next_target_is_tried(rgw, bucket, vmcore, tmp_path, fault):
    env = {"bad secret": rgw.env(AWS_SECRET_ACCESS_KEY="wrong-" + rgw.secret_key),
           "unknown key": rgw.env(AWS_ACCESS_KEY_ID="NOSUCHKEY0000000000X")}.get(fault, rgw.env())
    target = f"s3://{'no-such-bucket-' + uuid.uuid4().hex[:6] if fault == 'missing bucket' else bucket}/p/"
    alone = run(rgw, "-z", "-d", "1", vmcore, target, env=env, check=False)
    assert alone.returncode != 0 and "Traceback" not in alone.stderr
    error = alone.stderr.strip().splitlines()[-1]
    expected = {"bad secret": "secret key does not match", "unknown key": "access key is not known",
                "missing bucket": "bucket does not exist"}[fault]
    assert expected in error and rgw.secret_key not in alone.stderr
    local = tmp_path / "local"
    fallback = run(rgw, "-z", "-d", "1", vmcore, target, "--target", str(local), env=env)
    assert expected in fallback.stderr and local.exists()
    if fault != "missing bucket":
        assert objects(rgw, bucket) == {}


def _uploads(rgw, bucket):
    import re
    data = client(rgw).request("GET", bucket, query={"uploads": ""})[2]
    return re.findall(rb"<Key>([^<]+)</Key>.*?<UploadId>([^<]+)</UploadId>", data, re.S)


def _abort_open_uploads(rgw, bucket):
    """Abort what a killed run left open (frees the OSD's memory); how many there were."""
    found = _uploads(rgw, bucket)
    for key, upload in found:
        client(rgw).abort_multipart(bucket, key.decode(), upload.decode())
    return len(found)


def _wait_for_upload(rgw, bucket, proc, timeout=60, key_holds=""):
    """Until a multipart upload of ``bucket`` (of a key holding ``key_holds``) has parts on the server."""
    c = client(rgw)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"fastdump ended before the upload started: {proc.communicate()}"
        for key, upload in _uploads(rgw, bucket):
            if key_holds.encode() not in key:
                continue
            _, _, parts = c.request("GET", bucket, key.decode(), query={"uploadId": upload.decode()})
            if b"<PartNumber>2</PartNumber>" in parts:
                return
        time.sleep(0.05)
    raise AssertionError("no upload with parts seen")


@pytest.fixture(scope="module")
def big_vmcore(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("big") / "vmcore")
    make_vmcore(path, ram_size=256 * MiB, seed=11)
    return path


def test_radosgw_killed_mid_upload_leaves_no_object_and_the_fallback_gets_the_dump(rgw, bucket, big_vmcore,
                                                                                 tmp_path):
    local = tmp_path / "local"
    proc = subprocess.Popen(FASTDUMP + ["-d", "0", big_vmcore, f"s3://{bucket}/crash/", "--target", str(local)],
                            env=rgw.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = _kill_rgw_mid_upload(rgw, bucket, proc)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "failed" in err and "trying" in err
    source = elf_pages(big_vmcore)
    assert kdumpfile_digests(str(local), max(source) + 1)[1] == digests(source)
    assert not [k for k in objects(rgw, bucket) if k.endswith("vmcore")]     # nothing complete-looking


def test_radosgw_restarted_mid_upload_the_run_completes(rgw, bucket, big_vmcore, tmp_path):
    """The upload lives in RADOS, not in radosgw: parts retried after a restart finish it."""
    proc = subprocess.Popen(FASTDUMP + ["-d", "0", big_vmcore, f"s3://{bucket}/crash/"], env=rgw.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_upload(rgw, bucket, proc)
        rgw.kill_rgw()
        rgw.start_rgw()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    (key,) = [k for k in objects(rgw, bucket) if k.endswith("/vmcore")]
    local = tmp_path / "vmcore"
    local.write_bytes(client(rgw).get_object(bucket, key))
    source = elf_pages(big_vmcore)
    assert kdumpfile_digests(str(local), max(source) + 1)[1] == digests(source)


class DroppingProxy:
    """A TCP relay to radosgw that cuts the first connection carrying more than ``after``
    bytes upstream (a reset, mid-request), then relays faithfully."""

    def __init__(self, port, after):
        import socket
        import threading
        self.target, self.after, self.dropped = port, after, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(conn, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, conn, False), daemon=True).start()

    def _pump(self, src, dst, upstream):
        import socket
        import struct
        sent = 0
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                sent += len(data)
                if upstream and not self.dropped and sent > self.after:
                    self.dropped += 1
                    for s in (src, dst):   # a reset, as a dropped link or a dying peer gives
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        s.close()
                    return
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.sock.close()


def test_dropped_connection_mid_part_is_retried(rgw, bucket, big_vmcore, tmp_path):
    proxy = DroppingProxy(rgw.port, after=12 * MiB)
    try:
        via_proxy = rgw.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}")
        run(rgw, "-d", "0", big_vmcore, f"s3://{bucket}/", env=via_proxy)
    finally:
        proxy.close()
    assert proxy.dropped == 1
    (key,) = [k for k in objects(rgw, bucket) if k.endswith("/vmcore")]
    local = tmp_path / "vmcore"
    local.write_bytes(client(rgw).get_object(bucket, key))
    source = elf_pages(big_vmcore)
    assert kdumpfile_digests(str(local), max(source) + 1)[1] == digests(source)


@pytest.mark.parametrize("layout", [None, "10000,2,1000"])
def test_interrupted_run_aborts_its_upload(rgw, bucket, big_vmcore, layout):
    """Server up, run stopped (SIGTERM, as a capture kernel's timeout does): the upload is
    aborted, so neither an object nor an open upload is left; with the limits made small, the
    run is stopped while it fills a segment, whose upload is aborted too."""
    import signal
    env = rgw.env(FASTDUMP_TEST_S3_PARTS=layout) if layout else rgw.env()
    proc = subprocess.Popen(FASTDUMP + ["-d", "0", big_vmcore, f"s3://{bucket}/crash/"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_upload(rgw, bucket, proc, key_holds=".segment-" if layout else "")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "Traceback" not in err and "aborted" in err, err
    assert objects(rgw, bucket) == {} and _uploads(rgw, bucket) == []


def test_endpoint_with_a_password_is_refused(rgw, vmcore):
    secret_url = rgw.endpoint.replace("http://", "http://me:hunter2@")
    r = run(rgw, "-z", vmcore, "s3://any-bucket/", env=rgw.env(AWS_ENDPOINT_URL=secret_url), check=False)
    assert r.returncode != 0 and "hunter2" not in r.stderr and "Traceback" not in r.stderr


def _kill_rgw_mid_upload(rgw, bucket, proc):
    """Stop radosgw once the run's upload has begun, start it again after the run; the
    upload must have been left open, never completed.  Returns the run's stderr."""
    try:
        _wait_for_upload(rgw, bucket, proc)
        rgw.kill_rgw()
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        rgw.start_rgw()
    assert _abort_open_uploads(rgw, bucket), "the killed upload should be left open, not completed"
    return err


def test_radosgw_killed_with_no_fallback_exits_non_zero(rgw, bucket, big_vmcore):
    proc = subprocess.Popen(FASTDUMP + ["-d", "0", big_vmcore, f"s3://{bucket}/crash/"], env=rgw.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = _kill_rgw_mid_upload(rgw, bucket, proc)
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert len(err.strip().splitlines()[-1]) < 400
    assert objects(rgw, bucket) == {}


def test_quota_smaller_than_the_dump_is_no_room(rgw, vmcore, tmp_path):
    uid = f"quota-{uuid.uuid4().hex[:6]}"
    access, secret = uid.upper().replace("-", "") + "KEY00000", uuid.uuid4().hex
    rgw.admin("user", "create", "--uid", uid, "--display-name", uid, "--access-key", access, "--secret", secret)
    rgw.admin("quota", "set", "--quota-scope=user", "--uid", uid, "--max-size=1048576")
    rgw.admin("quota", "enable", "--quota-scope=user", "--uid", uid)
    env = rgw.env(AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret)
    name = f"fd-{uid}"
    S3Client(Credentials.load(env)).create_bucket(name)
    alone = run(rgw, "-d", "0", vmcore, f"s3://{name}/", env=env, check=False)
    assert alone.returncode != 0 and "Traceback" not in alone.stderr
    assert "no room" in alone.stderr or "no space" in alone.stderr, alone.stderr
    assert "quota" in alone.stderr
    local = tmp_path / "local"
    run(rgw, "-d", "0", vmcore, f"s3://{name}/", "--target", str(local), env=env)
    assert local.exists()
    assert not [k for k in S3Client(Credentials.load(env)).list_objects(name) if k[0].endswith("vmcore")]


def test_existing_dump_is_not_replaced_without_force(rgw, bucket):
    from fastdump.errors import TargetError
    from fastdump.targets.kinds import parse_target
    when = time.localtime(1_700_000_000)
    key = "crash/host1-" + time.strftime("%Y-%m-%d-%H:%M:%S", when) + "/vmcore"
    client(rgw).put_object(bucket, key, b"an earlier dump")
    os.environ.update(rgw.env())
    target = parse_target(f"s3://{bucket}/crash")
    with pytest.raises(TargetError, match="exists"):
        target.open(host="host1", when=when, flat=False, force=False)
    sink = target.open(host="host1", when=when, flat=False, force=True)
    sink.abandon()
    assert client(rgw).get_object(bucket, key) == b"an earlier dump"


def test_credentials_file_must_be_private(rgw, bucket, vmcore, tmp_path):
    creds = tmp_path / "s3.credentials"
    creds.write_text(f"[default]\naws_access_key_id = {rgw.access_key}\n"
                     f"aws_secret_access_key = {rgw.secret_key}\nendpoint_url = {rgw.endpoint}\n"
                     "region = default\n")
    os.chmod(creds, 0o644)
    config = tmp_path / "fastdump.toml"
    config.write_text(f'targets = ["s3://{bucket}/"]\ns3_credentials = "{creds}"\ncompress = "zstd"\n'
                      f'dump_level = [1]\nsource = "{vmcore}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    r = fastdump_cli("--settings", str(config), env=env, check=False)
    assert r.returncode != 0 and "readable by others" in r.stderr and "Traceback" not in r.stderr
    os.chmod(creds, 0o600)
    fastdump_cli("--settings", str(config), env=env)
    assert [k for k in objects(rgw, bucket) if k.endswith("/vmcore")]


def test_list_groups_by_panic_signature_newest_first(rgw, bucket, tmp_path):
    runs = [("old-oops", True, 1764000000), ("sysrq", False, 1764100000), ("new-oops", True, 1764200000)]
    for name, oops, when in runs:
        run(rgw, "-z", "-d", "1", logged_vmcore(tmp_path / name, oops=oops, crashtime=when),
            f"s3://{bucket}/fleet/")
        time.sleep(1.1)       # one directory per second and host, as kdump-utils names them
    client(rgw).put_object(bucket, "fleet/bare-2026-01-01-00:00:00/vmcore", b"KDUMP   ")   # no manifest
    groups = json.loads(run(rgw, "list", f"s3://{bucket}/fleet", "--json").stdout)
    assert [[d.get("crash_time") for d in g["dumps"]] for g in groups] == [
        ["2025-11-26T23:33:20Z", "2025-11-24T16:00:00Z"], ["2025-11-25T19:46:40Z"], [None]]
    oops, sysrq, bare = groups
    assert oops["dumps"][0]["frames"] == ["ext4_writepages", "do_writepages", "filemap_fdatawrite_wbc"]
    assert sysrq["dumps"][0]["panic"] == "Kernel panic - not syncing: sysrq triggered crash"
    assert bare["signature"] is None and bare["dumps"][0]["bytes"] == 8
    text = run(rgw, "list", f"s3://{bucket}/fleet/").stdout
    assert text.index("ext4_writepages | do_writepages") < text.index("sysrq triggered crash")
    assert text.count("/vmcore") == 4
    bad = run(rgw, "list", "s3://x/", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_the_cluster_listens_on_loopback_only(rgw):
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    pids = {p.pid for p in rgw.procs.values()}
    ours = [line.split()[3] for line in out.splitlines() if any(f"pid={pid}," in line for pid in pids)]
    assert len(ours) >= 3 and all(addr.startswith("127.0.0.1:") for addr in ours), ours


def test_https_is_verified_against_the_ca_bundle(rgw, bucket, vmcore):
    """TLS is checked: a certificate the system's CAs did not sign is refused (one line,
    non-zero); with ``AWS_CA_BUNDLE`` naming its CA the same upload goes through."""
    env = {k: v for k, v in rgw.env(AWS_ENDPOINT_URL=rgw.https_endpoint).items() if "SSL_CERT" not in k}
    r = run(rgw, "-z", "-d", "31", vmcore, f"s3://{bucket}/", check=False, env=env)
    assert r.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in r.stderr and "Traceback" not in r.stderr
    run(rgw, "-z", "-d", "31", vmcore, f"s3://{bucket}/", env=rgw.env(AWS_ENDPOINT_URL=rgw.https_endpoint,
                                                                       AWS_CA_BUNDLE=rgw.ca))
    assert [k for k in objects(rgw, bucket) if k.endswith("/vmcore")]


def test_capture_image_uploads_over_https_with_its_own_client_and_ca_bundle(rgw, bucket, vmcore, source_pages,
                                                                           tmp_path, monkeypatch):
    """``fastdump initrd`` (and the dracut module: one file list, deploy/payload.py) packs the
    s3:// client and the CA bundle this machine trusts, where the packed OpenSSL reads it by
    default: the image's fastdump, alone in a chroot of it with no SSL_CERT_* set, uploads over
    https to a server whose certificate only that bundle vouches for."""
    from test_initrd import build_image, in_image
    monkeypatch.setenv("SSL_CERT_FILE", rgw.ca)          # what the building machine trusts
    root = build_image(tmp_path)
    subprocess.run(["cp", vmcore, str(root / "vmcore")], check=True)
    env = {k: v for k, v in rgw.env(AWS_ENDPOINT_URL=rgw.https_endpoint).items() if "SSL_CERT" not in k}
    r = subprocess.run(in_image(root, ["/usr/bin/fastdump", "-z", "-d", "31", "/vmcore", f"s3://{bucket}/fleet/"]),
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    keys = objects(rgw, bucket, "fleet/")
    (key,) = [k for k in keys if k.endswith("/vmcore")]
    assert key[:-len("vmcore")] + "manifest.json" in keys
    local = tmp_path / "vmcore.kdump"
    local.write_bytes(client(rgw).get_object(bucket, key))
    fmt, pages = kdumpfile_digests(str(local), max(source_pages) + 1)
    assert fmt == "diskdump" and pages and pages == digests({p: source_pages[p] for p in pages})


# -- the header and bitmaps: sent as soon as final, rebuilt when changed, never all held -----------

#: the most part buffers an s3:// dump holds at once, whatever the RAM: the part with the header,
#: one each for the two bitmaps being written, the one shared by the bitmaps' end and the
#: descriptor table, one each for the descriptors (which carry the page checksums) and page data
HELD_BOUND = 6 * PART_SIZE


def spread_vmcore(path, top):
    """RAM at both ends of ``top`` bytes of address space and none between: bitmaps as large
    as a machine with that much memory has (``top`` / 32 Ki each: 32 MiB at 1 TiB), a dump of
    under 100 MiB.  Returns (path, the pfn ranges of its memory, as kdumpfile_pages takes them)."""
    low, high = (1 * MiB, 64 * MiB), (top - 32 * MiB, top)
    make_vmcore(path, ram_size=96 * MiB, ram_ranges=[(0x1000, 0x9FC00), low, high], sparse=True, seed=13)
    return path, f"0:{low[1] >> 12},{high[0] >> 12}:{high[1] >> 12}"


@pytest.fixture(scope="module")
def tib_vmcore(tmp_path_factory):
    return spread_vmcore(str(tmp_path_factory.mktemp("tib") / "vmcore"), 1024 * GiB)


def _dump_key(rgw, bucket):
    (key,) = [k for k in objects(rgw, bucket) if k.endswith("/vmcore")]
    return key


@pytest.mark.parametrize("top", [64 * GiB, 1024 * GiB])
def test_held_bytes_stay_bounded_whatever_the_memory(rgw, bucket, tmp_path, top):
    """At 1 TiB the two bitmaps are 64 MiB: more than the sink may hold (it held all of
    them until the end before).  The dump is still page-exact."""
    src, pfns = spread_vmcore(str(tmp_path / "vmcore"), top)
    run(rgw, "-c", "-d", "1", src, f"s3://{bucket}/")
    key = _dump_key(rgw, bucket)
    m = json.loads(client(rgw).get_object(bucket, key[:-len("vmcore")] + "manifest.json"))
    local = tmp_path / "got"
    local.write_bytes(client(rgw).get_object(bucket, key))
    dump = KdumpReader(str(local))
    bitmaps = 2 * dump.bitmap_len
    assert bitmaps == top >> 14
    assert not dump.incomplete              # part 1, sent early, went again with the final header
    assert 0 < m["buffer_peak_bytes"] <= HELD_BOUND, (m["buffer_peak_bytes"] >> 20, bitmaps >> 20)
    assert kdumpfile_digests(str(local), pfns)[1] == digests(elf_pages(src))


def test_unreadable_page_in_a_bitmap_part_sent_early_is_rebuilt(rgw, bucket, tib_vmcore, tmp_path,
                                                                 shim):  # noqa: F811 (the fixture imported)
    """Pages that give EIO lose their 2nd-bitmap bits after that part of the bitmap went up:
    the part is sent again, rebuilt, and the dump equals the file target's, byte for byte."""
    src, pfns = tib_vmcore
    bad = [0x2000, 0x2001, 0x2005]
    with ElfSource(src) as s:
        start, _, off = [e for e in s.extents if e[0] <= bad[0] << 12 < e[1]][0]
    env = dict(LD_PRELOAD=shim, EIO_FILE=os.path.realpath(src), EIO_START=str(off + (bad[0] << 12) - start),
               EIO_LEN=str((bad[-1] - bad[0] + 1) * 4096))
    args = ["-c", "-d", "1", "--non-mmap", src]
    for target, environ in ((f"s3://{bucket}/", rgw.env(**env)), (str(tmp_path / "file"), dict(os.environ, **env))):
        r = run(rgw, *args, target, env=environ, check=False)
        assert r.returncode == EXIT_PARTIAL and "Traceback" not in r.stderr, r.stderr
    local = tmp_path / "got"
    local.write_bytes(client(rgw).get_object(bucket, _dump_key(rgw, bucket)))
    dump = KdumpReader(str(local))
    part = (dump.bitmap2_off + (bad[0] >> 3)) // PART_SIZE + 1
    assert 1 < part < dump.desc_off // PART_SIZE + 1       # neither the header's part nor the held one
    assert local.read_bytes() == (tmp_path / "file").read_bytes()   # the header part, sent again at the end, too
    source = digests(elf_pages(src))
    lost = set(range(bad[0], bad[-1] + 1))
    assert kdumpfile_digests(str(local), pfns)[1] == {p: d for p, d in source.items() if p not in lost}


def test_radosgw_killed_after_the_bitmaps_went_up_leaves_no_object(rgw, bucket, tib_vmcore):
    """Parts of the bitmaps are in the upload from the start; killed mid-run, it stays an
    open upload, never an object."""
    proc = subprocess.Popen(FASTDUMP + ["-d", "1", tib_vmcore[0], f"s3://{bucket}/crash/"], env=rgw.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = _kill_rgw_mid_upload(rgw, bucket, proc)
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert objects(rgw, bucket) == {}


@pytest.mark.parametrize("value", ["5,8,3", "10,-1,3", "0,0,0", "10,8,0", "20000,8,3", "10,8,2000", "a,b,c"])
def test_the_test_part_limits_are_checked_up_front(value):
    """FASTDUMP_TEST_S3_PARTS outside what S3 allows is a usage error before any upload
    starts, not a failure half way through one."""
    from fastdump.errors import UsageError
    from fastdump.targets.s3 import limits_from_env
    with pytest.raises(UsageError):
        limits_from_env({"FASTDUMP_TEST_S3_PARTS": value})
    assert limits_from_env({"FASTDUMP_TEST_S3_PARTS": "12,8,3"}) == {"max_parts": 12, "direct_parts": 8,
                                                                    "segment_parts": 3}
