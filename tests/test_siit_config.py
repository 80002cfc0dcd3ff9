"""One source of SIIT hyperparameters (``siit_training.config.SiitConfig``), the training loop's losses and
resumability, and named seed streams (``tasks.seeds``)."""

from __future__ import annotations

import argparse
import importlib.util
import json
from dataclasses import asdict, fields
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from siit_training.config import REMOVED_OPTIONS, SiitConfig, add_config_arguments, config_from_args, unknown_options
from tasks.seeds import DERIVATIONS, derive
from tasks.siit import FAILED_DIR, WEIGHTS_DIR


def parse(argv: list[str]) -> SiitConfig:
    ap = argparse.ArgumentParser()
    add_config_arguments(ap)
    return config_from_args(ap.parse_args(argv))


def test_every_field_is_an_option_with_its_default():
    assert parse([]) == SiitConfig()
    ap = argparse.ArgumentParser()
    add_config_arguments(ap)
    dests = {a.dest for a in ap._actions}
    assert {f.name for f in fields(SiitConfig)} <= dests


def test_readme_commands_parse():
    c = parse("--continue-training --all-lengths-per-step --lr 1e-3 --time-limit 500".split()[1:])
    assert c.all_lengths_per_step and c.lr == 1e-3 and c.time_limit == 500.0
    c = parse(["--joint-strict", "--w-live", "2", "--max-steps", "10", "--iit-bystanders"])
    assert c.joint_strict and c.w_live == 2.0 and c.max_steps == 10 and c.iit_bystanders
    assert asdict(c)["w_live"] == 2.0  # what the card stores under "config"


