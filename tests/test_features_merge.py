"""The features family's merged models (``tasks.features.merge``): a main program P and a bystander Q
merged into one model give P's tracr output on every length, rotated or not (the rotation exact: the
rotated residual is the merged one turned by R at every site); Q's own variables are live and nothing
on P's path reads them (patching them at any site leaves the output as it was); programs that do not
share their inputs are refused by name."""

import random

import pytest
import torch

from tasks.features.merge import PAIRS, merge, orthogonal, rotate
from tasks.tracr.compiled import build_model, task_of_program
from tasks.tracr.programs import PROGRAMS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TOL = 1e-5


def tokens_by_length(p: str, n: int = 24, seed: int = 0) -> dict[int, torch.Tensor]:
    task = task_of_program(PROGRAMS[p])
    rng = random.Random(seed)
    return {L: task.encode([task.inputs.draw(rng, L) for _ in range(n)]) for L in range(task.inputs.min_len, task.inputs.max_len + 1)}


@pytest.fixture(scope="module", params=PAIRS, ids=lambda pq: f"{pq[0]}+{pq[1]}")
def pair(request):
    p, q = request.param
    sd, card = merge(p, q)
    return p, q, sd, card, build_model(card, sd), task_of_program(PROGRAMS[p]).model


def test_the_merged_model_gives_the_main_programs_output_on_every_length(pair):
    p, q, sd, card, merged, tracr_p = pair
    assert len(PAIRS) >= 8 and {PROGRAMS[m].output for m, _ in PAIRS} == {"categorical", "numerical"}
    with torch.no_grad():
        for L, x in tokens_by_length(p).items():
            torch.testing.assert_close(merged(x), tracr_p(x), atol=TOL, rtol=TOL, msg=f"{p}+{q}, length {L}")


def in_float64(card: dict, sd: dict) -> torch.nn.Module:
    model = build_model(card, sd).double()
    model.load_state_dict({k: v.double() for k, v in sd.items()}, strict=False)
    return model


def test_the_rotation_is_exact_at_every_site(pair):
    """In float64 the rotated model's residual is the merged one turned by R at every site (1e-9): the
    rotation is exact. In float32, as shipped, the outputs agree within float32 rounding of tracr's large
    intermediate values (1e-4) and every prediction is the same."""
    p, q, sd, card, merged, _ = pair
    R = orthogonal(card["cfg"]["d_model"], seed=1)
    assert torch.allclose(R @ R.T, torch.eye(len(R), dtype=R.dtype), atol=1e-12)
    sd64 = {k: v.double() for k, v in sd.items()}
    merged64, rotated64 = in_float64(card, sd64), in_float64(card, rotate(sd64, R))
    rotated = build_model(card, rotate(sd, R))
    n = card["cfg"]["n_layers"]
    sites = [f"blocks.{i}.hook_resid_pre" for i in range(n)] + [f"blocks.{n - 1}.hook_resid_post"]
    with torch.no_grad():
        for L, x in tokens_by_length(p, n=8).items():
            out, cache = merged64.run_with_cache(x)
            out_r, cache_r = rotated64.run_with_cache(x)
            torch.testing.assert_close(out_r, out, atol=1e-9, rtol=1e-9)
            for site in sites:
                torch.testing.assert_close(cache_r[site], cache[site] @ R, atol=1e-9, rtol=1e-9, msg=site)
            assert not torch.allclose(cache_r[sites[0]], cache[sites[0]])  # the basis did turn
            out32, rot32 = merged(x), rotated(x)
            torch.testing.assert_close(rot32, out32, atol=1e-4, rtol=1e-4)
            if card["output"] == "categorical":
                assert torch.equal(rot32[:, 1:].argmax(-1), out32[:, 1:].argmax(-1))


def test_the_bystanders_variables_are_live_and_unread(pair):
    p, q, sd, card, merged, _ = pair
    own_q = torch.tensor([i for i, lab in enumerate(card["residual_labels"]) if card["owner"][lab] == "Q"])
    assert len(own_q) > 0
    last = f"blocks.{card['cfg']['n_layers'] - 1}.hook_resid_post"
    first_cells = []  # Q's variables at the first token of every input, over all lengths (length is fixed within one)
    with torch.no_grad():
        for L, x in tokens_by_length(p).items():
            out, cache = merged.run_with_cache(x)
            first_cells.append(cache[last][:, 1, own_q])
            perm = torch.roll(torch.arange(x.shape[0]), 1)
            for layer in range(card["cfg"]["n_layers"]):
                site = f"blocks.{layer}.hook_resid_pre"

                def swap(act, hook):  # every Q variable from another input, at once
                    act = act.clone()
                    act[:, :, own_q] = act[perm][:, :, own_q]
                    return act

                patched = merged.run_with_hooks(x, fwd_hooks=[(site, swap)])
                torch.testing.assert_close(patched, out, atol=TOL, rtol=TOL, msg=f"{site}, length {L}")
    assert torch.cat(first_cells).std(0).max() > 1e-3, f"{q}'s variables never vary on {p}'s inputs"


def test_programs_that_do_not_share_their_inputs_are_refused_by_name():
    with pytest.raises(ValueError, match="must share their inputs"):
        merge("back2", "hist")
    with pytest.raises(ValueError, match="its own bystander"):
        merge("back2", "back2")
    with pytest.raises(KeyError, match="unknown tracr program 'nope'"):
        merge("nope", "back2")


def test_labels_do_not_depend_on_what_tracr_compiled_before():
    """tracr numbers variables from a process-wide counter: the merged names use each variable's rank instead."""
    from tasks.features.merge import canonical_labels

    labels = ["tokens:a", "x_5:a", "x_5:b", "y_3", "one", "indices:0", "z_12:c"]
    later = ["tokens:a", "x_25:a", "x_25:b", "y_23", "one", "indices:0", "z_32:c"]  # the same program compiled later
    assert canonical_labels(labels) == canonical_labels(later) == ["tokens:a", "x_v1:a", "x_v1:b", "y_v0", "one", "indices:0", "z_v2:c"]
