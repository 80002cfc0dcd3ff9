"""The ``--compare`` baseline: a saved leaderboard, read and checked before any work.

``compare`` indexes rows by task and method and reads their metrics as numbers; a file of another
shape would fail deep inside the comparison at the end of a long run, so it is refused up front.
"""

from __future__ import annotations

import json
from pathlib import Path

from abench.compare import ROW_METRICS, SUMMARY_METRICS


class BaselineError(ValueError):
    """The baseline file cannot be used; the message names the option, the file and what is wrong."""


def read_baseline(path: str) -> dict:
    """The ``--compare`` baseline, read and checked for the shape ``compare`` needs; a ``BaselineError``
    naming the option, the file and what is wrong."""

    def bad(what: str) -> BaselineError:
        return BaselineError(f"--compare {path}: {what} (write a baseline with --save-baseline)")

    p = Path(path)
    if not p.is_file():
        raise bad("no such baseline file")
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise bad(f"cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise bad(f"not JSON ({err})") from None

    def number(v) -> bool:
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))

    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list) or not isinstance(doc.get("summary_by_family"), dict):
        got = type(doc).__name__ if not isinstance(doc, dict) else f"keys {sorted(doc)[:8]}"
        raise bad(f"not a leaderboard (an object with 'rows': list and 'summary_by_family': object), got {got}")
    for i, r in enumerate(doc["rows"]):
        if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in ("task", "method", "family")):
            raise bad(f"row {i} needs string fields 'task', 'method' and 'family', got {str(r)[:80]}")
        for m in ROW_METRICS:
            if not number(r.get(m)):
                raise bad(f"row {i} ({r['task']}-{r['method']}): {m} must be a number or null, got {r[m]!r}")
    for fam, summ in doc["summary_by_family"].items():
        if not isinstance(summ, list):
            raise bad(f"summary_by_family[{fam!r}] must be a list, got {type(summ).__name__}")
        for s in summ:
            if not isinstance(s, dict) or not isinstance(s.get("method"), str):
                raise bad(f"summary_by_family[{fam!r}]: every entry needs a string 'method', got {str(s)[:80]}")
            for m in SUMMARY_METRICS:
                if not number(s.get(m)):
                    raise bad(f"summary_by_family[{fam!r}] method {s['method']}: {m} must be a number or null, got {s[m]!r}")
    if not isinstance(doc.get("excluded_tasks") or {}, dict):
        raise bad("excluded_tasks must be an object")
    return doc
