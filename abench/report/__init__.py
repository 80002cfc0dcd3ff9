"""Leaderboard document (``abench.document.Leaderboard``, ``leaderboard.json``'s typed form) -> the report files.

``metrics.py`` holds the one ``METRICS`` table every format and ``abench/compare.py`` read;
``tables.py`` the tables shared by ``markdown.py``, ``html.py`` and the terminal; ``figures.py`` the
plotly figures of ``html.py``; ``tex.py`` the booktabs table; ``browser_check.py`` renders a page
in headless chromium. Nothing here imports the benchmark engine: a report is a function of the
document alone. Every format takes the typed document (rows, method summaries, checks as records);
a caller holding the JSON converts it once with ``Leaderboard.from_json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from abench.report.html import to_html
from abench.report.markdown import to_markdown
from abench.report.tex import to_latex

if TYPE_CHECKING:
    from abench.document import Leaderboard


def write(doc: Leaderboard, folder: str | Path) -> list[Path]:
    """leaderboard.{json,md,tex,html} in ``folder``, all from ``doc`` (the JSON is ``doc.to_json()``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"leaderboard.{ext}" for ext in ("json", "md", "tex", "html")]
    paths[0].write_text(json.dumps(doc.to_json(), indent=1))
    paths[1].write_text(to_markdown(doc))
    paths[2].write_text(to_latex(doc))
    paths[3].write_text(to_html(doc), encoding="utf-8")
    return paths
