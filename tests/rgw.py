"""A real single-node Ceph RGW on 127.0.0.1 for the s3:// tests (no mock).

One monitor, one OSD (memstore: nothing on disk, starts in a second), radosgw
with its beast frontend, no manager.  Authentication is ``none`` inside the
cluster; S3 requests are signed as usual with a user made by radosgw-admin.
Every daemon runs in its own session (``setsid``) and is stopped by its pid;
every file lives under one temporary directory.  Debian's ceph-mon, ceph-osd,
radosgw and ceph-common are installed by ``.ci/setup-host``.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

from support import need_tool, stop_process

HOST = "127.0.0.1"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def osd_class_dir():
    """The OSD's object classes (cls_rgw, cls_version, ...: radosgw calls them on every
    start).  Debian 13's Ceph 18 ships the default as a relative path,
    ``lib/x86_64-linux-gnu/rados-classes``, which the OSD resolves against its working
    directory: anywhere but ``/`` it loads no class and radosgw fails with EOPNOTSUPP
    ("Couldn't init storage provider (RADOS)").  Made absolute under the install prefix."""
    r = subprocess.run(["ceph-osd", "-c", "/dev/null", "--show-config-value", "osd_class_dir"],
                       capture_output=True, text=True, timeout=30)
    path = r.stdout.strip()
    if not os.path.isabs(path):
        path = os.path.join("/usr", path)
    if not os.path.isfile(os.path.join(path, "libcls_rgw.so")):
        raise AssertionError(f"no RADOS object classes in {path!r} (ceph-osd said {r.stdout + r.stderr!r})")
    return path


def make_tls(d):
    """A throwaway CA and a certificate for 127.0.0.1 it signs: radosgw's https endpoint."""
    openssl = need_tool("openssl")
    ca, ca_key, cert, key, csr = (os.path.join(d, n) for n in ("ca.pem", "ca.key", "rgw.pem", "rgw.key", "rgw.csr"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for argv in ([openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
                  "-subj", "/CN=fastdump test CA", "-addext", "basicConstraints = critical, CA:TRUE",
                  "-addext", "keyUsage = critical, keyCertSign, cRLSign"],   # Python 3.13 verifies strictly
                 [openssl, "req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={HOST}"]):
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write(f"subjectAltName = IP:{HOST}\nbasicConstraints = critical, CA:FALSE\n"
                "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
                "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n")
    subprocess.run([openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                    "-out", cert, "-days", "2", "-extfile", ext], check=True, capture_output=True, timeout=60)
    return ca, cert, key


class Rgw:
    """The cluster: ``start()``, then ``endpoint``, ``env()``, ``admin(...)``; ``stop()``."""

    def __init__(self):
        for tool in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph"):
            need_tool(tool)
        self.base = tempfile.mkdtemp(prefix="fdtest-rgw-")
        self.procs = {}
        self.mon_port, self.port, self.tls_port = free_port(), free_port(), free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self.https_endpoint = f"https://{HOST}:{self.tls_port}"     # its certificate: signed by ``self.ca``
        self.ca, cert, key = make_tls(self.base)
        self.conf = os.path.join(self.base, "ceph.conf")
        self.fsid = str(uuid.uuid4())
        self.access_key, self.secret_key = "FDTESTACCESSKEY00001", uuid.uuid4().hex
        b = self.base
        with open(self.conf, "w") as f:
            f.write(f"""[global]
fsid = {self.fsid}
mon host = v2:{HOST}:{self.mon_port}
public addr = {HOST}
cluster addr = {HOST}
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
paxos propose interval = 0.05
mon allow pool delete = true
mon data avail warn = 1
mon data avail crit = 0
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd objectstore = memstore
osd class dir = {osd_class_dir()}
memstore device bytes = 4294967296
run dir = {b}/run
admin socket = {b}/run/$name.asok
log file = {b}/log/$name.log
mon data = {b}/mon/$id
osd data = {b}/osd/$id
keyring = {b}/keyring
[client.rgw.fdtest]
rgw frontends = beast endpoint={HOST}:{self.port} ssl_endpoint={HOST}:{self.tls_port} ssl_certificate={cert} ssl_private_key={key}
rgw data = {b}/rgw
rgw dns name = {HOST}
""")
        for d in ("run", "log", "mon/a", "osd/0", "rgw"):
            os.makedirs(os.path.join(b, d), exist_ok=True)

    def _run(self, *argv, timeout=60):
        r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed: {(r.stdout + r.stderr).strip()[-1500:]}")
        return r.stdout

    def _daemon(self, name, argv):
        log = open(os.path.join(self.base, "log", f"{name}.out"), "ab")
        self.procs[name] = subprocess.Popen([*argv, "-f", "-c", self.conf], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)   # setsid

    def ceph(self, *args):
        return self._run("ceph", "-c", self.conf, *args)

    def admin(self, *args):
        """radosgw-admin, its JSON answer parsed (or None)."""
        out = self._run("radosgw-admin", "-c", self.conf, "-n", "client.rgw.fdtest", *args)
        return json.loads(out) if out.strip().startswith(("{", "[")) else None

    def start(self):
        t0 = time.monotonic()
        monmap = os.path.join(self.base, "monmap")
        self._run("monmaptool", "--create", "--fsid", self.fsid, "--addv", "a", f"[v2:{HOST}:{self.mon_port}]", monmap)
        self._run("ceph-mon", "-c", self.conf, "--mkfs", "-i", "a", "--monmap", monmap)
        self._daemon("mon", ["ceph-mon", "-i", "a"])
        osd_uuid = str(uuid.uuid4())
        osd_id = self.ceph("osd", "new", osd_uuid).strip()
        self._run("ceph-osd", "-c", self.conf, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
        self._daemon("osd", ["ceph-osd", "-i", osd_id])
        self.start_rgw()
        self.admin("user", "create", "--uid", "fdtest", "--display-name", "fastdump tests",
                   "--access-key", self.access_key, "--secret", self.secret_key)
        self.start_seconds = time.monotonic() - t0
        return self

    def start_rgw(self, timeout=90):
        self._daemon("rgw", ["radosgw", "-n", "client.rgw.fdtest"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs["rgw"].poll() is not None:
                raise AssertionError(f"radosgw exited: {self.log_tail('rgw')}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=2).read()
                return
            except urllib.error.HTTPError:
                return            # it answers (403 anonymous is fine)
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"radosgw did not answer within {timeout} s: {self.log_tail('rgw')}")

    def kill_rgw(self):
        """SIGKILL radosgw by its pid (mid-upload faults)."""
        p = self.procs.pop("rgw", None)
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(timeout=30)

    def log_tail(self, name):
        path = os.path.join(self.base, "log", f"{name}.out")
        try:
            with open(path, errors="replace") as f:
                return f.read()[-1500:]
        except OSError:
            return ""

    def env(self, **extra):
        """The environment a fastdump run gets: credentials and endpoint, as every S3 tool takes them."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key,
                   AWS_ENDPOINT_URL=self.endpoint, AWS_DEFAULT_REGION="default")
        env.update(extra)
        return env

    def stop(self):
        for name in ("rgw", "osd", "mon"):
            p = self.procs.pop(name, None)
            if p is not None:
                stop_process(p)
        shutil.rmtree(self.base, ignore_errors=True)
