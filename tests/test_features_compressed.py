"""Features in superposition: the joint coordinate write (``interventions.hooks.write_coordinates``) and the
compressed feature tasks (``tasks.features.compress``): the shipped projection's card holds on fresh inputs,
every compressed task passes its ground-truth check, every out-of-circuit feature set together keeps the
output, and the batched engine equals the per-node and per-set loops along non-orthogonal directions."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from abench.bench import task_data
from abench.effects import joint_effects, node_effects
from abench.ground_truth import FAITHFULNESS_BAR, check_task
from ablations import DEFAULT_METHODS, ESTIMATOR_METHODS, make_method
from interventions.hooks import replacing_hooks, write_coordinates
from interventions.nodes import Node
from tasks.features import compress
from tasks.features.merge import merge
from tasks.tracr.compiled import build_model, decode_encoding

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TOL = 1e-5
SHIPPED = compress.shipped()
METHODS = [f"{m}[max_steps=3]" if m.startswith("optimal") else m for m in DEFAULT_METHODS if m not in ESTIMATOR_METHODS]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(3, 8), m=st.integers(1, 6))
def test_setting_coordinates_jointly_hits_every_target_and_moves_only_their_span(seed, d, m):
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(d, m, generator=g, dtype=torch.float64)
    D = D / D.norm(dim=0, keepdim=True)  # unit, not orthogonal
    x = torch.randn(5, 3, d, generator=g, dtype=torch.float64)
    active = torch.rand(5, m, generator=g) < 0.6
    target = torch.randn(5, 3, m, generator=g, dtype=torch.float64)
    out = write_coordinates(x, D, active, target)
    for r in range(5):
        cols = active[r].nonzero().flatten()
        if len(cols) == 0:
            torch.testing.assert_close(out[r], x[r])
            continue
        Dr = D[:, cols]
        if len(cols) <= d and torch.linalg.matrix_rank(Dr) == len(cols):  # independent: every target is reached
            torch.testing.assert_close(out[r] @ Dr, target[r][:, cols], atol=1e-8, rtol=1e-8)
        change = out[r] - x[r]  # [3, d], in the span of the active directions
        residual = change - change @ Dr @ torch.linalg.pinv(Dr)
        assert residual.abs().max() < 1e-8


def test_with_orthonormal_directions_it_is_each_directions_own_replacement():
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(6, 3, generator=g, dtype=torch.float64))
    x, target = torch.randn(4, 2, 6, generator=g, dtype=torch.float64), torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    active = torch.ones(4, 3, dtype=torch.bool)
    expected = x.clone()
    for j in range(3):
        d = Q[:, j : j + 1]
        expected = expected + (target[..., j : j + 1] - expected @ d) @ d.T
    torch.testing.assert_close(write_coordinates(x, Q, active, target), expected)


def test_the_hook_sets_overlapping_features_jointly():
    """Two non-orthogonal features set in one hook: both coordinates land on their values (sequential writes would not)."""
    d1 = torch.tensor([[1.0], [0.0], [0.0]])
    d2 = torch.tensor([[0.6], [0.8], [0.0]])
    a, b = Node(0, "feature", feature="a", direction=d1), Node(0, "feature", feature="b", direction=d2)
    x = torch.zeros(2, 1, 3)
    (_, hook), = replacing_hooks([(a, slice(None), torch.full((2, 1, 1), 1.0)), (b, slice(None), torch.full((2, 1, 1), 2.0))])
    out = hook(x, None)
    torch.testing.assert_close(out @ d1, torch.full((2, 1, 1), 1.0))
    torch.testing.assert_close(out @ d2, torch.full((2, 1, 1), 2.0))


def test_compressed_tasks_are_shipped():
    assert SHIPPED, "no compressed feature task passed; train them: python -m tasks.features.compress"


@pytest.fixture(scope="module", params=SHIPPED, ids=lambda pq: f"{pq[0]}__{pq[1]}")
def compressed(request):
    task = compress.compressed_feature_task(*request.param)
    return (task, *task_data(task, n_fit=32, n_eval=128, seed=3))


def test_the_card_holds_on_fresh_inputs(compressed):
    task, _, _ = compressed
    p, q = task.info["programs"]["main"], task.info["programs"]["bystander"]
    card = task.info["projection_card"]
    assert card["passed"] and card["d_small"] < card["n_atoms"]  # fewer dimensions than atoms: superposition
    sd, merged = merge(p, q)
    accuracy = compress.held_out_accuracy(p, build_model(merged, sd), task.model, decode_encoding(merged), seed=31_337)
    assert accuracy >= compress.ACCURACY_BAR, f"{task.name}: accuracy {accuracy:.4f} on fresh inputs (card {card['accuracy']:.4f})"


def test_every_compressed_task_passes_its_ground_truth_check(compressed):
    task, _, ev = compressed
    check = check_task(task, ev)
    assert check is not None and check.passed, check.reasons if check else "no check"
    assert check.faithfulness >= FAITHFULNESS_BAR


def test_every_out_of_circuit_feature_set_together_keeps_the_output(compressed):
    task, fit, ev = compressed
    m = make_method("resample").fit(fit)
    single = node_effects(m, ev)
    sets = {"out of circuit": [n.name for n in ev.nodes if not n.in_circuit], "circuit": [n.name for n in ev.nodes if n.in_circuit]}
    joint = {j["name"]: j for j in joint_effects(m, ev, sets, single)}
    assert joint["out of circuit"]["effect"] <= 1 - FAITHFULNESS_BAR
    assert joint["circuit"]["effect"] > 0.0


@pytest.mark.parametrize("method", METHODS)
def test_the_engine_equals_the_loops_along_overlapping_directions(method):
    if not SHIPPED:
        pytest.fail("no compressed feature task shipped")
    task = compress.compressed_feature_task(*SHIPPED[0])
    fit, ev = task_data(task, n_fit=16, n_eval=24, seed=5)
    m = make_method(method).fit(fit)
    fast, slow = node_effects(m, ev, max_rows=40), node_effects(m, ev, batched=False)
    for a, b in zip(fast, slow, strict=True):
        assert a.name == b.name and abs(a.effect - b.effect) <= TOL and abs(a.continuous - b.continuous) <= TOL, (a, b)
    sets = {"circuit": [n.name for n in ev.nodes if n.in_circuit], "first site": [n.name for n in ev.nodes if n.layer == 0],
            "out of circuit": [n.name for n in ev.nodes if not n.in_circuit]}
    for a, b in zip(joint_effects(m, ev, sets, fast), joint_effects(m, ev, sets, fast, batched=False), strict=True):
        assert abs(a["effect"] - b["effect"]) <= TOL and abs(a["continuous"] - b["continuous"]) <= TOL, (a, b)


def test_a_projection_card_that_does_not_name_its_rows_is_refused(tmp_path, monkeypatch):
    """W's rows are matched to the merged model's atoms by name (the merged order may differ on another machine); a
    card without the names is refused, never loaded by position."""
    import json
    import shutil

    p, q = SHIPPED[0]
    name = f"feat_{p}__{q}_compressed"
    for ext in (".json", ".safetensors"):
        shutil.copy(compress.WEIGHTS_DIR / f"{name}{ext}", tmp_path / f"{name}{ext}")
    card = json.loads((tmp_path / f"{name}.json").read_text())
    del card["residual_labels"]
    (tmp_path / f"{name}.json").write_text(json.dumps(card))
    monkeypatch.setattr(compress, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ValueError, match="does not name the merged model's atoms"):
        compress.compressed_feature_task(p, q)
