"""fastdump.Stats: what the API returns and --stats-json writes."""

import json

import pytest

import fastdump
from fastdump.copy.stats import FIELDS, Stats


def test_to_dict_has_every_field_in_order_and_copies_deep():
    s = Stats(source="/proc/vmcore", excluded={"free": 3}, parts=[{"pfns": [1, 2]}])
    d = s.to_dict()
    assert list(d) == list(FIELDS) and d["source"] == "/proc/vmcore"
    d["excluded"]["free"] = 99
    d["parts"][0]["pfns"].append(3)
    assert s.excluded == {"free": 3} and s.parts == [{"pfns": [1, 2]}]
    assert json.loads(json.dumps(d)) == s.to_dict() | {"excluded": {"free": 99}, "parts": [{"pfns": [1, 2, 3]}]}


def test_fields_start_empty_per_instance_and_unknown_ones_are_refused():
    a, b = Stats(), Stats()
    a.warnings.append("x")
    assert b.warnings == [] and a != b and Stats() == Stats()
    with pytest.raises(TypeError):
        Stats(pages_kpet=1)


def test_a_dump_returns_them(vmcore, tmp_path):
    stats = fastdump.dump(vmcore, str(tmp_path / "d"), level=1, compress="zstd")
    d = stats.to_dict()
    assert d["pages_kept"] == stats.pages_kept > 0 and d["format"] == "kdump" and set(d["phase_seconds"]) >= {"classify"}
