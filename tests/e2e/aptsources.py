"""The Debian archives this machine's apt is configured with, and the suites of a release.

A kernel that ``linux-image-amd64`` resolves to on an up-to-date machine often lives in
``<release>-security`` or ``<release>-updates``, not in the release suite itself, so anything
that fetches Debian packages for a release must list all three, from the archives the machine
already uses.  Nothing here names a host: the URIs are read from /etc/apt at run time (or from
FASTDUMP_E2E_MIRROR / FASTDUMP_E2E_SECURITY_MIRROR).

Run as ``python3 -m tests.e2e.aptsources RELEASE`` it prints the one-line-style sources for
RELEASE (used by ``.ci/fresh-machine``); ``--mirror`` prints the main archive URI alone.
"""

import glob
import os
import re
import sys

# Releases that have no -updates / -security suites.
ROLLING = ("sid", "unstable", "experimental")


class NoMirror(RuntimeError):
    pass


def _configured_entries(etc="/etc/apt"):
    """(uri, [suites]) for every ``deb`` entry of this machine's apt sources."""
    entries = []
    for path in sorted(glob.glob(os.path.join(etc, "sources.list.d", "*.sources"))):
        with open(path) as f:
            text = f.read()
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                entries.append((uri, fields.get("suites", "").split()))
    for path in [os.path.join(etc, "sources.list")] + sorted(glob.glob(os.path.join(etc, "sources.list.d", "*.list"))):
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                words = re.sub(r"\[[^\]]*\]", "", line.split("#")[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1], [words[2]]))
    return [(u.rstrip("/"), s) for u, s in entries if u.startswith(("http://", "https://", "file:"))]


def _is_security(uri, suites):
    return "security" in uri or any(s.endswith("-security") or "/updates" in s for s in suites)


def _is_debian(uri):
    """A Debian archive (not a third-party repository listed beside it)."""
    return re.search(r"/debian(-security)?$", uri) is not None


def archives(etc="/etc/apt"):
    """(main archive URI, security archive URI or None) as this machine has them."""
    main = os.environ.get("FASTDUMP_E2E_MIRROR")
    security = os.environ.get("FASTDUMP_E2E_SECURITY_MIRROR")
    entries = _configured_entries(etc)
    if not main:
        cands = [u for u, s in entries if not _is_security(u, s)]
        cands.sort(key=lambda u: not _is_debian(u))
        if not cands:
            raise NoMirror("no Debian mirror found in /etc/apt (set FASTDUMP_E2E_MIRROR)")
        main = cands[0]
    if not security:
        cands = [u for u, s in entries if _is_security(u, s)]
        cands.sort(key=lambda u: not _is_debian(u))
        security = cands[0] if cands else None
    return main.rstrip("/"), (security.rstrip("/") if security else None)


def suites(release, etc="/etc/apt"):
    """[(uri, suite)] a machine running ``release`` would use: the release, its -updates and
    its -security suite (where the release has them and the machine knows a security archive)."""
    main, security = archives(etc)
    out = [(main, release)]
    if release not in ROLLING:
        out.append((main, release + "-updates"))
        if security:
            out.append((security, release + "-security"))
    return out


def sources_list(release, signed_by=None):
    """The text of a sources.list for ``release`` (main component)."""
    opt = "[signed-by=%s] " % signed_by if signed_by else ""
    return "".join("deb %s%s %s main\n" % (opt, uri, suite) for uri, suite in suites(release))


def main(argv):
    if argv[:1] == ["--mirror"]:
        print(archives()[0])
        return 0
    if len(argv) != 1:
        print("usage: python3 -m tests.e2e.aptsources RELEASE | --mirror", file=sys.stderr)
        return 2
    sys.stdout.write(sources_list(argv[0]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except NoMirror as e:
        print("aptsources: %s" % e, file=sys.stderr)
        sys.exit(1)
