"""The report folder's own files beside the leaderboard, and the checks that it can be written.

A run keeps three files in ``--report-dir`` besides ``leaderboard.*``: the journal (every finished row,
check and failed task, one JSON line each, as they finish: what an interrupted run keeps and
``--resume`` reads), the partial leaderboard of an interrupted run, and the lock that keeps a second
run from writing the same folder. The checks run before any task is loaded, so a bad folder is a
one-line usage error, not a failure after the work.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from abench.document import Row

JOURNAL = "leaderboard.partial.jsonl"
PARTIAL = "leaderboard.partial.json"
LOCK = ".abench.lock"


class ReportFolderError(ValueError):
    """The report folder or an output file cannot be written; the message names the option."""


def check_output_file(option: str, path: str) -> None:
    """``path`` (the value of ``option``) is a file that can be written: its folder exists and is writable."""
    p = Path(path)
    if p.is_dir():
        raise ReportFolderError(f"{option} {path}: is a folder, not a file")
    if not p.parent.is_dir():
        raise ReportFolderError(f"{option} {path}: folder {str(p.parent)!r} does not exist")
    if not os.access(p.parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ReportFolderError(f"{option} {path}: not writable")


def check_report_dir(path: str) -> None:
    """``--report-dir`` must be a folder that exists and takes a file, or one that can be created."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise ReportFolderError(f"--report-dir {path}: exists and is not a folder")
        try:
            with tempfile.TemporaryFile(dir=p):
                pass
        except OSError as err:
            raise ReportFolderError(f"--report-dir {path}: not writable ({err.strerror or err})") from None
        return
    anc = p.absolute().parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ReportFolderError(f"--report-dir {path}: cannot be created ({str(anc)!r} is not a folder)")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ReportFolderError(f"--report-dir {path}: cannot be created ({str(anc)!r} is not writable)")


def acquire_lock(folder: str) -> Path:
    """Take ``folder/.abench.lock`` for this process (creating the folder); a ``ReportFolderError`` when a
    live process holds it. A lock whose process is gone is stale and taken over."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    lock = Path(folder) / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().split()[0])
                os.kill(pid, 0)
            except (ValueError, IndexError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            except PermissionError:
                pass  # alive, another user's
            raise ReportFolderError(f"--report-dir {folder}: another run (pid {pid}) is writing it ({lock}); wait for it "
                                    f"or pass another --report-dir") from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return lock
    raise ReportFolderError(f"--report-dir {folder}: could not take {lock}")


def release_lock(lock: Path) -> None:
    """Remove ``lock`` if this process holds it (never another run's)."""
    if lock.is_file() and lock.read_text().split()[:1] == [str(os.getpid())]:
        lock.unlink()


def append_entry(journal: Path, entry: dict) -> None:
    """Append one finished row / check / failed task to the journal (one write per line, so
    pytest-xdist workers appending together do not interleave lines)."""
    line = (json.dumps(entry) + "\n").encode()
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_journal(path: Path) -> dict:
    """Rows (``Row``; the last one of each (task, method) wins), checks and failed tasks saved in a journal; a
    torn last line (the process was killed mid-write) is ignored."""
    out = {"rows": {}, "checks": {}, "failed_tasks": {}}
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "row" in entry:
            row = Row.from_json(entry["row"], f"{path}: row")
            out["rows"][row.key] = row
        elif "check" in entry:
            out["checks"][entry["check"]["task"]] = entry["check"]
        elif "failed_task" in entry:
            out["failed_tasks"].update(entry["failed_task"])
    return {**out, "rows": list(out["rows"].values())}
