"""Pooled numbers per family, before and after: ``python scripts/pooled_before_after.py BEFORE.json AFTER.json``

For every family and method of both leaderboards: pooled AUROC and faithfulness with their 95% intervals,
before and after, and whether the after estimate left the before interval (or the before estimate the
after interval): a change beyond what the data's own uncertainty allows. Then every ground-truth check
of the after document that did not pass. Prints markdown; exits 1 when any estimate moved outside an
interval or a check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from abench.document import Leaderboard, MethodSummary  # noqa: E402
from abench.recommend import FLOAT_SLACK  # noqa: E402
from abench.report.tables import fmt  # noqa: E402

NUMBERS = (("pooled AUROC", "pooled_auroc", "pooled_auroc_ci95"), ("faithfulness", "mean_faithfulness", "mean_faithfulness_ci95"))


def _inside(value: float | None, ci) -> bool:
    return value is None or ci is None or ci[0] - FLOAT_SLACK <= value <= ci[1] + FLOAT_SLACK


def _cell(s: MethodSummary | None, key: str, ci_key: str) -> str:
    if s is None:
        return "-"
    ci = s.get(ci_key)
    return f"{fmt(s.get(key))} [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else fmt(s.get(key))


def table(before: Leaderboard, after: Leaderboard) -> tuple[str, int]:
    """The markdown table and the number of (family, method, number) that moved outside an interval."""
    lines, moved = [], 0
    for fam in dict.fromkeys([*before.summary_by_family, *after.summary_by_family]):
        b = {s.method: s for s in before.summary_by_family.get(fam, [])}
        a = {s.method: s for s in after.summary_by_family.get(fam, [])}
        lines += [f"\n**{fam}** ({len({r.task for r in before.rows if r.family == fam})} tasks before, "
                  f"{len({r.task for r in after.rows if r.family == fam})} after)\n",
                  "| method | " + " | ".join(f"{n} before | {n} after" for n, _, _ in NUMBERS) + " | outside an interval |",
                  "|---|" + "---|---|" * len(NUMBERS) + "---|"]
        for m in dict.fromkeys([*b, *a]):
            out = []
            for name, key, ci_key in NUMBERS:
                sb, sa = b.get(m), a.get(m)
                if sb and sa and not (_inside(sa.get(key), sb.get(ci_key)) and _inside(sb.get(key), sa.get(ci_key))):
                    out.append(name)
            moved += len(out)
            cells = " | ".join(f"{_cell(b.get(m), k, c)} | {_cell(a.get(m), k, c)}" for _, k, c in NUMBERS)
            lines.append(f"| `{m}` | {cells} | {', '.join(out) or 'no'} |")
    return "\n".join(lines), moved


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before")
    p.add_argument("after")
    args = p.parse_args(argv)
    before, after = (Leaderboard.from_json(json.loads(Path(x).read_text()), x) for x in (args.before, args.after))
    text, moved = table(before, after)
    failed = sorted(t for t, c in after.ground_truth_checks.items() if not c.passed)
    print(text)
    print(f"\n{moved} estimate(s) outside an interval; ground-truth checks after: {len(after.ground_truth_checks) - len(failed)} "
          f"of {len(after.ground_truth_checks)} passed" + (f" (failed: {', '.join(failed)})" if failed else ""))
    return 1 if moved or failed else 0


if __name__ == "__main__":
    sys.exit(main())