def _retrain_joint():
    spec = importlib.util.spec_from_file_location("retrain_joint", Path(__file__).parents[1] / "scripts" / "retrain_joint.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_card_records_todays_recipe_and_its_command_replays_it():
    """Options no card ever set away from one value are gone (``REMOVED_OPTIONS``); every card's (shipped or not)
    ``config`` (or, on the oldest cards, ``hyperparameters``) is still a recipe today's options
    reproduce: what scripts/retrain_joint.py builds from it parses back to the recorded fields."""
    retrain_joint = _retrain_joint()
    cards = {p.stem: json.loads(p.read_text()) for d in (WEIGHTS_DIR, FAILED_DIR) for p in sorted(d.glob("*.json"))}
    assert len(cards) >= 10 and any("config" not in c for c in cards.values())  # an old card without config is read too
    names = {f.name for f in fields(SiitConfig)}
    for name, card in cards.items():
        recorded = card.get("config") or retrain_joint.config_of_old_card(card)
        assert unknown_options(recorded) == {}, name
        argv = retrain_joint.command(name, recorded, {}, "/nowhere")
        config = parse(argv[argv.index("--no-progress") + 1:])
        assert {k: v for k, v in asdict(config).items() if k in recorded} == {k: v for k, v in recorded.items() if k in names}, name
    assert unknown_options({"live_floor": 0.3, "focal": 1.0, "bogus": 1}) == {"live_floor": 0.3, "bogus": 1}


def test_a_checkpoint_of_removed_options_at_their_fixed_values_resumes(tmp_path):
    """A checkpoint written before an option was removed resumes when it recorded the value today's
    recipe fixes, and is refused, naming the option, when it recorded another."""
    from safetensors.torch import save_file

    from siit_training.checkpoint import CHECKPOINT_VERSION, checkpoint_paths, read_checkpoint

    config = SiitConfig(max_steps=7)
    tpath, jpath = checkpoint_paths(tmp_path / "hist")
    save_file({"x": torch.zeros(1)}, str(tpath))

    def write(recorded: dict) -> None:
        jpath.write_text(json.dumps({"checkpoint_version": CHECKPOINT_VERSION, "config": {**asdict(config), **recorded}}))

    write({k: REMOVED_OPTIONS[k] for k in ("live_floor", "aux_layer0", "test_n")})
    meta, tensors = read_checkpoint(tmp_path / "hist", config)
    assert meta["config"]["live_floor"] == 0.25 and list(tensors) == ["x"]
    write({"live_floor": 0.3})
    with pytest.raises(ValueError, match="other settings.*live_floor"):
        read_checkpoint(tmp_path / "hist", config)
    write({"max_steps": 8})
    with pytest.raises(ValueError, match="other settings.*max_steps"):
        read_checkpoint(tmp_path / "hist", config)


def test_hyperparameters_record_the_config():
    h = SiitConfig(w_iit=0.7, all_lengths_per_step=True).hyperparameters("numerical", continued=True)
    assert h["loss_weights"]["iit"] == 0.7 and h["lengths_per_step"].startswith("all")
    assert "warm-up" in h["lr_schedule"] and h["numerical_mse_scale"] == 100.0


@pytest.mark.parametrize("seed", [0, 1, 7, 123])
def test_seed_streams_keep_the_historical_formulas(seed):
    # renaming must not change a number: the leaderboard, the baseline and the shipped cards were drawn so
    assert derive(seed, "bench-eval") == seed * 2
    assert derive(seed, "bench-fit") == seed * 2 + 1
    assert derive(seed, "counterfactual") == seed + 7919
    assert derive(seed, "ablation-noise", 3, 2) == seed * 1_000_003 + 3 * 1009 + 2
    assert derive(seed, "siit-selection") == 10_000 + seed
    assert derive(seed, "siit-card-test") == 20_000 + seed
    assert derive(seed, "siit-selection-subsets") == 30_000 + seed
    assert derive(seed, "siit-card-subsets") == 40_000 + seed
    assert derive(seed, "features-compressed-test") == 50_000 + seed
    assert len(DERIVATIONS) == 9


def test_unknown_stream():
    with pytest.raises(KeyError, match="unknown seed stream"):
        derive(0, "nope")


def test_attention_pattern_loss_pulls_in_circuit_heads_toward_tracr():
    """--w-attn: after the same short run, the in-circuit SelectorWidth head's attention pattern is
    closer (KL divergence, non-BOS queries) to its tracr head's than without the loss."""

    from siit_training.loop import train
    from tasks.tracr.compiled import tracr_task

    hl = tracr_task("count_less_freq")
    head = next(n for n in hl.nodes if n.in_circuit and n.kind == "attn" and n.layer == 0)
    tokens = [t for t in hl.sample(64, seed=7) if t.shape[1] > 2]

    def pattern_ce(ll) -> float:
        with torch.no_grad():
            ces = []
            for t in tokens:
                _, hc = hl.model.run_with_cache(t)
                _, lc = ll.run_with_cache(t)
                p = hc["blocks.0.attn.hook_pattern"][:, head.head, 1:]
                q = lc["blocks.0.attn.hook_pattern"][:, head.head, 1:]
                # KL(tracr || LL): the cross-entropy less the tracr pattern's own entropy
                ces.append((p * (p.clamp_min(1e-9).log() - q.clamp_min(1e-9).log())).sum(-1).mean().item())
            return sum(ces) / len(ces)

    runs = {w: train(hl, SiitConfig(max_steps=100, eval_every=100, eval_n=16, batch=64, w_attn=w), progress=False)
            for w in (0.0, 10.0)}
    assert runs[10.0][2]["hyperparameters"]["attention_pattern_loss"]["weight"] == 10.0
    assert runs[0.0][2]["hyperparameters"]["attention_pattern_loss"] is None
    kl = {w: pattern_ce(r[0]) for w, r in runs.items()}
    print("KL(tracr || LL) of the layer-0 head after 100 steps:", kl)
    assert kl[10.0] < 0.8 * kl[0.0]  # measured: 0.364 vs 0.541


def test_attention_pattern_loss_on_iit_rows_trains_other_weights_and_says_so():
    """--attn-iit-rows: the pattern loss also covers the IIT rows (tracr's patterns under the same
    patch). Same seed, same draws: only that loss term differs, so the weights do, and the card says
    which rows the loss read."""
    from siit_training.loop import train
    from tasks.tracr.compiled import tracr_task

    hl = tracr_task("count_less_freq")
    runs = {flag: train(hl, SiitConfig(max_steps=5, eval_every=5, eval_n=8, batch=16, w_attn=1.0,
                                       attn_iit_rows=flag), progress=False) for flag in (False, True)}
    what = {flag: r[2]["hyperparameters"]["attention_pattern_loss"]["what"] for flag, r in runs.items()}
    assert "IIT rows" in what[True] and "IIT rows" not in what[False]
    w = {flag: r[0].blocks[1].attn.W_Q.detach() for flag, r in runs.items()}
    assert not torch.equal(w[False], w[True])


def test_a_paused_and_resumed_run_gives_the_weights_of_an_uninterrupted_one(tmp_path):
    """Training is resumable across sessions: a run paused after 20 steps (checkpoint at every
    evaluation) and resumed gives bit-identical weights, history and best step to one run
    straight through; a resume under other settings is refused, naming them."""
    from siit_training.checkpoint import checkpoint_paths
    from siit_training.loop import train
    from tasks.tracr.compiled import tracr_task

    hl = tracr_task("hist")
    config = SiitConfig(max_steps=40, eval_every=10, eval_n=8, batch=32, target=2.0)  # target 2: never stops early
    straight = train(hl, config, progress=False)
    ckpt = tmp_path / "ckpt" / "hist"
    first = train(hl, config, progress=False, checkpoint=ckpt, pause_after_steps=20, extra={"note": "kept"})
    assert first[2]["paused"] and first[2]["steps"] == 20
    assert all(p.exists() for p in checkpoint_paths(ckpt))
    with pytest.raises(ValueError, match="other settings.*lr"):
        train(hl, SiitConfig(**{**config.__dict__, "lr": 1e-3}), progress=False, checkpoint=ckpt, resume=True)
    resumed = train(hl, config, progress=False, checkpoint=ckpt, resume=True)
    assert not resumed[2]["paused"] and resumed[2]["steps"] == 40
    assert resumed[2]["extra"] == {"note": "kept"}
    assert [s["first_step"] for s in resumed[2]["sessions"]] == [1, 21]
    a, b = straight[0].state_dict(), resumed[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(straight[1][k], resumed[1][k]) for k in straight[1])
    strip = lambda h: [{k: v for k, v in e.items() if k != "wall_s"} for e in h]  # noqa: E731
    assert strip(straight[2]["history"]) == strip(resumed[2]["history"])
    assert straight[2]["best_step"] == resumed[2]["best_step"]


def test_hl_tie_cells_carry_no_label_when_skipped():
    """--skip-hl-ties: an IIT cell whose HL logits tie (no unique argmax) is left out of the loss;
    the rest is the plain cross-entropy. Without the option every cell counts."""
    import torch.nn.functional as F

    from siit_training.losses import output_loss
    from tasks.siit.evaluate import hl_ties

    hl = torch.tensor([[[9.0, 0, 0], [1.0, 0, 0], [0.0, 0, 0], [0.0, 2, 0]]])  # BOS, defined, tie, defined
    ll = torch.randn(1, 4, 3)
    assert hl_ties(hl[:, 1:]).tolist() == [[False, True, False]]
    want = F.cross_entropy(ll[0, [1, 3]], torch.tensor([0, 1]))
    assert torch.allclose(output_loss(ll, hl, "categorical", skip_ties=True), want)
    assert torch.allclose(output_loss(ll, hl, "categorical"), F.cross_entropy(ll[0, 1:], torch.tensor([0, 0, 1])))
    all_tied = torch.zeros(1, 3, 3)
    assert output_loss(ll[:, :3], all_tied, "categorical", skip_ties=True).item() == 0.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-0.1, 0.1), min_size=2, max_size=12))
