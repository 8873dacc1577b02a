"""A small S3 client: the few calls a dump needs, signed with AWS Signature V4.

Standard library only (http.client, hmac, hashlib, ssl): it goes into a capture
initramfs as a few KiB of Python, where boto3 + botocore would add tens of MiB
and a dependency tree.  TLS uses the system CA bundle (``AWS_CA_BUNDLE`` names
another).  Requests are path-style (``ENDPOINT/BUCKET/KEY``), which RGW, MinIO
and AWS all take.  Connection errors and 5xx answers are retried with backoff.

Credentials come the way every S3 tool takes them: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL``,
``AWS_DEFAULT_REGION``, or a shared credentials file (INI, ``[default]`` or
``AWS_PROFILE``) that only its owner may read.  No secret ever appears in a
message: errors name the bucket, the key and the server's error code.
"""

import configparser
import datetime
import hashlib
import hmac
import http.client
import os
import re
import socket
import ssl
import time
import urllib.parse
import xml.etree.ElementTree as ET

from .. import safefile
from ..errors import NoSpaceError, TargetError, UsageError

RETRIES = 5                  # attempts after the first, for connection errors and 5xx
BACKOFF = 0.5                # seconds before the first retry, doubled each time
TIMEOUT = 60


_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<key>[^\0\n]*))?$")


def parse_url(url):
    """``s3://BUCKET/KEY`` -> (bucket, key); a UsageError names the rule it breaks."""
    m = _URL.match(url)
    if not m:
        raise UsageError(f"bad s3 location {url!r}: use s3://BUCKET/PREFIX/ (a bucket name of 3..63 "
                         "lower-case letters, digits, dots and dashes)")
    return m.group("bucket"), (m.group("key") or "").lstrip("/")


class S3Error(TargetError):
    """An S3 request failed; ``code`` is the server's error code (or None)."""

    def __init__(self, text, code=None, status=None):
        super().__init__(text)
        self.code, self.status = code, status


class Credentials:
    """Keys, endpoint and region; ``repr`` never shows the secret."""

    def __init__(self, access_key, secret_key, *, token=None, endpoint=None, region=None):
        self.access_key, self.secret_key, self.token = access_key, secret_key, token
        self.region = region or "us-east-1"
        self.endpoint = (endpoint or f"https://s3.{self.region}.amazonaws.com").rstrip("/")
        u = urllib.parse.urlsplit(self.endpoint)
        if u.username is not None or u.password is not None:      # never echo a secret in a message
            raise UsageError("AWS_ENDPOINT_URL must not carry a user or password: use the AWS_* keys")
        if u.scheme not in ("http", "https") or not u.hostname:
            raise UsageError(f"AWS_ENDPOINT_URL must be http://HOST[:PORT] or https://..., not {self.endpoint!r}")

    def __repr__(self):
        return f"Credentials(access_key={self.access_key!r}, endpoint={self.endpoint!r}, region={self.region!r})"

    @classmethod
    def load(cls, env=None, *, file=None):
        """From the environment, else from ``file`` (the settings' ``s3_credentials``)."""
        env = os.environ if env is None else env
        access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        token = env.get("AWS_SESSION_TOKEN")
        region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION")
        endpoint = env.get("AWS_ENDPOINT_URL")
        if not (access and secret) and file:
            section = read_credentials_file(file, env.get("AWS_PROFILE") or "default")
            access, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
            token = token or section.get("aws_session_token")
            endpoint = endpoint or section.get("endpoint_url")
            region = region or section.get("region")
        if not (access and secret):
            raise TargetError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                              "(or s3_credentials in the settings file)")
        return cls(access, secret, token=token, endpoint=endpoint, region=region)


def check_private(path):
    """A credentials file others may read is refused (as ssh refuses such a key)."""
    safefile.require_private(path, "S3 credentials file")


