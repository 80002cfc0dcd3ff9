"""A static SVG of the headline: per method, pooled AUROC and faithfulness with their 95% intervals.

Written as plain SVG text (no plotting library, no browser), so the README can show it and a test
can regenerate it byte for byte from ``leaderboard.json``. ``headline_svg(entries, title)`` takes
the summary entries to plot, best first (``abench.readme.headline_entries`` picks them).
"""

from __future__ import annotations

import math
from html import escape

ROW_H = 22
LABEL_W = 200
PANEL_W = 250
GAP = 40
TOP = 62
BOTTOM = 40
FONT = "font-family='Helvetica, Arial, sans-serif'"
DOT = "#1f77b4"
WHISKER = "#555"
GRID = "#ddd"


def _f(x: float) -> str:
    return f"{x:.1f}"


def _panel(entries: list[dict], key: str, ci_key: str, label: str, x0: float, lo: float, hi: float) -> list[str]:
    """One dot-and-whisker panel: ``key`` per entry, its interval ``ci_key``, axis from lo to hi."""

    def sx(v: float) -> float:
        return x0 + (min(max(v, lo), hi) - lo) / (hi - lo) * PANEL_W

    n = len(entries)
    bottom = TOP + n * ROW_H
    out = [f"<text x='{_f(x0 + PANEL_W / 2)}' y='{TOP - 14}' text-anchor='middle' font-size='13' {FONT}>{escape(label)}</text>"]
    ticks = 5
    for i in range(ticks + 1):
        v = lo + (hi - lo) * i / ticks
        x = sx(v)
        out.append(f"<line x1='{_f(x)}' y1='{TOP - 4}' x2='{_f(x)}' y2='{bottom}' stroke='{GRID}' stroke-width='1'/>")
        out.append(f"<text x='{_f(x)}' y='{bottom + 16}' text-anchor='middle' font-size='11' {FONT}>{v:.2f}</text>")
    for i, e in enumerate(entries):
        y = TOP + i * ROW_H + ROW_H / 2
        v = e.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(f"<text x='{_f(x0 + 4)}' y='{_f(y + 4)}' font-size='11' fill='#999' {FONT}>-</text>")
            continue
        ci = e.get(ci_key)
        if ci:
            out.append(f"<line x1='{_f(sx(ci[0]))}' y1='{_f(y)}' x2='{_f(sx(ci[1]))}' y2='{_f(y)}' "
                       f"stroke='{WHISKER}' stroke-width='1.5'/>")
            for c in ci:
                out.append(f"<line x1='{_f(sx(c))}' y1='{_f(y - 4)}' x2='{_f(sx(c))}' y2='{_f(y + 4)}' "
                           f"stroke='{WHISKER}' stroke-width='1.5'/>")
        out.append(f"<circle cx='{_f(sx(v))}' cy='{_f(y)}' r='4' fill='{DOT}'/>")
    return out


def axis_low(values: list[float], step: float = 0.05) -> float:
    """The panel's lower end: a multiple of ``step`` at or below every value (at most 1 - step)."""
    low = min(values, default=1.0)
    return min(math.floor(low / step) * step, 1.0 - step)


def headline_svg(entries: list[dict], title: str) -> str:
    """Two panels side by side: pooled AUROC (axis from just below the lowest interval to 1) and mean
    faithfulness (0 to 1), one row per entry, each with its 95% bootstrap interval."""
    n = max(len(entries), 1)
    width = LABEL_W + 2 * PANEL_W + GAP + 20
    height = TOP + n * ROW_H + BOTTOM
    auroc_lo = axis_low([v for e in entries for v in (e.get("pooled_auroc_ci95") or [e.get("pooled_auroc")]) if v is not None])
    x_auroc = LABEL_W
    x_faith = LABEL_W + PANEL_W + GAP
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}'>",
        f"<rect width='{width}' height='{height}' fill='white'/>",
        f"<text x='10' y='22' font-size='15' font-weight='bold' {FONT}>{escape(title)}</text>",
    ]
    for i, e in enumerate(entries):
        y = TOP + i * ROW_H + ROW_H / 2 + 4
        out.append(f"<text x='{LABEL_W - 10}' y='{_f(y)}' text-anchor='end' font-size='12' {FONT}>{escape(e['method'])}</text>")
    out += _panel(entries, "pooled_auroc", "pooled_auroc_ci95", "pooled AUROC (higher is better)", x_auroc, auroc_lo, 1.0)
    out += _panel(entries, "mean_faithfulness", "mean_faithfulness_ci95", "faithfulness (higher is better)", x_faith, 0.0, 1.0)
    out.append("</svg>")
    return "\n".join(out) + "\n"
