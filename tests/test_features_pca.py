"""PCA feature tasks (``tasks.features.pca``): principal directions are orthonormal and ordered, every scored
direction matches a true atom (|cos| >= 0.7) and takes its label, the rest are reported as mixed and never scored."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.features.family import feature_task
from tasks.features.pca import MATCH_COS, pca_task, principal_directions

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PAIRS = [("back2", "prev_prev"), ("hist", "length")]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(5, 40), d=st.integers(2, 8))
def test_principal_directions_are_orthonormal_and_ordered(seed, n, d):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * torch.linspace(3, 0.5, d)
    v = principal_directions(x)
    assert v.shape[1] == d and v.shape[0] <= min(n - 1, d)
    torch.testing.assert_close(v @ v.T, torch.eye(v.shape[0]), atol=1e-5, rtol=1e-5)
    var = ((x - x.mean(0)) @ v.T).var(0)
    assert bool((var[:-1] >= var[1:] - 1e-5).all())


@pytest.fixture(scope="module", params=PAIRS, ids=lambda pq: f"{pq[0]}__{pq[1]}")
def pair(request):
    return pca_task(*request.param), feature_task(*request.param)


def test_each_scored_direction_matches_an_atom_and_takes_its_label(pair):
    task, oracle = pair
    assert task.nodes and task.info["truth_from"] == oracle.name and task.high_level is None
    assert sorted(task.info["atom_matches"]) == sorted(n.name for n in task.nodes)
    for node in task.nodes:
        atom = next(a for a in oracle.nodes if a.hook_name == node.hook_name and a.feature == task.info["atom_matches"][node.name])
        assert float((atom.direction[:, 0] @ node.direction[:, 0]).abs()) >= MATCH_COS and node.in_circuit == atom.in_circuit
    scored = {n.name for n in task.nodes}
    for hook, mixed in task.info["mixed_directions"].items():  # reported, never scored
        for m in mixed:
            assert f"{hook}[{m['direction']}]" not in scored and m["best_atom_cos"] < MATCH_COS
