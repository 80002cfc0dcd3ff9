"""Save the CI gate's baseline with its numeric noise: ``python scripts/save_baseline.py [--out reports/baseline.json]``.

Runs the gate's selection (``--preset ci``) once per CPU float-kernel setting of
``abench.numeric_noise.KERNEL_SETTINGS`` (each a fresh process, ``--jobs`` at a time), keeps the first
(this CPU's own kernels) as the baseline and stores under ``numeric_noise`` how far each gated number
moved across the settings; ``--compare`` allows that much on top of ``--tolerance``. Prints the spread
of every number that moved. Any extra arguments go to each pytest run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from abench.document import Leaderboard  # noqa: E402
from abench.numeric_noise import KERNEL_SETTINGS, describe, measure  # noqa: E402
from interventions.options import at_least  # noqa: E402


def run_setting(name: str, env: dict[str, str], folder: Path, extra: list[str]) -> Path:
    """One gate-selection run under ``env``; the path of its stripped baseline."""
    out = folder / f"{name.replace('=', '_')}.json"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "benchmarks/test_leaderboard.py", "--preset", "ci",
           "--benchmark-disable", "--report-dir", str(folder / f"report_{out.stem}"), "--save-baseline", str(out), *extra]
    res = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
    if res.returncode != 0 or not out.is_file():
        raise SystemExit(f"save_baseline: the run under {name} failed (exit {res.returncode}):\n{res.stdout[-3000:]}{res.stderr[-2000:]}")
    print(f"ran the gate's selection under {name}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "reports" / "baseline.json"), help="the baseline to write (default reports/baseline.json)")
    ap.add_argument("--jobs", type=at_least(1), default=2, help="settings run at once (default 2: one per core of a CI machine)")
    args, extra = ap.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        with ThreadPoolExecutor(args.jobs) as pool:
            paths = dict(zip(KERNEL_SETTINGS, pool.map(lambda kv: run_setting(kv[0], kv[1], Path(tmp), extra), KERNEL_SETTINGS.items())))
        docs = {name: json.loads(p.read_text()) for name, p in paths.items()}
    runs = {name: Leaderboard.from_json(doc, name) for name, doc in docs.items()}
    noise = measure(runs)
    baseline = docs[next(iter(KERNEL_SETTINGS))]
    baseline["numeric_noise"] = noise
    Path(args.out).write_text(json.dumps(baseline, indent=1))
    for kind in ("rows", "summaries"):
        for place, moved in noise[kind].items():
            print(f"  {place}: " + ", ".join(f"{m} {v:.4f}" for m, v in moved.items()))
    print(f"wrote {args.out}: {describe(Leaderboard.from_json(baseline, args.out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