def test_numerical_tail_counts_only_errors_past_half_the_tolerance(errors):
    """The tail term is 0 for cells within NUM_TOL / 2, 1 for a cell exactly at NUM_TOL, and
    ``output_loss`` adds it (times ``num_tail``) to the scaled MSE; BOS is left out of both."""
    from siit_training.losses import numerical_tail, output_loss
    from tasks.siit import NUM_TOL
    err = torch.tensor(errors, dtype=torch.float64).view(1, -1, 1)
    hl = torch.zeros_like(err)
    half = NUM_TOL / 2
    want = sum(max(abs(e) - half, 0.0) ** 2 for e in errors) / half ** 2 / len(errors)
    assert numerical_tail(err, hl).item() == pytest.approx(want, abs=1e-9)
    assert numerical_tail(torch.full((1, 3, 1), NUM_TOL, dtype=torch.float64), torch.zeros(1, 3, 1, dtype=torch.float64)).item() \
        == pytest.approx(1.0)
    mse = 100.0 * (err[:, 1:] ** 2).mean()
    assert output_loss(err, hl, "numerical", 100.0).item() == pytest.approx(mse.item())
    assert output_loss(err, hl, "numerical", 100.0, num_tail=3.0).item() == pytest.approx(
        mse.item() + 3.0 * numerical_tail(err[:, 1:], hl[:, 1:]).item())


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.5, 1.0, 2.0]))
def test_focal_cross_entropy_weights_each_cell_by_its_miss_probability(seed, gamma):
    """--focal G: each cell's CE times (1 - p_target)^G, averaged over the labelled cells (BOS and,
    with --skip-hl-ties, tie cells left out); a cell the model already gets with p ~ 1 adds ~0."""
    import torch.nn.functional as F

    from siit_training.losses import output_loss

    gen = torch.Generator().manual_seed(seed)
    ll = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64) * 3
    hl = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64)
    hl[0, 2] = 0.0  # a tie cell
    logp = F.log_softmax(ll[:, 1:], -1)
    target = hl[:, 1:].argmax(-1)
    cell_ce = -logp.gather(-1, target[..., None])[..., 0]
    weighted = (1 - torch.exp(-cell_ce)) ** gamma * cell_ce
    assert output_loss(ll, hl, "categorical", focal=gamma).item() == pytest.approx(weighted.mean().item(), rel=1e-9)
    defined = torch.ones_like(target, dtype=torch.bool)
    defined[0, 1] = False  # hl[0, 2] without BOS
    assert output_loss(ll, hl, "categorical", skip_ties=True, focal=gamma).item() == pytest.approx(
        weighted[defined].mean().item(), rel=1e-9)
    assert output_loss(ll, hl, "categorical", focal=gamma).item() <= output_loss(ll, hl, "categorical").item() + 1e-12
    sure = 50.0 * F.one_hot(hl.argmax(-1), 4).to(hl.dtype)  # LL puts p ~ 1 on every target
    assert output_loss(sure, hl, "categorical", focal=gamma).item() < 1e-12


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.5, 1.0]))
def test_class_balance_weights_each_cell_by_its_class_count(seed, power):
    """--class-balance B: each labelled cell's CE times n_c^-B (n_c: the batch's labelled cells of its
    target class), the weighted mean; at B = 1 that is the mean over the classes present of each
    class's mean CE, so a rare class weighs as much as a common one."""
    import torch.nn.functional as F

    from siit_training.losses import output_loss

    gen = torch.Generator().manual_seed(seed)
    ll = torch.randn(3, 6, 3, generator=gen, dtype=torch.float64) * 3
    hl = torch.zeros(3, 6, 3, dtype=torch.float64)
    hl[..., 0] = 1.0  # class 0 everywhere but three cells
    for b, p in ((0, 2), (1, 4), (2, 1)):
        hl[b, p] = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    target = hl[:, 1:].argmax(-1)
    cell_ce = -F.log_softmax(ll[:, 1:], -1).gather(-1, target[..., None])[..., 0]
    counts = torch.bincount(target.reshape(-1), minlength=3).to(ll.dtype)
    weight = counts[target] ** -power
    assert output_loss(ll, hl, "categorical", class_balance=power).item() == pytest.approx(
        ((weight * cell_ce).sum() / weight.sum()).item(), rel=1e-9)
    if power == 1.0:
        per_class = [cell_ce[target == c].mean() for c in (0, 1)]
        assert output_loss(ll, hl, "categorical", class_balance=1.0).item() == pytest.approx(
            (sum(per_class) / 2).item(), rel=1e-9)
    assert output_loss(ll, hl, "categorical", class_balance=0.0).item() == pytest.approx(cell_ce.mean().item(), rel=1e-12)


