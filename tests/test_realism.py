"""The realism axes (pre-norm, causal, deep SIIT models) and the ranking-transfer record."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from sklearn.metrics import roc_auc_score

from abench.document import Row
from abench.leaderboard import summarize
from abench.transfer import _boot_auroc, _task_nodes, transfer
from interventions.hooks import node_activation
from tasks import siit
from tasks.tracr.compiled import tracr_task


def _variants(family: str) -> list[str]:
    return [n for n in siit.SIIT_VARIANTS if siit.family_of(n) == family]


@pytest.mark.parametrize("name", _variants(siit.CAUSAL_FAMILY))
def test_causal_programs_read_only_earlier_positions(name):
    """A causal model can implement the program node for node only if every HL node and the output at a
    position are fixed by the tokens up to it: change the suffix (and the length), the prefix stays."""
    task = tracr_task(siit.program_of(name))
    circuit = [n for n in task.nodes if n.in_circuit]
    rng, lengths = random.Random(0), task.inputs.all_lengths()
    for _ in range(60):
        seq = task.inputs.draw(rng, rng.choice(lengths))
        keep = rng.randrange(len(seq))
        other = seq[:keep + 1] + task.inputs.draw(rng, rng.choice([n for n in lengths if n > keep]))[keep + 1:]
        n_pos = keep + 2  # BOS and positions 0..keep
        runs = [task.model.run_with_cache(task.encode([s])) for s in (seq, other)]
        torch.testing.assert_close(runs[0][0][0, :n_pos], runs[1][0][0, :n_pos], atol=1e-5, rtol=0)
        for node in circuit:
            a, b = (node_activation(cache[node.hook_name], node)[0, :n_pos] for _, cache in runs)
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=f"{name}: {node.name} reads a later position")


def test_a_program_that_reads_later_positions_is_caught():
    """The check above fails where it should: length's answer at position 0 depends on the whole input."""
    with pytest.raises(AssertionError):
        task = tracr_task("length")
        a, b = task.encode([[task.inputs.vocab[0]] * 2]), task.encode([[task.inputs.vocab[0]] * 3])
        torch.testing.assert_close(task.model(a)[0, :2], task.model(b)[0, :2], atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm", ["LN", "RMS"])
def test_norm_and_causal_configs_build_what_they_say(norm):
    hl = tracr_task("back2")
    cfg = {**siit.ll_config_for("back2", hl.model), "normalization_type": norm, "attention_dir": "causal"}
    ll = siit.build_ll(cfg)
    assert ll.cfg.normalization_type == norm and ll.cfg.attention_dir == "causal"
    assert ll.blocks[0].ln1.w.requires_grad  # the scale is a weight of the model, not folded away
    tokens = hl.encode([[hl.inputs.vocab[0]] * 4])
    changed = tokens.clone()
    changed[0, -1] = hl.encode([[hl.inputs.vocab[1]] * 4])[0, -1]
    # causal: changing the last token leaves every earlier position's output as it was
    torch.testing.assert_close(ll(tokens)[0, :-1], ll(changed)[0, :-1])
    with pytest.raises(ValueError, match="normalization_type must be one of"):
        siit.build_ll({**cfg, "normalization_type": "LNPre"})
    with pytest.raises(ValueError, match="attention_dir must be one of"):
        siit.build_ll({**cfg, "attention_dir": "forward"})


def test_card_with_an_unknown_norm_is_refused():
    card = {"card_version": 1, "ll_config": {**{k: 2 for k in siit.LL_CONFIG_SCHEMA}, "normalization_type": "BN"},
            "correspondence": {"blocks.0.attn.hook_z[0]": "blocks.0.attn.hook_z[0]"}, "shapes": {}}
    with pytest.raises(siit.SiitLoadError, match=r"ll_config.normalization_type must be one of"):
        siit.validate_card(card, "card")


def test_variant_families_and_deep_layer_maps():
    assert {siit.family_of(n) for n in _variants(siit.NORM_FAMILY)} == {siit.NORM_FAMILY}
    assert all(siit.is_causal(siit.ll_config_for(n, tracr_task(siit.program_of(n)).model)) for n in _variants(siit.CAUSAL_FAMILY))
    for name in _variants(siit.DEEP_FAMILY):
        hl = tracr_task(siit.program_of(name))
        ll = siit.build_ll(siit.ll_config_for(name, hl.model))
        layers = siit.layers_of(name)
        assert ll.cfg.n_layers >= 6 and layers[0] >= 1 and layers[-1] <= ll.cfg.n_layers - 2  # bystander layers before and after
        corr = siit.correspondence(hl, ll, layers=layers)
        for hl_node, ll_node in corr.items():
            assert ll_node.startswith(f"blocks.{layers[int(hl_node.split('.')[1])]}.")
    hl = tracr_task("prev_prev")
    ll = siit.build_ll({**siit.ll_config_for("prev_prev", hl.model), "n_layers": 6})
    for bad in ([1], [4, 1], [1, 6]):
        with pytest.raises(ValueError, match="must map the 2 HL layers"):
            siit.correspondence(hl, ll, layers=bad)


def test_causal_aux_targets_never_look_ahead():
    tokens = torch.tensor([[9, 1, 2, 3, 4]])
    t = siit.aux_targets(tokens, 9, causal=True)
    assert t[0, :, 1].tolist() == [9, 9, 9, 1, 2]  # the token two back, none for the first two
    assert siit.aux_targets(tokens, 9)[0, :, 1].tolist() == [1, 2, 3, 4, 9]


# --------------------------------------------------------------------------- transfer


def _row(task: str, family: str, method: str, labels, effects) -> Row:
    return Row(task=task, family=family, ground_truth="resample", method=method, status="ok",
               measures={"faithfulness": 1.0, "fit_seconds": 0.0, "effect_seconds": 0.0, "seconds": 0.0},
               nodes=[{"name": f"n{i}", "in_circuit": bool(lab), "effect": float(e)} for i, (lab, e) in enumerate(zip(labels, effects))])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_bootstrap_auroc_equals_roc_auc_score_on_the_drawn_tasks(seed):
    rng = np.random.default_rng(seed)
    rows = [_row(f"t{t}", "siit", "m", rng.random(6) < 0.4, rng.integers(0, 4, 6) / 4) for t in range(5)]
    tasks = [f"t{t}" for t in range(5)]
    nodes = _task_nodes(rows, ["m"], tasks)["m"]
    counts = np.stack([np.bincount(rng.integers(0, 5, 5), minlength=5) for _ in range(8)])
    got = _boot_auroc(nodes, counts)
    labels, scores, task = nodes
    for c, g in zip(counts, got):
        lab, sc = np.repeat(labels, c[task]), np.repeat(scores, c[task])
        if lab.all() or not lab.any():
            assert np.isnan(g)
        else:
            assert g == pytest.approx(roc_auc_score(lab, sc), abs=1e-12)


def _families(noise: float) -> list[Row]:
    """Base family siit and a copy of it as siit_norm (renamed tasks), the copy's effects perturbed by ``noise``."""
    rng = np.random.default_rng(0)
    rows = []
    for t in range(6):
        labels = np.arange(8) < 3
        for k, m in enumerate(["good", "fair", "poor", "worse"]):
            effects = labels * (1.0 - 0.3 * k) + rng.random(8) * 0.25 * (k + 1)
            rows.append(_row(f"t{t}", "siit", m, labels, effects))
            rows.append(_row(f"n{t}", siit.NORM_FAMILY, m, labels, effects[::-1] if noise else effects))
    return rows


def test_transfer_of_an_identical_family_is_perfect_and_a_reversed_one_is_caught():
    rows = _families(0.0)
    summaries = {f: summarize([r for r in rows if r.family == f]) for f in ("siit", siit.NORM_FAMILY)}
    rec = transfer(rows, summaries, summarize, n_boot=200)[siit.NORM_FAMILY]
    assert rec["kendall_tau"] == pytest.approx(1.0) and rec["held"] and not any(m["moved"] for m in rec["methods"])
    assert [m["base_rank"] for m in rec["methods"]] == [m["axis_rank"] for m in rec["methods"]]
    scrambled = [replace(r, nodes=[replace(n, in_circuit=not n.in_circuit) for n in r.nodes]) if r.family == siit.NORM_FAMILY
                 else r for r in rows]
    summaries = {f: summarize([r for r in scrambled if r.family == f]) for f in ("siit", siit.NORM_FAMILY)}
    rec = transfer(scrambled, summaries, summarize, n_boot=200)[siit.NORM_FAMILY]
    assert not rec["held"] and any(m["auroc_moved"] for m in rec["methods"])


def test_the_base_is_the_siit_models_of_the_same_programs():
    """siit_back2_ln is compared with siit_back2, not with every siit model: the axis changes, the program does not."""
    from abench.transfer import matched_base

    labels = np.arange(4) < 1
    rows = [_row(t, fam, "m", labels, labels * 1.0) for t, fam in (("siit_back2", "siit"), ("siit_hist", "siit"),
                                                                  ("siit_back2_ln", siit.NORM_FAMILY))]
    assert [r.task for r in matched_base(rows, siit.NORM_FAMILY)] == ["siit_back2"]
    other = [replace(r, task="siit_first_token_ln") if r.family == siit.NORM_FAMILY else r for r in rows]
    assert [r.task for r in matched_base(other, siit.NORM_FAMILY)] == ["siit_back2", "siit_hist"]  # no shared program: all of siit
