"""The engine computes only what the scorer reads (``interventions.readout``): a forward from any layer to
some positions and output columns equals the full forward cut afterwards (1e-5) on every kind of model the
suite holds, and is the full forward exactly when every cell is read; the engine with the logit-difference
scorer equals the per-node and per-set loops on one task of every default family; bad readouts are refused
by name."""

import pytest
import torch

from abench.bench import task_data
from abench.effects import joint_effects, node_effects
from abench.scorers import LogitDiffScorer
from ablations import make_method
from interventions.blocks import can_cut_last_block
from interventions.readout import FULL, Readout, run_from
from tasks.registry import DEFAULT_FAMILIES, families, load_task
from tasks.scale import SHAPES, scale_task
from tests.test_batched_effects import any_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TOL = 1e-5
# every block kind the suite holds: tracr (no norm, attention and MLP), SIIT without a norm, with LayerNorm, with
# RMSNorm, causal; the scale shapes at reduced width (gpt2: the last block cut; Pythia, Llama: not)
MODELS = ["reverse", "siit_back2", "siit_back2_ln", "siit_back2_rms", "siit_back2_causal"] + [
    f"scale:{s}" for s in SHAPES]
READOUTS = {
    "last position, two columns": dict(positions=(-1,), vocab=[1, 2]),
    "two positions, every column": dict(positions=(1, -1), vocab=None),
    "every position, one column": dict(positions=None, vocab=[0]),
}


def model_and_tokens(name: str):
    if name.startswith("scale:"):
        task = scale_task(name.split(":")[1], width=8, lengths=(6,))
    else:
        task = any_task(name)
    return task.model, task.sample_with_counterfactual(3, 1)[0][0]


@pytest.mark.parametrize("readout", list(READOUTS))
@pytest.mark.parametrize("name", MODELS)
def test_a_forward_from_any_layer_to_the_cells_read_equals_the_full_forward_cut(name, readout):
    model, tokens = model_and_tokens(name)
    spec = READOUTS[readout]
    r = Readout(positions=spec["positions"], vocab=None if spec["vocab"] is None else torch.tensor(spec["vocab"]))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        for layer in range(model.cfg.n_layers + 1):
            x = cache[f"blocks.{layer}.hook_resid_pre"] if layer < model.cfg.n_layers else cache[
                f"blocks.{layer - 1}.hook_resid_post"]
            want = r.select(model(x, start_at_layer=layer))
            got = run_from(model, x, layer, r)
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, atol=TOL, rtol=TOL)


def test_the_last_block_is_cut_where_it_can_be():
    cut = {s: can_cut_last_block(scale_task(s, width=8).model) for s in SHAPES}
    assert cut == {"gpt2_small": True, "pythia_70m": False, "llama_gqa": False}  # rotary: run whole, then cut
    assert can_cut_last_block(any_task("siit_back2_causal").model)


@pytest.mark.parametrize("name", ["siit_back2_ln", "scale:gpt2_small", "scale:llama_gqa"])
def test_reading_every_cell_is_the_full_forward_exactly(name):
    """The leaderboard's scorers read every cell: their numbers cannot move."""
    model, tokens = model_and_tokens(name)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        x = cache["blocks.1.hook_resid_pre"]
        assert torch.equal(run_from(model, x, 1, FULL), model(x, start_at_layer=1))


def test_the_cached_unembedding_follows_a_weight_change():
    model, tokens = model_and_tokens("siit_back2")
    r = Readout(positions=(-1,), vocab=torch.tensor([0, 3]))
    with torch.no_grad():
        x = model.run_with_cache(tokens)[1]["blocks.1.hook_resid_pre"]
        before = run_from(model, x, 1, r)
        model.unembed.W_U[:, 3] += 1.0
        after = run_from(model, x, 1, r)
        torch.testing.assert_close(after, r.select(model(x, start_at_layer=1)), atol=TOL, rtol=TOL)
        model.unembed.W_U[:, 3] -= 1.0
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(positions=()), ValueError, "at least one position"),
    (dict(vocab=torch.tensor([3, 1])), ValueError, "ascending and unique"),
    (dict(vocab=torch.tensor([[1, 2]])), ValueError, "1-d long tensor"),
    (dict(vocab=torch.tensor([1.0, 2.0])), ValueError, "1-d long tensor"),
])
def test_a_bad_readout_is_refused_by_name(kwargs, error, words):
    with pytest.raises(error, match=words):
        Readout(**kwargs)


