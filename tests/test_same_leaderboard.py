"""scripts/same_leaderboard.py: finds a changed number, ignores timings (and, asked to, the added row fields)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "same_leaderboard.py"
spec = importlib.util.spec_from_file_location("same_leaderboard", SCRIPT)
same = importlib.util.module_from_spec(spec)
spec.loader.exec_module(same)


def doc(effect: float, seconds: float, **row_extra) -> dict:
    return {"environment": {"created_at": "now"},
            "rows": [{"task": "t", "method": "m", "seconds": seconds, "nodes": [{"name": "n", "effect": effect}], **row_extra}],
            "summary_by_family": {}}


def test_timings_ignored_numbers_not(tmp_path):
    a, b, c, d = (tmp_path / f"{x}.json" for x in "abcd")
    a.write_text(json.dumps(doc(0.5, 1.0)))
    b.write_text(json.dumps(doc(0.5, 9.0)))
    c.write_text(json.dumps(doc(0.6, 1.0)))
    d.write_text(json.dumps(doc(0.5, 1.0, method_base="m", params={})))
    assert same.main([str(a), str(b)]) == 0
    assert same.main([str(a), str(c)]) == 1
    assert same.main([str(a), str(d)]) == 1
    assert same.main([str(a), str(d), "--ignore-added"]) == 0
