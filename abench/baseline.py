"""The ``--compare`` baseline: a saved leaderboard, read and checked before any work.

``compare`` indexes rows by task and method and reads their metrics as numbers; a file of another
shape would fail deep inside the comparison at the end of a long run, so it is refused up front.
"""

from __future__ import annotations

import json
from pathlib import Path

from abench.document import DocumentError, Leaderboard


class BaselineError(ValueError):
    """The baseline file cannot be used; the message names the option, the file and what is wrong."""


def read_baseline(path: str) -> Leaderboard:
    """The ``--compare`` baseline, read and checked for the shape ``compare`` needs (``Leaderboard.from_json``);
    a ``BaselineError`` naming the option, the file and what is wrong."""

    def bad(what: str) -> BaselineError:
        return BaselineError(f"--compare {path}: {what} (write a baseline with --save-baseline)")

    p = Path(path)
    if not p.is_file():
        raise bad("no such baseline file")
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise bad(f"cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise bad(f"not JSON ({err})") from None
    try:
        return Leaderboard.from_json(doc, where="")
    except DocumentError as err:
        raise bad(str(err).removeprefix(": ")) from None
