"""The circuit axis beside the node axis, for one family of two leaderboards (e.g. before and after a retraining).

    python scripts/circuit_axis.py BEFORE.json AFTER.json [--family siit]

Prints, per method of the family's summary (the after file's order), pooled AUROC with its 95% CI
and mean faithfulness / completeness with their 95% bootstrap CIs (``leaderboard.build``'s
summaries: the CIs are over the family's tasks), before -> after, as a markdown table; then which
methods tie at the top of the AUROC axis and whether faithfulness tells them apart (their CIs
do not overlap).
"""

from __future__ import annotations

import argparse
import json
import sys


def _ci(x: dict, key: str) -> str:
    v, ci = x.get(key), x.get(key + "_ci95")
    if v is None:
        return "-"
    return f"{v:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{v:.3f}"


def table(before: dict, after: dict, family: str) -> list[str]:
    b = {x["method"]: x for x in before["summary_by_family"].get(family, [])}
    a = after["summary_by_family"].get(family, [])
    lines = ["| method | pooled AUROC before | after | faithfulness before | after | completeness before | after |",
             "|---|---|---|---|---|---|---|"]
    for x in a:
        y = b.get(x["method"], {})
        lines.append(f"| {x['method']} | {_ci(y, 'pooled_auroc')} | {_ci(x, 'pooled_auroc')} | {_ci(y, 'mean_faithfulness')} | "
                     f"{_ci(x, 'mean_faithfulness')} | {_ci(y, 'mean_completeness')} | {_ci(x, 'mean_completeness')} |")
    return lines


def ties(doc: dict, family: str) -> list[str]:
    """The methods tied at the top pooled AUROC, and whether faithfulness separates them."""
    summ = [x for x in doc["summary_by_family"].get(family, []) if x.get("pooled_auroc") is not None]
    if not summ:
        return [f"family {family}: no pooled AUROC"]
    top = max(x["pooled_auroc"] for x in summ)
    tied = [x for x in summ if x["pooled_auroc"] == top]
    out = [f"tied at pooled AUROC {top:.3f}: " + ", ".join(f"{x['method']} (faithfulness {_ci(x, 'mean_faithfulness')})" for x in tied)]
    for i, x in enumerate(tied):
        for y in tied[i + 1:]:
            cx, cy = x.get("mean_faithfulness_ci95"), y.get("mean_faithfulness_ci95")
            if cx and cy and (cx[1] < cy[0] or cy[1] < cx[0]):
                out.append(f"  faithfulness separates {x['method']} from {y['method']} (CIs do not overlap)")
    if len(out) == 1:
        out.append("  faithfulness separates none of them (every pair of CIs overlaps)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--family", default="siit")
    args = ap.parse_args(argv)
    before, after = (json.load(open(p)) for p in (args.before, args.after))
    print("\n".join(table(before, after, args.family)))
    for name, doc in (("before", before), ("after", after)):
        print(f"{name}:", *ties(doc, args.family), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
