"""``python -m tasks.export_interpbench DIR``: every shipped SIIT model in InterpBench's layout.

Writes ``DIR/<program>/{ll_model.pth, ll_model_cfg.pkl, edges.pkl, meta.json}`` per model that
passed its card's bar (``tasks.siit.shipped()``) and ``DIR/benchmark_metadata.json``; see
``tasks/interpbench.py``. Load one back with ``tasks.interpbench.interpbench_task(DIR/<program>)``.
"""

from __future__ import annotations

import argparse

from tasks.interpbench import export_shipped
from tasks.siit import shipped


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", help="output folder (created)")
    ap.add_argument("--task", default=None, help="comma-separated SIIT program names (default: every shipped model)")
    args = ap.parse_args(argv)
    names = [t.strip().removeprefix("siit_") for t in args.task.split(",")] if args.task else shipped()
    unknown = [n for n in names if n not in shipped()]
    if unknown:
        ap.error(f"not a shipped SIIT model: {', '.join(unknown)}; shipped: {', '.join(shipped())}")
    for path in export_shipped(args.dir, names):
        print(f"wrote {path}/ (ll_model.pth, ll_model_cfg.pkl, edges.pkl, meta.json)")


if __name__ == "__main__":
    main()
