"""Regenerate ``tests/data/report_doc.json``: a leaderboard document from a small real run.

    python tests/data/make_report_doc.py

Tracr tasks ``frac_prevs`` and ``reverse`` (CPU, 32 fit / 64 eval inputs) against zero, mean,
resample, three ``scaled_resample[s=...]`` rows and one method that always raises (a failed row),
built the way the pytest plugin builds its document.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TASKS = ["frac_prevs", "reverse"]
METHODS = ["zero", "mean", "resample", "scaled_resample[s=0.5]", "scaled_resample[s=1]", "scaled_resample[s=2]"]
OUT = Path(__file__).with_name("report_doc.json")


def build_doc(n_fit: int = 32, n_eval: int = 64, seed: int = 0) -> dict:
    from abench import bench, leaderboard
    from ablations.base import FunctionMethod
    from tasks.registry import load_task

    def broken(batch):
        raise RuntimeError("always fails (test fixture)")

    rows = []
    for name in TASKS:
        task = load_task(name, "cpu")
        fit, ev = bench.task_data(task, n_fit, n_eval, seed)
        for m in METHODS:
            rows.append(bench.run_row(task, m, fit, ev))
        rows.append(bench.run_row(task, FunctionMethod("broken_fixture", broken), fit, ev))
    env = leaderboard.environment("cpu", {"seed": seed, "n_fit": n_fit, "n_eval": n_eval})
    return leaderboard.build(rows, env).to_json()


if __name__ == "__main__":
    doc = build_doc()
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}: {len(doc['rows'])} rows, methods {[s['method'] for s in doc['summary']]}")
