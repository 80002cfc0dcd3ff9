"""Whole `pytest benchmarks` runs: determinism, xdist = serial, baseline comparison."""

import json
import re

from abench.leaderboard import strip_volatile
from tests.test_benchmark_cli import run_bench

SMALL = ["--tasks", "reverse,frac_prevs", "--methods", "zero,mean,resample,noise", "--n-fit", "32", "--n-eval", "48"]

WORSE_MEAN = '''
import torch
from ablations import register
from ablations.basic import Mean


@register("mean", replace=True)  # shadows the built-in on purpose: a deliberately worse "mean" for the regression check
class WorseMean(Mean):
    def ablate(self, batch):  # a no-op: every effect 0, so in- and out-of-circuit nodes tie
        return batch.clean.clone()
'''


def load(folder):
    return json.loads((folder / "leaderboard.json").read_text())


def test_runs_are_deterministic_parallel_equals_serial_and_compare_catches_a_regression(tmp_path):
    base = tmp_path / "baseline.json"
    first = run_bench(*SMALL, "--report-dir", str(tmp_path / "a"), "--save-baseline", str(base))
    assert first.returncode == 0, first.stdout + first.stderr

    again = run_bench(*SMALL, "--report-dir", str(tmp_path / "b"), "--compare", str(base))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "none: every row and method summary within tolerance" in again.stdout
    assert strip_volatile(load(tmp_path / "a")) == strip_volatile(load(tmp_path / "b"))
    assert strip_volatile(load(tmp_path / "a")) == json.loads(base.read_text())

    parallel = run_bench(*SMALL, "-n", "2", "--report-dir", str(tmp_path / "c"))
    assert parallel.returncode == 0, parallel.stdout + parallel.stderr
    assert strip_volatile(load(tmp_path / "a")) == strip_volatile(load(tmp_path / "c"))

    (tmp_path / "worse.py").write_text(WORSE_MEAN)
    worse = run_bench(*SMALL, "--ablation-module", str(tmp_path / "worse.py"), "--report-dir", str(tmp_path / "d"),
                      "--compare", str(base))
    assert worse.returncode == 1, worse.stdout + worse.stderr
    table = worse.stdout.split("regressions against")[1]
    assert "frac_prevs-mean" in table and "method mean" in table
    assert "reverse-zero" not in table  # untouched rows are not reported
    n_regs = int(re.search(r"regressions against \S+: (\d+)", worse.stdout).group(1))
    last = [line for line in worse.stdout.splitlines() if line.strip()][-1]
    assert re.search(rf"\b{n_regs} regressions\b", last), last  # pytest's last line counts them: never a bare "N passed"
