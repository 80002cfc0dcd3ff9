"""Warm start from tracr's compiled weights (``--init-tracr``) and the compiled circuit kept frozen
(``--freeze-circuit``): the embedded model computes what tracr does, frozen weights do not move,
and bad combinations or sizes are refused with a message that names them."""

from __future__ import annotations

import json

import pytest
import torch

from siit_training.config import SiitConfig
from siit_training.loop import train
from siit_training.reinit import reinit_node
from siit_training.warm_start import CATEGORICAL_LOGIT_SCALE, check_fits, embed_tracr, frozen_masks, warm_start_config
from tasks import siit
from tasks import siit as siit_model
from tasks.tracr.compiled import tracr_task


def _warm(program: str):
    hl = tracr_task(program)
    cfg = warm_start_config(siit_model.ll_config_for(program, hl.model), hl.model)
    torch.manual_seed(0)
    ll = siit_model.build_ll(cfg)
    corr = siit_model.correspondence(hl, ll)
    embed_tracr(ll, hl, corr)
    return hl, ll, corr


@pytest.mark.parametrize("program", ["count_less_freq", "frac_prevs", "reverse"])
def test_embedded_model_computes_what_tracr_does(program):
    """At step 0 the LL's output is tracr's (categorical logits times the logit scale), on every
    input length, with its bystanders randomly initialised and live on the spare dimensions."""
    hl, ll, corr = _warm(program)
    scale = CATEGORICAL_LOGIT_SCALE if hl.output == "categorical" else 1.0
    pairs = siit.eval_pairs(hl, 32, seed=3)
    with torch.no_grad():
        for base, _ in pairs:
            assert torch.allclose(ll(base), scale * hl.model(base), atol=1e-4), f"length {base.shape[1] - 1}"
    m = siit.evaluate(hl, ll, siit_model.ll_nodes(ll, siit_model.ll_circuit(corr)), corr, None,
                      siit.eval_pairs(hl, 32, seed=3, cross_length=True))
    assert m["accuracy"] == 1.0 and m["iia_min"] == 1.0 and m["siia_min"] == 1.0
    # the bystanders are not zero: they write input-dependent values, only not on tracr's dimensions
    dm = hl.model.cfg.d_model
    bys = [n for n in siit_model.ll_nodes(ll, siit_model.ll_circuit(corr)) if not n.in_circuit]
    assert bys and all(
        (ll.blocks[n.layer].attn.W_O[n.head] if n.kind == "attn" else ll.blocks[n.layer].mlp.W_out)[:, dm:].abs().sum() > 0
        and (ll.blocks[n.layer].attn.W_O[n.head] if n.kind == "attn" else ll.blocks[n.layer].mlp.W_out)[:, :dm].abs().sum() == 0
        for n in bys)


def test_too_small_a_model_is_refused_by_name():
    hl = tracr_task("count_less_freq")
    cfg = siit_model.ll_config_for("count_less_freq", hl.model)  # d_model 16 < tracr's 26
    ll = siit_model.build_ll({**cfg, "act_fn": "relu"})
    with pytest.raises(ValueError, match="d_model 16 < tracr's 26"):
        check_fits(ll, hl.model)
    ll = siit_model.build_ll(warm_start_config(cfg, hl.model) | {"act_fn": "gelu"})
    with pytest.raises(ValueError, match="act_fn 'gelu' differs from tracr's 'relu'"):
        check_fits(ll, hl.model)


def test_frozen_circuit_does_not_move_and_bystanders_train():
    """--freeze-circuit: after 30 steps every in-circuit weight, tracr's embedding dimensions and the
    unembedding are bit-identical to the compiled ones; the bystanders have changed."""
    hl, ll0, corr = _warm("count_less_freq")
    config = SiitConfig(init_tracr=True, freeze_circuit=True, max_steps=30, eval_every=30, eval_n=8, batch=32, target=2.0)
    ll, _, info = train(hl, config, progress=False)
    assert info["hyperparameters"]["frozen"] and info["hyperparameters"]["init"].startswith("tracr warm start")
    masks = frozen_masks(ll, hl.model, siit_model.ll_circuit(corr))
    before, after = dict(ll0.named_parameters()), dict(ll.named_parameters())
    moved_bystander = False
    for k, mask in masks.items():
        frozen = mask == 0
        assert torch.equal(after[k][frozen], before[k][frozen]), f"{k}: a frozen weight moved"
        moved_bystander |= bool((after[k][~frozen] != before[k][~frozen]).any())
    assert moved_bystander


