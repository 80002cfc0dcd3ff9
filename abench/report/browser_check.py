"""Render a leaderboard page in headless chromium and read its self-check (``scripts/check_html.py``).

The page (``abench/report/html.py``) writes its verdict into ``document.title`` and
``<pre id="abench-check">`` after load; :func:`browser_check` reads it, takes a screenshot and
checks that the screenshot is not blank.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    # the page must need no network: every host name fails to resolve
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def find_chromium() -> str | None:
    """The chromium binary: ``$CHROMIUM`` if set, else the first of the usual names on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).exists() or shutil.which(env) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserCheckError(RuntimeError):
    """The page did not pass: JS errors, empty figures, no verdict, or a blank screenshot."""


def _chromium(args: list[str], url: str, timeout: float) -> str:
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium not found (apt-get install -y chromium, or set $CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="abench-chromium-") as profile:
        cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise BrowserCheckError(f"chromium exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


def _verdict_from_dom(dom: str) -> dict:
    m = re.search(r'<pre id="abench-check">(.*?)</pre>', dom, re.S)
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    if not m:
        raise BrowserCheckError("no self-check element in the rendered page")
    try:
        verdict = json.loads(html.unescape(m.group(1)))
    except json.JSONDecodeError as err:
        raise BrowserCheckError(f"unreadable self-check verdict {m.group(1)[:200]!r}: {err}") from None
    verdict["title"] = html.unescape(title.group(1)) if title else None
    return verdict


_PNG_PAGE = """<!DOCTYPE html><html><head><title>pending</title></head><body>
<img id="im" src="data:image/png;base64,__DATA__">
<script>
window.addEventListener('load', function () {
  var im = document.getElementById('im');
  var c = document.createElement('canvas'); c.width = im.naturalWidth; c.height = im.naturalHeight;
  var ctx = c.getContext('2d'); ctx.drawImage(im, 0, 0);
  var d = ctx.getImageData(0, 0, c.width, c.height).data;
  var counts = new Map(), n = c.width * c.height;
  for (var i = 0; i < d.length; i += 4) {
    var k = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
    counts.set(k, (counts.get(k) || 0) + 1);
  }
  var top = 0; counts.forEach(function (v) { if (v > top) top = v; });
  document.title = JSON.stringify({width: c.width, height: c.height, distinct_colors: counts.size,
                                   non_background_fraction: n ? 1 - top / n : 0});
});
</script></body></html>"""


def png_stats(png: str | Path, timeout: float = 60) -> dict:
    """Size, number of distinct colours and the share of pixels not of the most common colour, of a
    PNG, measured by chromium's own decoder (no imaging library needed)."""
    data = base64.b64encode(Path(png).read_bytes()).decode()
    with tempfile.TemporaryDirectory(prefix="abench-png-") as tmp:
        page = Path(tmp) / "png.html"
        page.write_text(_PNG_PAGE.replace("__DATA__", data))
        dom = _chromium(["--virtual-time-budget=5000", "--dump-dom"], page.as_uri(), timeout)
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    try:
        return json.loads(html.unescape(title.group(1)))
    except (AttributeError, json.JSONDecodeError):
        raise BrowserCheckError(f"could not measure {png}: {title.group(1) if title else 'no title'}") from None


def browser_check(
    page: str | Path,
    screenshot: str | Path | None = None,
    window_size: tuple[int, int] = (1400, 4000),
    virtual_time_ms: int = 10000,
    timeout: float = 180,
) -> dict:
    """Render ``page`` in headless chromium, read its self-check verdict, take a screenshot.

    Returns the verdict (status, n_figures, errors, problems, marks per figure, title) plus
    ``screenshot`` stats; raises :class:`BrowserCheckError` when the page has a JS error, an empty
    figure, no verdict, or the screenshot is missing or blank, and FileNotFoundError without chromium.
    """
    url = Path(page).resolve().as_uri()
    dom = _chromium([f"--virtual-time-budget={virtual_time_ms}", "--dump-dom"], url, timeout)
    verdict = _verdict_from_dom(dom)
    if verdict.get("status") == "pending":
        raise BrowserCheckError(f"the page's self-check did not finish within {virtual_time_ms} ms of virtual time (title {verdict['title']!r})")
    if verdict.get("status") != "ok":
        raise BrowserCheckError(
            f"page self-check {verdict.get('status')}: title {verdict.get('title')!r}; "
            f"errors {verdict.get('errors')}; problems {verdict.get('problems')}"
        )
    if screenshot is not None:
        shot = Path(screenshot).resolve()
        shot.parent.mkdir(parents=True, exist_ok=True)
        shot.unlink(missing_ok=True)
        w, h = window_size
        _chromium([f"--virtual-time-budget={virtual_time_ms}", f"--screenshot={shot}", f"--window-size={w},{h}"], url, timeout)
        if not shot.is_file() or shot.stat().st_size == 0:
            raise BrowserCheckError(f"chromium wrote no screenshot to {shot}")
        stats = png_stats(shot)
        verdict["screenshot"] = {"path": str(shot), **stats}
        if stats["distinct_colors"] < 16 or stats["non_background_fraction"] < 0.01:
            raise BrowserCheckError(f"screenshot {shot} looks blank: {stats}")
    return verdict
