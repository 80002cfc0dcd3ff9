"""`pytest benchmarks`: every selected task x method becomes one leaderboard row.

A test fails when its method fails (raises, returns NaN/inf or a wrong shape); the row is still
written, with the reason, and every other row completes.
"""

import pytest


def test_ablation(leaderboard_case, abench_session, benchmark):
    benchmark.group = f"task {leaderboard_case[0]}"
    row = benchmark.pedantic(abench_session.run_case, args=(leaderboard_case,), rounds=1, iterations=1)
    if row["status"] != "ok":
        pytest.fail(f"{row['task']}-{row['method']}: {row['error']}", pytrace=False)
    benchmark.extra_info.update(
        {k: row[k] for k in ("auroc", "gap", "fpr_at_full_recall", "mean_effect_in", "mean_effect_out", "fit_seconds", "effect_seconds", "fit_seconds_per_node")}
    )