def read_credentials_file(path, profile):
    """One profile of an AWS shared credentials file."""
    check_private(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UsageError(f"S3 credentials file {path}: {e.strerror}") from None
    cp = configparser.ConfigParser(interpolation=None)
    try:
        cp.read_string(text, source=path)
    except configparser.Error:
        raise UsageError(f"S3 credentials file {path}: not an INI file ([{profile}] aws_access_key_id = ...)") \
            from None
    if not cp.has_section(profile):
        raise UsageError(f"S3 credentials file {path} has no [{profile}] section")
    return dict(cp.items(profile))


def _quote(s, safe="-_.~"):
    return urllib.parse.quote(s, safe=safe)


def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class S3Client:
    """Signed requests to one endpoint; one kept-alive connection, reopened on errors."""

    def __init__(self, creds, *, timeout=TIMEOUT, retries=RETRIES, backoff=BACKOFF):
        self.creds, self.timeout, self.retries, self.backoff = creds, timeout, retries, backoff
        u = urllib.parse.urlsplit(creds.endpoint)
        self.https, self.host, self.port = u.scheme == "https", u.hostname, u.port
        self.base_path = u.path.rstrip("/")
        self.netloc = u.netloc
        self.conn = None

    def _connect(self):
        if self.https:
            ctx = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=ctx)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _sign(self, method, path, query, headers, payload_hash):
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers.update({"host": self.netloc, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash})
        if self.creds.token:
            headers["x-amz-security-token"] = self.creds.token
        names = sorted(k.lower() for k in headers)
        lower = {k.lower(): str(v).strip() for k, v in headers.items()}
        canonical = "\n".join([method, path, query, "".join(f"{k}:{lower[k]}\n" for k in names),
                               ";".join(names), payload_hash])
        scope = f"{day}/{self.creds.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = _hmac(_hmac(_hmac(_hmac(("AWS4" + self.creds.secret_key).encode(), day), self.creds.region), "s3"),
                    "aws4_request")
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.creds.access_key}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")

    def request(self, method, bucket, key="", *, query=None, body=b"", headers=None, ok=(200,), retries=None,
                body_sha256=None):
        """(status, headers, body) of a signed request; retried on connection errors
        and 5xx; any other status not in ``ok`` raises S3Error (NoSpaceError for a quota)."""
        body_sha256 = body_sha256 or hashlib.sha256(body).hexdigest()   # signed: the server checks it
        path = self.base_path + "/" + _quote(bucket) + ("/" + _quote(key, safe="-_.~/") if key else "")
        q = "&".join(f"{_quote(k)}={_quote(str(v))}" for k, v in sorted((query or {}).items()))
        what = f"s3://{bucket}/{key}"
        attempts = 1 + (self.retries if retries is None else retries)
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            h = dict(headers or {})
            self._sign(method, path, q, h, body_sha256)
            try:
                if self.conn is None:
                    self.conn = self._connect()
                self.conn.request(method, path + ("?" + q if q else ""), body=body, headers=h)
                resp = self.conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                self.close()
                problem = f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}" \
                    if not isinstance(e, socket.timeout) else "timed out"
                continue
            if resp.status >= 500:
                problem = f"HTTP {resp.status} {_error_code(data) or ''}".strip()
                continue
            if resp.status not in ok:
                raise _error(what, resp.status, data)
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        raise S3Error(f"{what}: {method} failed after {attempts} attempts ({problem}) at {self.creds.endpoint}")

    # -- the calls a dump needs ------------------------------------------------
    def check_bucket(self, bucket):
        """Raises S3Error when the bucket is not there or not ours (a GET: HEAD has no
        error body to tell a wrong key from a wrong secret)."""
        self.request("GET", bucket, query={"list-type": "2", "max-keys": "0"})

    def create_bucket(self, bucket):
        self.request("PUT", bucket)

    def put_object(self, bucket, key, body, content_type="application/octet-stream"):
        self.request("PUT", bucket, key, body=body, headers={"Content-Type": content_type})

    def get_object(self, bucket, key, start=None, end=None):
        """The object, or bytes ``start..end-1`` of it (a ranged read)."""
        headers = {"Range": f"bytes={start}-{end - 1}"} if start is not None else {}
        return self.request("GET", bucket, key, headers=headers, ok=(200, 206))[2]

    def head_object(self, bucket, key):
        return self.request("HEAD", bucket, key)[1]

    def list_objects(self, bucket, prefix=""):
        """Every (key, size) under ``prefix``."""
        token = None
        while True:
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            root = ET.fromstring(self.request("GET", bucket, query=q)[2])
            for c in _all(root, "Contents"):
                yield _text(c, "Key"), int(_text(c, "Size") or 0)
            token = _text(root, "NextContinuationToken")
            if _text(root, "IsTruncated") != "true" or not token:
                return

    def create_multipart(self, bucket, key):
        root = ET.fromstring(self.request("POST", bucket, key, query={"uploads": ""})[2])
        upload_id = _text(root, "UploadId")
        if not upload_id:
            raise S3Error(f"s3://{bucket}/{key}: the server gave no multipart upload id")
        return upload_id

    def upload_part(self, bucket, key, upload_id, number, body):
        """(ETag, SHA-256) of the part stored."""
        digest = hashlib.sha256(body).hexdigest()
        headers = self.request("PUT", bucket, key, query={"partNumber": number, "uploadId": upload_id},
                               body=body, body_sha256=digest)[1]
        return headers.get("etag", ""), digest

    def complete_multipart(self, bucket, key, upload_id, etags):
        body = "<CompleteMultipartUpload>" + "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in sorted(etags.items())
        ) + "</CompleteMultipartUpload>"
        data = self.request("POST", bucket, key, query={"uploadId": upload_id}, body=body.encode())[2]
        root = ET.fromstring(data)
        if _local(root.tag) == "Error":      # S3 may answer 200 and still fail
            raise _error(f"s3://{bucket}/{key}", 200, data)
        return _text(root, "ETag") or ""

    def upload_part_copy(self, bucket, key, upload_id, number, source_key):
        """ETag of part ``number`` made inside the store from the whole object ``source_key``."""
        data = self.request("PUT", bucket, key, query={"partNumber": number, "uploadId": upload_id},
                            headers={"x-amz-copy-source": f"/{_quote(bucket)}/{_quote(source_key, safe='-_.~/')}"})[2]
        root = ET.fromstring(data)
        if _local(root.tag) == "Error":      # a copy may answer 200 and still fail
            raise _error(f"s3://{bucket}/{key}", 200, data)
        return _text(root, "ETag") or ""

    def delete_object(self, bucket, key):
        self.request("DELETE", bucket, key, ok=(200, 204))

    def abort_multipart(self, bucket, key, upload_id):
        self.request("DELETE", bucket, key, query={"uploadId": upload_id}, ok=(200, 204), retries=1)


def _local(tag):
    return tag.rsplit("}", 1)[-1]


def _all(root, name):
    return [e for e in root.iter() if _local(e.tag) == name]


def _text(root, name):
    for e in root.iter():
        if _local(e.tag) == name:
            return e.text
    return None


def _error_code(data):
    try:
        return _text(ET.fromstring(data), "Code") if data else None
    except ET.ParseError:
        return None


_MEANING = {
    "NoSuchBucket": "the bucket does not exist",
    "InvalidAccessKeyId": "the access key is not known (check the credentials)",
    "SignatureDoesNotMatch": "the secret key does not match (check the credentials)",
    "AccessDenied": "access denied (check the credentials and the bucket policy)",
    "QuotaExceeded": "no space left: the S3 quota is exceeded",
    "NoSuchUpload": "the multipart upload is gone (aborted on the server?)",
}


def _error(what, status, data):
    code = _error_code(data) or (f"HTTP {status}")
    text = f"{what}: {_MEANING.get(code, code)}"
    if code == "QuotaExceeded" or code == "EntityTooLarge":
        return NoSpaceError(text)
    return S3Error(text, code=code, status=status)