def test_liveness_hinge_reaches_the_circuit_only_with_median_grad():
    """--live-median-grad: the hinge's gradient reaches the in-circuit variances (pushing them down, so the
    circuit cannot outgrow a bystander); by default the median is a constant and only bystanders are pushed.
    A bystander above the floor contributes nothing either way."""
    from siit_training.losses import liveness_hinge

    for median_grad in (False, True):
        circ = torch.tensor([4.0, 100.0, 9.0], requires_grad=True)  # median 9
        bys = torch.tensor([0.09, 9.0], requires_grad=True)  # ratio 0.01 (below 0.25), 1.0 (above)
        loss = liveness_hinge(bys, circ, 0.25, median_grad)
        assert loss.item() == pytest.approx((0.5 - 0.1) / 2, abs=1e-6)
        loss.backward()
        assert bys.grad[0] < 0 and bys.grad[1] == 0
        if median_grad:
            assert circ.grad[2] > 0 and circ.grad[0] == 0 and circ.grad[1] == 0  # only the median node
        else:
            assert circ.grad is None or not circ.grad.any()
    cfg = SiitConfig(live_median_grad=True)
    assert "median carries gradient" in cfg.hyperparameters("categorical", False)["live_hinge"]
    assert "median detached" in SiitConfig().hyperparameters("categorical", False)["live_hinge"]


@pytest.mark.parametrize("argv, message", [(["--max-steps", "0"], "--max-steps: must be an integer >= 1, got 0"),
                                           (["--eval-n", "-5"], "--eval-n: must be an integer >= 1, got -5"),
                                           (["--batch", "x"], "--batch: must be an integer >= 1, got 'x'"),
                                           (["--seed", "-1"], "--seed: must be an integer >= 0, got -1")])
def test_a_count_option_below_its_least_value_is_a_usage_error(argv, message, capsys):
    ap = argparse.ArgumentParser()
    add_config_arguments(ap)
    with pytest.raises(SystemExit) as exit_info:
        ap.parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
