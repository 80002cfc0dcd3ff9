"""Scale-out: shards merged with `python -m abench merge` equal the serial run; so does xdist."""

import importlib.util
import json
import subprocess
import sys

import pytest

from abench.document import Leaderboard
from abench.leaderboard import strip_volatile
from abench.merge import MergeError, merge
from tests.test_benchmark_cli import ROOT, run_bench

# a SIIT task (ground-truth check in every shard that touches it) and a tracr task
SMALL = ["--tasks", "siit_length,reverse", "--methods", "zero,resample", "--n-fit", "32", "--n-eval", "48"]


def load(folder):
    return json.loads((folder / "leaderboard.json").read_text())


def merge_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "abench", "merge", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    res = run_bench(*SMALL, "--report-dir", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    return load(out)


def test_task_shards_merged_equal_the_serial_run(serial, tmp_path):
    shards = []
    for i, task in enumerate(["siit_length", "reverse"]):
        args = list(SMALL)
        args[1] = task  # --tasks <one task>: a machine per task
        res = run_bench(*args, "--report-dir", str(tmp_path / f"shard{i}"))
        assert res.returncode == 0, res.stdout + res.stderr
        shards.append(str(tmp_path / f"shard{i}" / "leaderboard.json"))
    res = merge_cli(*shards, "--report-dir", str(tmp_path / "merged"))
    assert res.returncode == 0, res.stdout + res.stderr
    merged = load(tmp_path / "merged")
    assert strip_volatile(merged) == strip_volatile(serial)
    assert [p.name for p in sorted((tmp_path / "merged").iterdir())] == ["leaderboard." + e for e in ("html", "json", "md", "tex")]


@pytest.mark.skipif(importlib.util.find_spec("pytest_split") is None, reason="pytest-split not installed (pip install -e '.[test]')")
def test_pytest_split_groups_merged_equal_the_serial_run(serial, tmp_path):
    shards = []
    for group in (1, 2):
        res = run_bench(*SMALL, "--splits", "2", "--group", str(group), "--report-dir", str(tmp_path / f"g{group}"))
        assert res.returncode == 0, res.stdout + res.stderr
        shards.append(load(tmp_path / f"g{group}"))
    # each group ran part of the rows, and together all of them
    assert all(0 < len(s["rows"]) < len(serial["rows"]) for s in shards)
    merged, _ = merge([Leaderboard.from_json(s) for s in shards[::-1]])  # in any order: the rows go back to the selection's order
    assert strip_volatile(merged.to_json()) == strip_volatile(serial)


def test_xdist_gateways_equal_the_serial_run(serial, tmp_path):
    res = run_bench(*SMALL, "--tx", "2*popen", "--dist", "load", "--report-dir", str(tmp_path / "x"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert strip_volatile(load(tmp_path / "x")) == strip_volatile(serial)


def test_merge_refuses_overlapping_or_inconsistent_shards(serial, tmp_path):
    with pytest.raises(MergeError, match="is in both"):
        merge([Leaderboard.from_json(serial)] * 2, ["a.json", "b.json"])
    other = json.loads(json.dumps(serial))
    other["environment"]["n_eval"] = 999
    other["rows"] = []
    with pytest.raises(MergeError, match="n_eval"):
        merge([Leaderboard.from_json(serial), Leaderboard.from_json(other)])
    (tmp_path / "bad.json").write_text("[]")
    res = merge_cli(str(tmp_path / "bad.json"), "--report-dir", str(tmp_path / "m"))
    assert res.returncode == 2 and "bad.json: not a leaderboard" in res.stderr


def test_replace_takes_a_rerun_tasks_rows_from_the_later_shard(serial, tmp_path):
    """--replace: the serial run plus a rerun of one of its tasks is the serial run with that task's rows,
    check and failures from the rerun (here the rerun's numbers are marked so the replacement is visible)."""
    rerun = json.loads(json.dumps(serial))
    rerun["rows"] = [r for r in rerun["rows"] if r["task"] == "reverse"]
    rerun["ground_truth_checks"] = {t: c for t, c in rerun["ground_truth_checks"].items() if t == "reverse"}
    rerun["selection"] = {"tasks": ["reverse"], "methods": serial["selection"]["methods"]}
    for r in rerun["rows"]:
        r["effect_seconds"] = -1.0  # a number only the rerun has
    merged, notes = merge([Leaderboard.from_json(serial), Leaderboard.from_json(rerun)], ["full", "rerun"], replace_tasks=True)
    assert notes == ["full: 1 task(s) replaced by a later shard: reverse"]
    got = merged.to_json()
    assert [(r["task"], r["method"]) for r in got["rows"]] == [(r["task"], r["method"]) for r in serial["rows"]]
    assert all((r["effect_seconds"] == -1.0) == (r["task"] == "reverse") for r in got["rows"])
    with pytest.raises(MergeError, match="is in both"):  # without --replace the overlap is refused as before
        merge([Leaderboard.from_json(serial), Leaderboard.from_json(rerun)])


def test_a_family_keeps_the_ground_truth_meaning_its_shard_recorded(serial):
    """The merging process need not have loaded the module that describes a family's ground truth: the shard's record wins."""
    shard = json.loads(json.dumps(serial))
    fam = next(iter(shard["ground_truth"]))
    shard["ground_truth"][fam]["meaning"] = "as recorded by the shard that ran it"
    merged, _ = merge([Leaderboard.from_json(shard)])
    assert merged.ground_truth[fam]["meaning"] == "as recorded by the shard that ran it"
