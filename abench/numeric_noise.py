"""How much the gated numbers move with the CPU's float kernels alone: measured, stored in the baseline, added to the gate's tolerance.

The same run on another CPU rounds differently: MKL and ATen pick other kernels (AVX-512, AVX2, SSE4.2)
by what the CPU offers. Most numbers do not move; a few do, because a method chooses between nearly
equal options (a PCA direction among nearly equal variances, the best step of an optimiser, an argmax
at a near-tie). The CI gate compares a run on one machine with a baseline saved on another, so such
a move must not read as a regression. ``scripts/save_baseline.py`` runs the CI preset once per
``KERNEL_SETTINGS`` entry (environment variables that switch the kernels as another CPU would), keeps
the first run as the baseline and stores each gated number's spread over the runs under
``numeric_noise``; ``abench.compare`` then allows ``--tolerance`` plus that spread for that number,
and prints the noise it allowed. A number that never moved keeps the plain tolerance.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from abench.compare import ROW_METRICS, SUMMARY_METRICS, row_place, summary_place
from abench.document import Leaderboard

# environment overrides, each switching the float kernels as another CPU would (the first: this CPU's own)
KERNEL_SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "MKL_ENABLE_INSTRUCTIONS=AVX2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "MKL_ENABLE_INSTRUCTIONS=SSE4_2": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
}


def _spread(values: Iterable) -> float:
    nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return max(nums) - min(nums) if len(nums) > 1 else 0.0


def measure(runs: Mapping[str, Leaderboard]) -> dict:
    """``{"settings": [...], "rows": {place: {metric: spread}}, "summaries": {place: {metric: spread}}}``: per gated
    number present in every run, max minus min over the runs; only the numbers that moved are listed."""
    docs = list(runs.values())
    rows: dict[str, dict[str, float]] = {}
    by_key = [{r.key: r for r in d.rows} for d in docs]
    for key, row in by_key[0].items():
        same = [b.get(key) for b in by_key]
        if any(r is None or not r.ok for r in same):
            continue
        moved = {m: s for m in ROW_METRICS if (s := _spread(r.measures.get(m) for r in same)) > 0}
        if moved:
            rows[row_place(row.task, row.method)] = moved
    summaries: dict[str, dict[str, float]] = {}
    for fam, summ in docs[0].summary_by_family.items():
        for s in summ:
            same = [next((x for x in d.summary_by_family.get(fam, []) if x.method == s.method), None) for d in docs]
            if any(x is None for x in same):
                continue
            moved = {m: sp for m in SUMMARY_METRICS if (sp := _spread(x.get(m) for x in same)) > 0}
            if moved:
                summaries[summary_place(fam, s.method)] = moved
    return {"settings": list(runs), "rows": rows, "summaries": summaries}


def describe(baseline: Leaderboard) -> str:
    """One line on the noise a baseline carries, for the gate's report."""
    noise = baseline.extra.get("numeric_noise")
    if not noise:
        return "the baseline carries no measured numeric noise: every gated number gets the plain tolerance"
    entries = [(v, f"{place} {m}") for kind in ("rows", "summaries") for place, ms in noise[kind].items() for m, v in ms.items()]
    top = max(entries) if entries else None
    return (f"numeric noise measured over {len(noise['settings'])} kernel settings ({', '.join(noise['settings'])}): "
            f"{len(entries)} gated numbers moved, each allowed --tolerance plus its spread"
            + (f" (largest {top[0]:.4f}: {top[1]})" if top else ""))
