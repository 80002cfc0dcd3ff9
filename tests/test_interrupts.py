"""Nothing lost: an interrupted `pytest benchmarks` leaves the reports it found as they were, keeps
its finished rows in a marked partial file, and `--resume` completes them to the rows of an
uninterrupted run; a second run writing the same report folder is refused; selections are exact.

Whole runs are subprocesses on one small tracr task with tiny data sets. A method from a test
module sleeps while ``ABENCH_TEST_SLOW`` is set, so the interrupt always lands mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from abench.leaderboard import strip_volatile
from abench.report_folder import JOURNAL, LOCK, PARTIAL

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "test_leaderboard.py"
TINY = ["--n-fit", "16", "--n-eval", "24"]
SLOW_METHOD = '''
import os, time
from ablations import register


@register("slow_zero")  # zero ablation that, while ABENCH_TEST_SLOW is set, first sleeps long enough to be interrupted
def slow_zero(batch):
    if os.environ.get("ABENCH_TEST_SLOW"):
        time.sleep(120)
    return batch.clean * 0
'''
REPORTS = ("leaderboard.json", "leaderboard.md", "leaderboard.tex", "leaderboard.html")


def bench_cmd(report_dir: Path, module: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", str(BENCH), "-q", "-p", "no:cacheprovider", "--benchmark-disable",
            "--tasks", "reverse", "--methods", "zero,slow_zero,mean", "--ablation-module", str(module),
            "--report-dir", str(report_dir), "--threads", "1", *TINY, *extra]


def _env(slow: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST") and k != "ABENCH_TEST_SLOW"}
    return {**env, "ABENCH_TEST_SLOW": "1"} if slow else env


def _rows(doc: dict) -> list[dict]:
    return [strip_volatile(r) for r in doc["rows"]]


@pytest.fixture
def slow_module(tmp_path) -> Path:
    p = tmp_path / "slow_method.py"
    p.write_text(SLOW_METHOD)
    return p


def _interrupt(report_dir: Path, module: Path, sig: int) -> subprocess.CompletedProcess:
    """Start a run, wait until its first row is in the journal, send ``sig``; the finished process."""
    # output to a file, not a pipe nobody reads until the signal: a run that writes more than a pipe holds would block
    log = open(report_dir.parent / f"interrupted-{sig}.log", "w+")
    # SIGINT back to its default in the run: a shell that starts a job in the background (``.ci/run &``) ignores
    # SIGINT for the job's whole tree, and a Python started with it ignored never raises KeyboardInterrupt
    proc = subprocess.Popen(bench_cmd(report_dir, module), cwd=ROOT, env=_env(slow=True), stdout=log,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    journal = report_dir / JOURNAL
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if journal.is_file() and '"row"' in journal.read_text():
            break
        time.sleep(0.2)
    def output() -> str:
        log.flush()
        log.seek(0)
        return log.read()

    assert proc.poll() is None, f"the run ended before it could be interrupted:\n{output()}"
    time.sleep(0.5)  # inside slow_zero's sleep now
    proc.send_signal(sig)
    proc.wait(timeout=300)  # a guard against a hang, not a speed target: on a loaded 2-core CI machine 120 s ran out
    out = output()
    log.close()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_keeps_the_reports_and_resume_completes(tmp_path, slow_module, sig):
    report_dir = tmp_path / "reports"
    report_dir.mkdir()
    for name in REPORTS:  # the tracked reports an interrupted run must leave byte for byte
        (report_dir / name).write_bytes(f"committed {name}\n".encode())
    before = {name: (report_dir / name).read_bytes() for name in REPORTS}

    res = _interrupt(report_dir, slow_module, sig)
    assert res.returncode == 2, res.stdout
    assert {name: (report_dir / name).read_bytes() for name in REPORTS} == before
    partial = json.loads((report_dir / PARTIAL).read_text())
    assert partial["partial"]["reason"] == "interrupted"
    assert [(r["task"], r["method"]) for r in partial["rows"]] == [("reverse", "zero")]
    assert "interrupted: 1 of 3 rows saved" in res.stdout
    assert not (report_dir / LOCK).exists()  # released on the way out

    fresh_dir = tmp_path / "fresh"  # a plain run (no --resume) finding the interrupted run's journal
    fresh_dir.mkdir()
    (fresh_dir / JOURNAL).write_bytes((report_dir / JOURNAL).read_bytes())
    resumed = subprocess.run(bench_cmd(report_dir, slow_module, "--resume"), cwd=ROOT, env=_env(slow=False),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "--resume: reused 1 finished rows of the interrupted run" in resumed.stdout, resumed.stdout
    assert not (report_dir / PARTIAL).exists() and not (report_dir / JOURNAL).exists()
    fresh = subprocess.run(bench_cmd(fresh_dir, slow_module), cwd=ROOT, env=_env(slow=False), capture_output=True,
                           text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "an interrupted run's 1 finished rows were not reused (no --resume)" in fresh.stdout, fresh.stdout
    assert (fresh_dir / (JOURNAL + ".discarded")).is_file()  # kept, not silently deleted
    got = json.loads((report_dir / "leaderboard.json").read_text())
    want = json.loads((fresh_dir / "leaderboard.json").read_text())
    assert [(r["task"], r["method"]) for r in got["rows"]] == [("reverse", m) for m in ("zero", "slow_zero", "mean")]
    assert _rows(got) == _rows(want)


def test_a_second_writer_of_the_report_folder_is_refused(tmp_path, slow_module):
    report_dir = tmp_path / "reports"
    report_dir.mkdir()
    (report_dir / LOCK).write_text(f"{os.getpid()}\n")  # held by a live process: this test's
    res = subprocess.run(bench_cmd(report_dir, slow_module), cwd=ROOT, env=_env(slow=False), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 4, res.stdout + res.stderr
    assert f"another run (pid {os.getpid()}) is writing it" in res.stderr + res.stdout
    assert (report_dir / LOCK).read_text() == f"{os.getpid()}\n"  # not taken over
    (report_dir / LOCK).write_text("999999999\n")  # a process that is gone: the lock is stale and taken
    res = subprocess.run(bench_cmd(report_dir, slow_module), cwd=ROOT, env=_env(slow=False), capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (report_dir / LOCK).exists()


def test_a_unit_test_run_leaves_the_benchmark_lock_and_journal_alone(tmp_path, pytester):
    """`pytest tests` beside a benchmark run: neither refused by the run's lock nor resetting its journal."""
    report_dir = tmp_path / "reports"
    report_dir.mkdir()
    (report_dir / LOCK).write_text(f"{os.getpid()}\n")
    (report_dir / JOURNAL).write_text('{"row": {"task": "t", "method": "m"}}\n')
    pytester.makepyfile(test_one="def test_one():\n    assert True\n")
    res = pytester.runpytest_inprocess("-p", "abench.pytest_plugin", "-p", "no:cacheprovider", "--report-dir", str(report_dir))
    assert res.ret == 0, res.outlines
    assert (report_dir / LOCK).read_text() == f"{os.getpid()}\n"
    assert (report_dir / JOURNAL).read_text() == '{"row": {"task": "t", "method": "m"}}\n'
