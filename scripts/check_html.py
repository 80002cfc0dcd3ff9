#!/usr/bin/env python
"""Render a leaderboard HTML report in headless chromium, screenshot it, fail on JS errors or empty figures.

    python scripts/check_html.py reports/leaderboard.html /tmp/leaderboard.png

Exit status 0 when the page's self-check says OK and the screenshot is not blank; 1 when the page
fails; 2 when chromium is missing (apt-get install -y chromium, or set $CHROMIUM).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from abench.report.browser_check import BrowserCheckError, browser_check  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("page", help="the HTML report (leaderboard.html)")
    p.add_argument("screenshot", help="where to write the PNG screenshot")
    p.add_argument("--window-size", default="1400,4000", help="WIDTH,HEIGHT of the screenshot (default 1400,4000)")
    p.add_argument("--virtual-time-budget", type=int, default=10000, help="ms of virtual time the page gets (default 10000)")
    args = p.parse_args(argv)
    w, h = (int(x) for x in args.window_size.split(","))
    if not Path(args.page).is_file():
        print(f"FAIL: no such file {args.page}", file=sys.stderr)
        return 1
    try:
        verdict = browser_check(args.page, args.screenshot, window_size=(w, h), virtual_time_ms=args.virtual_time_budget)
    except FileNotFoundError as err:
        print(f"SKIP: {err}", file=sys.stderr)
        return 2
    except BrowserCheckError as err:
        print(f"FAIL: {err}", file=sys.stderr)
        return 1
    print(json.dumps(verdict, indent=1))
    print(f"OK: {verdict['title']}; screenshot {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
