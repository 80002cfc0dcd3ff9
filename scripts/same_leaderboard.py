"""Are two leaderboard.json files the same apart from timings? ``python scripts/same_leaderboard.py A.json B.json``

Compares the documents without timings and timestamps (``abench.leaderboard.strip_volatile``)
and, with ``--ignore-added``, without the row fields a newer run adds (``method_base``,
``params``: the parsed method spec). Prints every difference (path: a -> b) and exits 1 on any.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from abench.leaderboard import strip_volatile  # noqa: E402

ADDED_ROW_FIELDS = ("method_base", "params")


def differences(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in the first" for k in a if k not in b]
        out += [f"{path}/{k}: only in the second" for k in b if k not in a]
        for k in a:
            if k in b:
                out += differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items -> {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def load(path: str, ignore_added: bool) -> dict:
    doc = strip_volatile(json.loads(Path(path).read_text()))
    if ignore_added:
        for row in doc.get("rows", []):
            for k in ADDED_ROW_FIELDS:
                row.pop(k, None)
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--ignore-added", action="store_true", help="ignore the rows' method_base and params fields")
    args = ap.parse_args(argv)
    a, b = load(args.a, args.ignore_added), load(args.b, args.ignore_added)
    diffs = differences(a, b)
    for d in diffs:
        print(d)
    n_rows = len(a.get("rows", []))
    n_nodes = sum(len(r.get("nodes") or []) for r in a.get("rows", []))
    print(f"{'identical' if not diffs else f'{len(diffs)} differences'} apart from timings: "
          f"{n_rows} rows, {n_nodes} node effects, {len(a.get('summary_by_family', {}))} families")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