def test_a_compiled_circuit_loads_only_as_a_compiled_variant(tmp_path):
    """A card whose circuit was frozen at tracr's weights loads only under a ``*_compiled`` variant
    name (family siit_compiled, never pooled with siit), and a trained-circuit card never does."""
    hl, ll, corr = _warm("count_less_freq")
    base = {"card_version": siit_model.CARD_VERSION, "ll_config": warm_start_config(siit_model.ll_config_for("count_less_freq", hl.model), hl.model),
            "correspondence": corr, "passed": True, "protocol": siit_model.CARD_PROTOCOL}
    frozen = {**base, "hyperparameters": {"frozen": "in-circuit nodes kept as compiled"}}
    trained = {**base, "hyperparameters": {"frozen": None}}
    for name, card, ok in (("count_less_freq_compiled", frozen, True), ("count_less_freq", frozen, False),
                           ("count_less_freq_compiled", trained, False)):
        siit_model.save(name, ll, {}, card, tmp_path)
        if ok:
            task = siit_model.siit_task(name, weights_dir=tmp_path)
            assert task.family == siit_model.COMPILED_FAMILY and task.name == f"siit_{name}"
        else:
            with pytest.raises(siit_model.SiitLoadError, match="card says the circuit was"):
                siit_model.siit_task(name, weights_dir=tmp_path)


def test_options_that_need_the_warm_start_are_refused_without_it():
    hl = tracr_task("hist")
    with pytest.raises(ValueError, match="needs --init-tracr"):
        train(hl, SiitConfig(max_steps=1, freeze_circuit=True), progress=False)


def test_reinit_keeps_a_warm_start_bystander_off_tracr_dimensions():
    hl, ll, corr = _warm("count_less_freq")
    node = next(n for n in siit_model.ll_nodes(ll, siit_model.ll_circuit(corr)) if not n.in_circuit and n.kind == "attn")
    opt = torch.optim.Adam(ll.parameters())
    dm = hl.model.cfg.d_model
    reinit_node(ll, node, torch.Generator().manual_seed(1), opt, quiet_dims=dm)
    W_O = ll.blocks[node.layer].attn.W_O[node.head]
    assert W_O[:, :dm].abs().sum() == 0 and W_O[:, dm:].abs().sum() > 0


def test_card_act_fn_is_checked(tmp_path):
    """A card may say relu (a warm-started model) or gelu; anything else is refused by name."""
    cfg = {"n_layers": 2, "n_heads": 4, "d_model": 16, "d_head": 8, "d_mlp": 64, "d_vocab": 5, "d_vocab_out": 6, "n_ctx": 6,
           "act_fn": "relu"}
    ll = siit_model.build_ll(cfg)
    assert ll.cfg.act_fn == "relu"
    card = {"card_version": siit_model.CARD_VERSION, "ll_config": cfg, "correspondence": {"blocks.0.mlp.hook_post": "blocks.0.mlp.hook_post"}}
    siit_model.save("fake", ll, {}, card, tmp_path)
    assert siit_model.load("fake", weights_dir=tmp_path)[0].cfg.act_fn == "relu"
    wpath, cpath = siit_model.paths("fake", tmp_path)
    bad = json.loads(cpath.read_text())
    bad["ll_config"]["act_fn"] = "tanh"
    cpath.write_text(json.dumps(bad))
    with pytest.raises(siit_model.SiitLoadError, match="ll_config.act_fn must be one of"):
        siit_model.load("fake", weights_dir=tmp_path)
