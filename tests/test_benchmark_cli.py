"""`pytest benchmarks` as a user runs it: bad names, a plugin file, failing methods."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bench(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_leaderboard.py"), "-q", "-p", "no:cacheprovider",
           "--benchmark-disable", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize(
    "option, bad, expected",
    [("--tasks", "no_such_task", "unknown task 'no_such_task'; valid names: reverse, sort"),
     ("--methods", "zero,no_such_method", "unknown ablation method 'no_such_method'; valid names: atp, atp_gd, atp_ig, cf_mean, cf_patch")],
)
def test_unknown_name_is_a_one_line_error_listing_valid_names(tmp_path, option, bad, expected):
    res = run_bench(option, bad, "--report-dir", str(tmp_path))
    assert res.returncode == 4, res.stdout + res.stderr
    err_lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(err_lines) == 1 and expected in err_lines[0], res.stderr
    assert not (tmp_path / "leaderboard.json").exists()


def readme_plugin_example() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- plugin-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md lost its plugin example"
    return m.group(1)


BROKEN = '''
import torch
from ablations import register

@register("raises")
def raises(batch):
    raise RuntimeError("boom")

@register("returns_nan")
def returns_nan(batch):
    return batch.clean * float("nan")

@register("wrong_shape")
def wrong_shape(batch):
    return batch.clean[:, :1]
'''


def test_readme_plugin_and_broken_methods_become_rows(tmp_path):
    example = readme_plugin_example()
    assert len(example.strip().splitlines()) <= 30
    (tmp_path / "my_method.py").write_text(example)
    (tmp_path / "broken.py").write_text(BROKEN)
    report = tmp_path / "reports"
    res = run_bench("--tasks", "reverse,frac_prevs", "--methods", "zero,resample", "--ablation-module", str(tmp_path / "my_method.py"),
                    "--ablation-module", str(tmp_path / "broken.py"), "--report-dir", str(report), "--n-fit", "32", "--n-eval", "32",
                    cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr  # the broken methods' tests fail ...
    doc = json.loads((report / "leaderboard.json").read_text())  # ... and the leaderboard is still written
    rows = {(r["task"], r["method"]): r for r in doc["rows"]}
    for task in ("reverse", "frac_prevs"):
        for method in ("zero", "resample", "half_mean"):
            assert rows[(task, method)]["status"] == "ok", rows[(task, method)]
        assert "raised RuntimeError: boom" in rows[(task, "raises")]["error"]
        assert "NaN or inf" in rows[(task, "returns_nan")]["error"]
        assert "returned shape" in rows[(task, "wrong_shape")]["error"]
    assert "half_mean" in [s["method"] for s in doc["summary"]]
    assert "half_mean" in res.stdout  # the terminal leaderboard shows the plugin's row
    assert "FAILED ROW reverse-raises" in res.stdout


def collect(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_peer_comparison_runs_only_when_named_or_asked_for():
    """A plain `pytest benchmarks` leaves the minutes-long peer comparison out (and says so);
    naming the file or --peers brings it back."""
    plain = collect("benchmarks", "--tasks", "hist", "--methods", "zero")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "test_peers.py::" not in plain.stdout
    assert re.search(r"peer comparison not run \(\d+ tests deselected\)", plain.stdout), plain.stdout
    for args in (["benchmarks/test_peers.py"], ["benchmarks", "--peers"]):
        res = collect(*args, "--tasks", "hist", "--methods", "zero")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "test_peers.py::test_peer_all_node_effects" in res.stdout, (args, res.stdout)
        assert "peer comparison not run" not in res.stdout


def test_benchmarks_with_a_task_of_their_own_follow_the_task_selection():
    """--tasks selects every benchmark: the floor runs on the selected SIIT tasks only, the speed
    ratios only when their task is selected; without --tasks both run as before."""
    import importlib.util

    from tasks.registry import families

    spec = importlib.util.spec_from_file_location("speed_benchmark", ROOT / "benchmarks" / "test_speed.py")
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    SPEED_TASK = speed.SPEED_TASK

    siit_tasks = families().get("siit", [])
    if not siit_tasks:
        pytest.fail("no SIIT task is shipped: nothing to select")
    one = siit_tasks[0]
    res = collect("benchmarks", "--tasks", one)
    assert res.returncode == 0, res.stdout + res.stderr
    floor = [line for line in res.stdout.splitlines() if "test_floor.py::" in line]
    assert floor == [f"benchmarks/test_floor.py::test_engine_against_the_floor[{one}]"], floor
    assert "test_speed.py::" not in res.stdout
    res = collect("benchmarks", "--tasks", SPEED_TASK)
    assert "test_speed.py::" in res.stdout and "test_floor.py::" not in res.stdout
    res = collect("benchmarks")
    assert sum("test_floor.py::" in line for line in res.stdout.splitlines()) == len(siit_tasks)
    assert "test_speed.py::" in res.stdout


def test_a_method_loop_leaves_out_the_engines_own_benchmarks_unless_named():
    """--methods / --ablation-module time the user's methods: the floor and batched-vs-loop (resample only) are left out."""
    res = collect("benchmarks", "--methods", "zero")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "test_floor.py::" not in res.stdout and "test_speed.py::" not in res.stdout
    assert "test_leaderboard.py::test_ablation[" in res.stdout
    named = collect("benchmarks", "benchmarks/test_speed.py", "--methods", "zero")
    assert "test_speed.py::" in named.stdout and "test_floor.py::" not in named.stdout
