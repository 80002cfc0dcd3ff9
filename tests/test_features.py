"""Feature nodes (residual directions) on the oracle feature tasks (``tasks.features.family``): the labels
read off the weights equal the behaviour on every pair (resampling an out-of-circuit atom never changes a
prediction, resampling an in-circuit atom that varies does) and every task passes its ground-truth check
against its main program's own tracr model; every out-of-circuit feature resampled
together keeps every prediction (faithfulness 1 exactly on the rotated model); ablating along a
direction moves only its coordinates; the batched engine equals the per-node and per-set loops at 1e-5
for every method kind; a malformed feature node is refused by name."""

import pytest
import torch

from abench.bench import task_data
from abench.effects import joint_effects, node_effects
from abench.ground_truth import HL_TOLERANCE, check_task
from ablations import DEFAULT_METHODS, ESTIMATOR_METHODS, make_method
from interventions.hooks import node_activation, replacing_hooks
from interventions.nodes import Node
from tasks.features.family import feature_task
from tasks.features.merge import PAIRS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TOL = 1e-5
METHODS = [f"{m}[max_steps=3]" if m.startswith("optimal") else m for m in DEFAULT_METHODS if m not in ESTIMATOR_METHODS]


@pytest.fixture(scope="module", params=PAIRS, ids=lambda pq: f"{pq[0]}__{pq[1]}")
def task_and_data(request):
    task = feature_task(*request.param)
    return (task, *task_data(task, n_fit=32, n_eval=128, seed=3))


def test_labels_from_the_weights_equal_the_behaviour(task_and_data):
    task, fit, ev = task_and_data
    assert any(n.in_circuit for n in task.nodes) and not all(n.in_circuit for n in task.nodes)
    effects = node_effects(make_method("resample").fit(fit), ev)
    for node, e in zip(ev.nodes, effects, strict=True):
        varies = any(bool(ev.acts[node.name][g].std(0).max() > 1e-3) for g in range(ev.n_groups))  # beyond float noise
        if not node.in_circuit:
            assert e.effect == 0.0, e
        elif varies:
            assert e.effect > 0.0, e


def test_every_task_passes_its_ground_truth_check(task_and_data):
    """Resample separates the units perfectly (AUROC 1, gap > 0; an in-circuit variable's atoms swapped
    together are one unit), each variable swap moves the output as the same swap in P's own tracr model
    does, and the bystanders' atoms resampled together keep the output."""
    task, fit, ev = task_and_data
    check = check_task(task, ev)
    assert check is not None and check.passed, check.reasons
    assert check.auroc == 1.0 and check.faithfulness == 1.0 and check.max_abs_diff <= HL_TOLERANCE
    assert len(task.correspondence) >= 2


def test_every_out_of_circuit_feature_resampled_together_keeps_every_prediction(task_and_data):
    task, fit, ev = task_and_data
    m = make_method("resample").fit(fit)
    single = node_effects(m, ev)
    sets = {"out of circuit": [n.name for n in ev.nodes if not n.in_circuit],
            "circuit": [n.name for n in ev.nodes if n.in_circuit]}
    joint = {j["name"]: j for j in joint_effects(m, ev, sets, single)}
    assert joint["out of circuit"]["effect"] == 0.0
    assert joint["circuit"]["effect"] > 0.0


@pytest.mark.parametrize("method", METHODS)
def test_the_engine_equals_the_loops_along_directions(method):
    task = feature_task("back2", "prev_prev")
    fit, ev = task_data(task, n_fit=16, n_eval=24, seed=5)
    m = make_method(method).fit(fit)
    fast, slow = node_effects(m, ev, max_rows=40), node_effects(m, ev, batched=False)
    for a, b in zip(fast, slow, strict=True):
        assert a.name == b.name and abs(a.effect - b.effect) <= TOL and abs(a.continuous - b.continuous) <= TOL, (a, b)
    sets = {"circuit": [n.name for n in ev.nodes if n.in_circuit], "first site": [n.name for n in ev.nodes if n.layer == 0]}
    for a, b in zip(joint_effects(m, ev, sets, fast), joint_effects(m, ev, sets, fast, batched=False), strict=True):
        assert abs(a["effect"] - b["effect"]) <= TOL and abs(a["continuous"] - b["continuous"]) <= TOL, (a, b)


def test_replacing_a_feature_moves_only_its_coordinates():
    task = feature_task("back2", "prev_prev")
    node, other = task.nodes[0], task.nodes[1]
    tokens = task.sample_with_counterfactual(4, 0)[0][0]
    value = torch.full((tokens.shape[0], tokens.shape[1], node.width), 3.0)
    seen = {}

    def grab(act, hook):
        seen["x"] = act
        return act

    with torch.no_grad():
        _, cache = task.model.run_with_cache(tokens)
        task.model.run_with_hooks(tokens, fwd_hooks=replacing_hooks([(node, slice(None), value)]) + [(node.hook_name, grab)])
    before, after = cache[node.hook_name], seen["x"]
    torch.testing.assert_close(node_activation(after, node), value)
    torch.testing.assert_close(node_activation(after, other), node_activation(before, other), atol=TOL, rtol=TOL)
    d = node.direction
    torch.testing.assert_close(after - (after @ d) @ d.T, before - (before @ d) @ d.T, atol=TOL, rtol=TOL)


def test_a_malformed_feature_node_is_refused_by_name():
    with pytest.raises(ValueError, match="needs a name and a direction"):
        Node(0, "feature", feature="x")
    with pytest.raises(ValueError, match="orthonormal"):
        Node(0, "feature", feature="x", direction=torch.ones(4, 1))
    with pytest.raises(ValueError, match="site must be"):
        Node(0, "feature", feature="x", site="hook_z", direction=torch.eye(4)[:, :1])
