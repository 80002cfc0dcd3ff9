"""The ground-truth check: every shipped SIIT model agrees with itself on fresh data.

Under the reference method (``resample``, sources of every length >= the base's) the circuit
separates perfectly (AUROC 1, gap > 0), and every in-circuit node's effect equals its tracr
node's effect on the same interchanges within ``HL_TOLERANCE``.
"""

from __future__ import annotations

import pytest

from abench import bench, leaderboard
from abench.document import Row
from abench.document import GroundTruthCheck
from abench.ground_truth import HL_TOLERANCE, check_task, high_level_effects
from tasks import siit
from tasks.registry import load_task

SHIPPED = siit.shipped()
FRESH_SEED = 4242  # not the leaderboard's default seed


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_passes_its_ground_truth_check(name):
    task = load_task(f"siit_{name}")
    _, ev = bench.task_data(task, n_fit=16, n_eval=256, seed=FRESH_SEED)
    check = check_task(task, ev)
    assert check.passed, f"{name}: " + "; ".join(check.reasons)
    assert check.auroc == 1.0 and check.gap > 0
    # units: every node alone, a redundant set (a backup pair) by its joint effect; one per HL node in the circuit
    in_circuit = [n for n in check.units if n["in_circuit"]]
    assert len(in_circuit) == len(task.correspondence)
    assert all(abs(n["ll_effect"] - n["hl_effect"]) <= HL_TOLERANCE for n in in_circuit)
    # an in-circuit node of a model that follows tracr has the effect its tracr node has: never 0 here
    assert all(n["hl_effect"] > 0 for n in in_circuit), in_circuit


def test_high_level_effects_use_the_same_interchanges_as_the_low_level_model():
    """The tracr model scored as its own "LL" model (identity correspondence) gives identical effects."""
    from tasks.tracr.compiled import tracr_task

    hl = tracr_task("length")
    circ = {n.name: n.name for n in hl.nodes if n.in_circuit}
    task = type(hl)(**{**hl.__dict__, "ground_truth": "resample", "high_level": hl, "correspondence": circ})
    _, ev = bench.task_data(task, n_fit=16, n_eval=64, seed=3)
    check = check_task(task, ev)
    effects = high_level_effects(task, ev)
    for n in check.nodes:
        if n["in_circuit"]:
            assert n["hl_effect"] == n["ll_effect"] == effects[n["name"]]["hl_effect"]
            assert n["hl_effect"] > 0.2  # length nodes change the output under cross-length sources


def test_failed_check_leaves_the_task_out_of_the_pooled_numbers():
    rows = [
        Row(task=t, family="siit", ground_truth="resample", method="zero", status="ok",
            measures={"auroc": a, "gap": 0.1, "fpr_at_full_recall": 0.0, "mean_effect_in": 0.5, "mean_effect_out": 0.0,
                      "fit_seconds": 0.0, "effect_seconds": 0.0, "seconds": 0.0},
            nodes=[{"name": "a", "in_circuit": True, "effect": e_in}, {"name": "b", "in_circuit": False, "effect": 0.1}])
        for t, a, e_in in (("good", 1.0, 0.5), ("bad", 0.0, 0.0))
    ]
    def check(task, passed, reasons):
        return GroundTruthCheck(task=task, reference_method="resample", hl_tolerance=HL_TOLERANCE, passed=passed, reasons=reasons,
                                auroc=1.0, gap=0.1, max_abs_diff=0.0, faithfulness_bar=0.99, faithfulness=1.0,
                                completeness_ll=0.5, completeness_hl=0.5, completeness_abs_diff=0.0)

    checks = {"good": check("good", True, []), "bad": check("bad", False, ["x"])}
    doc = leaderboard.build(rows, {}, checks=checks).to_json()
    assert [r.ground_truth_check for r in rows] == [None, None]  # the rows handed in are not changed
    assert doc["excluded_tasks"] == {"bad": ["x"]}
    assert doc["pooled_tasks"] == ["good"]
    assert doc["summary"][0]["n_tasks"] == 1 and doc["summary"][0]["pooled_auroc"] == 1.0
    assert [r["ground_truth_check"] for r in doc["rows"]] == ["passed", "failed"]


BACKUP = [n for n in SHIPPED if siit.family_of(n) == siit.BACKUP_FAMILY]


@pytest.mark.skipif(not BACKUP, reason="no shipped SIIT model with a backup pair")
@pytest.mark.parametrize("name", BACKUP)
def test_backup_pair_joint_effect_matches_hl_while_single_zero_effects_vanish(name):
    """The pair ablated together has its HL node's effect; zero-ablating either member alone changes
    (almost) nothing, since its partner carries the node: single-node ablation under-reports each."""
    from abench.effects import joint_effects, node_effects
    from ablations.basic import Resample, Zero

    task = load_task(f"siit_{name}")
    assert task.family == siit.BACKUP_FAMILY and task.joint_sets
    _, ev = bench.task_data(task, n_fit=16, n_eval=256, seed=FRESH_SEED)
    hl = high_level_effects(task, ev)
    for label, members in task.joint_sets.items():
        unit = "+".join(members)
        assert hl[unit]["hl_effect"] > 0.2  # the HL node matters
        single_r = node_effects(Resample(), ev)
        (joint_r,) = [j for j in joint_effects(Resample(), ev, {unit: members}, single_r)]
        assert abs(joint_r["effect"] - hl[unit]["hl_effect"]) <= HL_TOLERANCE, joint_r
        single_z = {e.name: e.effect for e in node_effects(Zero(), ev)}
        (joint_z,) = joint_effects(Zero(), ev, {unit: members}, node_effects(Zero(), ev))
        for m in members:  # each member zeroed alone: its partner carries the node (backup accuracy >= the bar)
            assert single_z[m] <= 2 * (1 - siit.PASS_BAR), (m, single_z[m])  # backup accuracy and accuracy both >= the bar
        assert joint_z["effect"] > 0.2, joint_z  # both zeroed: the node is gone