def test_a_position_outside_the_output_or_an_unread_id_is_an_error():
    r = Readout(positions=(7,), vocab=torch.tensor([1, 4]))
    with pytest.raises(IndexError, match="outside an output of 5 positions"):
        r.select(torch.zeros(2, 5, 6))
    with pytest.raises(KeyError, match=r"\[2\]"):
        r.local_ids(torch.tensor([[1, 2]]))
    assert r.local_ids(torch.tensor([[4, 1]])).tolist() == [[1, 0]]


# one categorical task of each default family that has one (numerical outputs have no logit difference)
FAMILY_SAMPLE = {fam: next((n for n in families().get(fam, []) if load_task(n).output == "categorical"), None)
                 for fam in DEFAULT_FAMILIES}


def _close(x: float, y: float) -> bool:
    """Equal at ``TOL``, relative once the value is above 1: squared logit differences reach 10^2, where float32 keeps
    about 7 digits."""
    return abs(x - y) <= TOL * max(1.0, abs(y))


@pytest.mark.parametrize("family", [f for f, n in FAMILY_SAMPLE.items() if n])
def test_the_engine_reading_the_logit_difference_equals_the_loops(family):
    task = load_task(FAMILY_SAMPLE[family])
    fit, ev = task_data(task, n_fit=16, n_eval=24, seed=5)
    vocab = task.model.cfg.d_vocab_out
    answers = lambda toks: torch.stack([toks[:, 1] % vocab, (toks[:, 1] + 1) % vocab], 1)  # noqa: E731
    for method in ("zero", "mean", "resample"):
        m = make_method(method).fit(fit)
        fast = node_effects(m, ev, scorer=LogitDiffScorer(answers), max_rows=64)
        slow = node_effects(m, ev, batched=False, scorer=LogitDiffScorer(answers))
        for a, b in zip(fast, slow, strict=True):
            assert a.name == b.name and _close(a.effect, b.effect) and _close(a.continuous, b.continuous), (method, a, b)
        assert any(e.continuous > 0 for e in fast)  # the check can fail: ablations did move the logit difference
        sets = {"circuit": [n.name for n in task.nodes if n.in_circuit] or [task.nodes[0].name],
                "all": [n.name for n in task.nodes]}
        joint = joint_effects(m, ev, sets, fast, scorer=LogitDiffScorer(answers))
        joint_loop = joint_effects(m, ev, sets, fast, scorer=LogitDiffScorer(answers), batched=False)
        for a, b in zip(joint, joint_loop, strict=True):
            assert _close(a["effect"], b["effect"]) and _close(a["continuous"], b["continuous"]), (method, a, b)


def test_a_hook_on_the_head_or_the_last_block_is_honoured():
    """A part computed by hand would skip a user's hook: with one attached, TransformerLens' own forward runs."""
    model, tokens = model_and_tokens("scale:gpt2_small")
    r = Readout(positions=(-1,), vocab=torch.tensor([1, 2]))
    calls = []
    with torch.no_grad():
        x = model.run_with_cache(tokens)[1]["blocks.1.hook_resid_pre"]
        for module in (model.unembed, model.blocks[-1]):
            handle = module.register_forward_hook(lambda *args: calls.append(1))
            try:
                before = len(calls)
                torch.testing.assert_close(run_from(model, x, 1, r), r.select(model(x, start_at_layer=1)), atol=TOL, rtol=TOL)
                assert len(calls) - before == 2  # once in run_from, once in the reference forward
            finally:
                handle.remove()
