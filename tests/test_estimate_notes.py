"""``fastdump estimate`` says which page classes it could not recognise, in its JSON
(``unrecognised``, ``warnings``) and beside its text numbers: they only went to stderr,
so a script reading the JSON took a count of 0 free or user pages as true."""

import json

import pytest
from support import fastdump_cli

from fastdump.testing.generator import MiB

RAM = 160 * MiB


@pytest.mark.parametrize("key, unknown", [
    (None, []),
    ("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)", ["free"]),
    ("NUMBER(PG_lru)", ["cache", "cache_private"]),
    ("OFFSET(page.mapping)", ["cache", "cache_private", "user"]),
])
def test_estimate_names_the_classes_it_cannot_recognise(generated_kernel, key, unknown):
    path, layout = generated_kernel(RAM, encoding="6.12", seed=11, drop_keys={key} if key else set())
    r = fastdump_cli("estimate", "--json", path)
    est = json.loads(r.stdout)
    assert est["unrecognised"] == unknown
    truth = layout.class_counts()
    for cls in unknown:         # the kernel has pages of the class the count misses
        assert est["pages"][cls] < truth[cls], (cls, est["pages"], truth)
    if key:
        name = key.split("(")[1].rstrip(")")
        assert any(name in w for w in est["warnings"]), est["warnings"]
        assert all(w in r.stderr for w in est["warnings"])     # the same lines as on stderr
    text = fastdump_cli("estimate", path).stdout
    marked = [line.split()[0] for line in text.splitlines() if line.endswith("NOT RECOGNISED (counted as kept)")]
    assert marked == unknown, text
    summary = f"not recognised in this kernel's struct pages: {', '.join(unknown)}; "
    assert (summary in text) == bool(unknown), text
