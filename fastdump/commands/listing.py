"""``fastdump list s3://BUCKET/PREFIX/``: the dumps in a store, grouped by how they crashed.

From any machine with the credentials: each ``<host>-<date>/`` with its manifest
(kernel, crash time, panic line, backtrace signature), grouped by signature, the
group with the newest crash first and, in a group, the newest first.  A dump
without a manifest is listed too (under "no manifest"), never left out.
"""

import json
import sys

from ..targets.s3client import Credentials, S3Client, parse_url
from .parsing import Parser


def collect(client, bucket, prefix):
    """One dict per dump under ``prefix``: its manifest, or what the listing alone says."""
    dirs = {}
    for key, size in client.list_objects(bucket, prefix):
        stem, _, name = key.rpartition("/")
        if name in ("vmcore", "manifest.json", "vmcore-dmesg.txt"):
            dirs.setdefault(stem, {})[name] = size
    dumps = []
    for stem, names in sorted(dirs.items()):
        if "vmcore" not in names:
            continue                     # only a log (no room for the dump) or a stray manifest
        entry = {"object": f"s3://{bucket}/{stem}/vmcore", "bytes": names["vmcore"], "signature": None}
        if "manifest.json" in names:
            try:
                entry.update(json.loads(client.get_object(bucket, stem + "/manifest.json")))
            except ValueError:
                entry["manifest_error"] = "not JSON"
        dumps.append(entry)
    return dumps


def group(dumps):
    """[(signature, [dumps newest first])], the group with the newest crash first.  Dumps
    without a signature are grouped by why: no manifest, or no crash found in the log."""
    groups = {}
    for d in dumps:
        groups.setdefault((d.get("signature"), "manifest_version" in d), []).append(d)
    when = lambda d: d.get("crash_time") or ""   # noqa: E731  ISO times sort as text
    out = [(sig, sorted(ds, key=when, reverse=True)) for (sig, _), ds in groups.items()]
    return sorted(out, key=lambda g: when(g[1][0]), reverse=True)


def _title(d):
    if d.get("signature_text") or d.get("panic"):
        return d.get("signature_text") or d["panic"]
    if "manifest_version" not in d:
        return "(no manifest)"
    return "(no panic line: kernel log not saved)" if not d.get("log") else "(no panic line in the kernel log)"


def main(argv=None):
    p = Parser(prog="fastdump list", description="List the dumps under s3://BUCKET/PREFIX/, grouped by "
                                                 "panic signature, newest first (credentials: the AWS_* variables).")
    p.add_argument("location", help="s3://BUCKET/PREFIX/")
    p.add_argument("--credentials", metavar="FILE", help="an AWS shared credentials file (mode 0600)")
    p.add_argument("--json", action="store_true", help="print the groups as JSON")
    args = p.parse_args(argv)
    bucket, prefix = parse_url(args.location)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    client = S3Client(Credentials.load(file=args.credentials))
    groups = group(collect(client, bucket, prefix))
    if args.json:
        json.dump([{"signature": s, "dumps": ds} for s, ds in groups], sys.stdout, indent=1)
        print()
        return 0
    if not groups:
        print(f"no dumps under s3://{bucket}/{prefix}")
    for sig, ds in groups:
        title = _title(ds[0])
        print(f"{sig or '-':<12}  {len(ds)} dump{'s' if len(ds) > 1 else ''}  {title}")
        for d in ds:
            print(f"  {d.get('crash_time') or '?':<20}  {d.get('host') or '?'}  {d.get('kernel_release') or '?'}  "
                  f"{d['bytes'] / 1e6:.1f} MB  {d['object']}")
            if d.get("panic") and d.get("panic") != title:
                print(f"      {d['panic']}")
    return 0

