"""`pytest benchmarks`: every selected task x method becomes one leaderboard row.

``test_task_setup[task]`` runs first and is timed on its own: loading the task (tracr
compilation, SIIT weights), building its fit and eval data and its ground-truth check, so the
per-method timings of ``test_ablation`` compare methods only. A task that fails to set up fails
that test once, with the reason; its method cases are skipped and the leaderboard lists it under
``failed_tasks``.

A method case fails when its method fails (raises, returns NaN/inf or a wrong shape, changes the
shared data); the row is still written, with the reason, and every other row completes.
"""

import pytest


def test_task_setup(leaderboard_task, abench_session, benchmark):
    benchmark.group = f"task {leaderboard_task}"
    reason = benchmark.pedantic(abench_session.setup_task, args=(leaderboard_task,), rounds=1, iterations=1)
    if reason:
        pytest.fail(reason, pytrace=False)


def test_ablation(leaderboard_case, abench_session, benchmark):
    benchmark.group = f"task {leaderboard_case[0]}"
    reason = abench_session.setup_task(leaderboard_case[0])  # untimed: done by test_task_setup unless deselected
    if reason:
        if abench_session.method_case_reports(leaderboard_case[0]):
            pytest.fail(reason, pytrace=False)
        pytest.skip(f"task {leaderboard_case[0]} did not set up (reported once, by its test_task_setup)")
    row = benchmark.pedantic(abench_session.run_case, args=(leaderboard_case,), rounds=1, iterations=1)
    if not row.ok:
        pytest.fail(f"{row.task}-{row.method}: {row.error}", pytrace=False)
    benchmark.extra_info.update(
        {k: row.get(k) for k in ("auroc", "gap", "fpr_at_full_recall", "mean_effect_in", "mean_effect_out", "fit_seconds", "effect_seconds", "fit_seconds_per_node")}
    )
