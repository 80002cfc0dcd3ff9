"""The gate's tolerance: ``--tolerance`` plus the numeric noise measured across CPU float kernels
(``abench.numeric_noise``, ``abench.compare``); estimator rows gated on their own scale."""

from abench.compare import compare
from abench.document import Leaderboard
from abench.numeric_noise import KERNEL_SETTINGS, describe, measure


def doc(gap: float, auroc: float = 1.0, method: str = "optimal", effects=(0.6, 0.0)) -> Leaderboard:
    nodes = [{"name": f"n{i}", "in_circuit": i == 0, "effect": e} for i, e in enumerate(effects)]
    row = {"task": "t", "family": "siit", "method": method, "status": "ok", "auroc": auroc, "gap": gap, "nodes": nodes}
    summary = {"method": method, "n_tasks": 1, "pooled_auroc": auroc, "mean_gap": gap}
    return Leaderboard.from_json({"rows": [row], "summary_by_family": {"siit": [summary]}, "pooled_tasks": ["t"]})


def test_measure_lists_only_the_numbers_that_moved():
    noise = measure({"default": doc(0.57), "MKL_CBWR=COMPATIBLE": doc(0.54), "SSE4_2": doc(0.56)})
    assert noise["settings"] == ["default", "MKL_CBWR=COMPATIBLE", "SSE4_2"]
    assert set(noise["rows"]) == {"t-optimal"} and abs(noise["rows"]["t-optimal"]["gap"] - 0.03) < 1e-12
    assert "auroc" not in noise["rows"]["t-optimal"]  # it did not move
    assert abs(noise["summaries"]["siit method optimal"]["mean_gap"] - 0.03) < 1e-12


def test_the_gate_allows_tolerance_plus_the_measured_noise_and_no_more():
    base = doc(0.5737)
    plain = compare(doc(0.5424), base, 0.02)  # the move: a regression without a measurement
    assert {(r["where"], r["metric"]) for r in plain} == {("t-optimal", "gap"), ("siit method optimal", "mean_gap")}
    noisy = Leaderboard.from_json({**base.to_json(), "numeric_noise": measure({"default": base, "CBWR": doc(0.5446)})})
    assert compare(doc(0.5424), noisy, 0.02) == []  # 0.0313 <= 0.02 + 0.0291
    worse = compare(doc(0.5237), noisy, 0.02)  # 0.05 > 0.0491: still caught
    assert [(r["where"], r["metric"]) for r in worse] == [("t-optimal", "gap"), ("siit method optimal", "mean_gap")]
    assert abs(worse[0]["allowed"] - (0.02 + 0.5737 - 0.5446)) < 1e-12
    assert "1 kernel" not in describe(noisy) and "2 gated numbers moved" in describe(noisy)
    assert "no measured numeric noise" in describe(base)


def test_an_estimator_row_is_gated_on_its_own_scale():
    """atp_ig's gap of 28 is in its metric's units: 0.02 of its largest effect, not 0.02 absolute."""
    base = doc(28.07, method="atp_ig[zero,steps=5]", effects=(106.8, 0.0))
    assert compare(doc(27.0, method="atp_ig[zero,steps=5]", effects=(106.8, 0.0)), base, 0.02) == []  # 1.07 < 2.136
    late = compare(doc(25.0, method="atp_ig[zero,steps=5]", effects=(106.8, 0.0)), base, 0.02)
    assert [(r["where"], r["metric"]) for r in late] == [("t-atp_ig[zero,steps=5]", "gap"), ("siit method atp_ig[zero,steps=5]", "mean_gap")]


def test_every_kernel_setting_is_an_environment_override():
    assert next(iter(KERNEL_SETTINGS.values())) == {}  # the first run is the CPU's own: the baseline
    assert all(isinstance(k, str) and isinstance(v, str) for env in KERNEL_SETTINGS.values() for k, v in env.items())
