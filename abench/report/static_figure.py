"""A static SVG of the headline: per method, pooled AUROC and faithfulness with their 95% intervals.

Written as plain SVG text (no plotting library, no browser), so the README can show it and a test
can regenerate it byte for byte from ``leaderboard.json``. ``headline_svg(entries, title)`` takes
the method summaries to plot (``abench.document.MethodSummary``), best first
(``abench.readme.headline_entries`` picks them).
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from abench.document import MethodSummary

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


def _panel(entries: Sequence[MethodSummary], key: str, ci_key: str, label: str, x0: float, lo: float, hi: float) -> list[str]:
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


def headline_svg(entries: Sequence[MethodSummary], title: str) -> str:
    """Two panels side by side: pooled AUROC (axis from just below the lowest interval to 1) and mean
    faithfulness (0 to 1), one row per entry, each with its 95% bootstrap interval."""
    n = max(len(entries), 1)
    width = LABEL_W + 2 * PANEL_W + GAP + 20
    height = TOP + n * ROW_H + BOTTOM
    auroc_lo = axis_low([v for e in entries for v in (e.pooled_auroc_ci95 or [e.pooled_auroc]) if v is not None])
    x_auroc = LABEL_W
    x_faith = LABEL_W + PANEL_W + GAP
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}'>",
        f"<rect width='{width}' height='{height}' fill='white'/>",
        f"<text x='10' y='22' font-size='15' font-weight='bold' {FONT}>{escape(title)}</text>",
    ]
    for i, e in enumerate(entries):
        y = TOP + i * ROW_H + ROW_H / 2 + 4
        out.append(f"<text x='{LABEL_W - 10}' y='{_f(y)}' text-anchor='end' font-size='12' {FONT}>{escape(e.method)}</text>")
    out += _panel(entries, "pooled_auroc", "pooled_auroc_ci95", "pooled AUROC (higher is better)", x_auroc, auroc_lo, 1.0)
    out += _panel(entries, "mean_faithfulness", "mean_faithfulness_ci95", "faithfulness (higher is better)", x_faith, 0.0, 1.0)
    out.append("</svg>")
    return "\n".join(out) + "\n"


CELL_W = 110


def _shade(v: float, lo: float = 0.5) -> str:
    """White at ``lo`` (chance) to dark blue at 1."""
    t = min(max((v - lo) / (1.0 - lo), 0.0), 1.0)
    r, g, b = (round(255 + (c - 255) * t) for c in (8, 69, 148))
    return f"#{r:02x}{g:02x}{b:02x}"


def transfer_svg(transfer: dict, title: str) -> str:
    """Methods x axes grid (``abench.transfer``): per realism axis, each method's pooled AUROC there and its
    change against the siit models of the same programs (that axis's matched base), shaded by the axis
    AUROC; a method that moved beyond its intervals on that axis is outlined in red. Empty string without
    a realism family."""
    recs = list(transfer.values())
    if not recs:
        return ""
    methods = [m["method"] for m in recs[0]["methods"]]
    columns = []
    for r in recs:
        tau = f", tau {r['kendall_tau']:.2f}" if r["kendall_tau"] is not None else ""
        columns.append((f"{r['axis']}{tau}", {m["method"]: m for m in r["methods"]}))
    width = max(LABEL_W + CELL_W * len(columns) + 20, 640)
    height = TOP + len(methods) * ROW_H + BOTTOM + 14
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}'>",
        f"<rect width='{width}' height='{height}' fill='white'/>",
        f"<text x='10' y='22' font-size='15' font-weight='bold' {FONT}>{escape(title)}</text>",
    ]
    for j, (label, _) in enumerate(columns):
        out.append(f"<text x='{_f(LABEL_W + CELL_W * (j + 0.5))}' y='{TOP - 8}' text-anchor='middle' font-size='11' {FONT}>"
                   f"{escape(label)}</text>")
    for i, method in enumerate(methods):
        y = TOP + i * ROW_H
        out.append(f"<text x='{LABEL_W - 10}' y='{_f(y + ROW_H / 2 + 4)}' text-anchor='end' font-size='12' {FONT}>{escape(method)}</text>")
        for j, (_, cells) in enumerate(columns):
            m = cells.get(method)
            v = None if m is None else m["axis_pooled_auroc"]
            base = None if m is None else m["base_pooled_auroc"]
            x = LABEL_W + CELL_W * j
            fill = "#eeeeee" if v is None else _shade(v)
            stroke = "stroke='#d62728' stroke-width='2'" if m and m["moved"] else "stroke='white' stroke-width='1'"
            out.append(f"<rect x='{_f(x)}' y='{_f(y)}' width='{CELL_W}' height='{ROW_H}' fill='{fill}' {stroke}/>")
            text = "-" if v is None else f"{v:.3f}" + ("" if base is None else f" ({v - base:+.2f})")
            color = "white" if v is not None and v > 0.8 else "black"
            out.append(f"<text x='{_f(x + CELL_W / 2)}' y='{_f(y + ROW_H / 2 + 4)}' text-anchor='middle' font-size='10' "
                       f"fill='{color}' {FONT}>{text}</text>")
    out.append(f"<text x='10' y='{height - 26}' font-size='11' {FONT}>pooled AUROC on the axis (change against the siit models "
               "of the same programs); white: 0.5, dark: 1</text>")
    out.append(f"<text x='10' y='{height - 12}' font-size='11' {FONT}>red outline: the method's AUROC or faithfulness "
               "interval on that axis does not overlap the matched siit models'</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
