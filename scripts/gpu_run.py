"""The GPU run: ``python scripts/gpu_run.py`` on a machine with one CUDA GPU (designed for < 8 minutes
on one H100). Writes reports/gpu/:

1. ``scale/cost.{md,json,html}``: the scale grid (``scripts/scale_cost.py --grid gpu``: every node of
   gpt2-small, Pythia-70m and Llama-style shapes, batch up to 32, length up to 512; CUDA-event
   timings, peak ``torch.cuda.max_memory_allocated`` beyond the model and clean data; the peers);
2. ``memory/``: ``benchmarks/test_scale.py`` (memory held under two budgets) on CUDA;
3. ``leaderboard/``: the default ``pytest benchmarks`` selection with ``--device cuda`` (timings by
   CUDA events through ``abench.bench.Timer``), stopped with SIGTERM at its deadline if it runs long
   (the plugin keeps the finished rows: ``leaderboard.partial.json``; ``--resume`` completes them);
4. ``gpu_run.md``: device, torch and CUDA versions, each part's wall time, exit status and report.

``--device cpu --quick`` runs the same code on the CPU with tiny selections (the tests do).
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

LEADERBOARD_DEADLINE_S = 300  # of the 8 minutes: the scale grid and the memory benchmark take the rest


def part_commands(device: str, out: Path, quick: bool) -> dict[str, list[str]]:
    """The command of each part, run from the repository root."""
    py = sys.executable
    grid = "tiny" if quick else ("gpu" if device == "cuda" else "cpu")
    bench = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--device", device]
    leaderboard_sel = ["--tasks", "back2", "--methods", "zero", "--n-fit", "8", "--n-eval", "8"] if quick else []
    return {
        "scale": [py, "scripts/scale_cost.py", "--device", device, "--grid", grid, "--out", str(out / "scale")],
        "memory": [*bench, "benchmarks/test_scale.py", "--report-dir", str(out / "memory"),
                   f"--benchmark-json={out / 'memory' / 'benchmark.json'}", "-s"] + (["--collect-only"] if quick else []),
        "leaderboard": [*bench, "benchmarks/test_leaderboard.py", "--report-dir", str(out / "leaderboard"),
                        f"--benchmark-json={out / 'leaderboard' / 'benchmark.json'}", *leaderboard_sel],
    }


def run_part(cmd: list[str], deadline_s: float, log: Path) -> dict:
    """Run one part with its output in ``log``; SIGTERM at the deadline (then SIGKILL 30 s later)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        try:
            rc, stopped = proc.wait(timeout=deadline_s), False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            stopped = True
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
    return {"command": " ".join(cmd), "seconds": round(time.perf_counter() - t0, 1), "returncode": rc,
            "stopped_at_deadline": stopped, "log": str(log)}


def device_info(device: str) -> dict:
    info = {"device": device, "torch": torch.__version__, "python": platform.python_version()}
    if device == "cuda":
        info.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                    gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    ap.add_argument("--out", default="reports/gpu")
    ap.add_argument("--quick", action="store_true", help="tiny selections: the CPU test of this script")
    ap.add_argument("--parts", default="scale,memory,leaderboard", help="comma-separated parts to run")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available (this run has not been made without one)")
    out = Path(args.out)
    deadlines = {"scale": 150, "memory": 60, "leaderboard": LEADERBOARD_DEADLINE_S}
    parts = {}
    wanted = [p.strip() for p in args.parts.split(",") if p.strip()]
    for folder in ("memory", "leaderboard"):  # pytest opens --benchmark-json before the plugin makes its report folder
        (out / folder).mkdir(parents=True, exist_ok=True)
    for name, cmd in part_commands(args.device, out, args.quick).items():
        if name not in wanted:
            continue
        parts[name] = run_part(cmd, deadlines[name], out / "logs" / f"{name}.log")
        print(f"{name}: {parts[name]}", flush=True)
    doc = {"info": device_info(args.device), "parts": parts}
    (out / "gpu_run.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = [f"# GPU run ({args.device})", "", *(f"- {k}: {v}" for k, v in doc["info"].items()), "",
             "| part | seconds | exit | stopped at deadline | log |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {p['seconds']} | {p['returncode']} | {p['stopped_at_deadline']} | {p['log']} |" for k, p in parts.items()]
    (out / "gpu_run.md").write_text("\n".join(lines) + "\n")
    return max(p["returncode"] for p in parts.values())


if __name__ == "__main__":
    sys.exit(main())
