"""Shipped SIIT models: recompute accuracy / IIA / SIIA / liveness on fresh data; refuse bad files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from tasks import siit
from tasks.registry import DEFAULT_FAMILIES, families, load_task, resolve_task_names
from tasks.siit import FAILED_DIR

SHIPPED = siit.shipped()
# Fresh held-out data: a seed used neither in training (10_000 + seed eval, random stream) nor for the card (20_000 + seed).
FRESH_SEED = 31_337
FRESH_N = 192  # bases per length (each with one source: as many pairs as the per-length-pair groups of the earlier draw held at 96)


def test_some_models_shipped_and_registered():
    assert len(SHIPPED) >= 1, "no SIIT model passed the bar; retrain with `python -m siit_training --task all`"
    plain = [n for n in SHIPPED if siit.family_of(n) == "siit"]
    assert sorted(families().get("siit", [])) == sorted(f"siit_{n}" for n in plain)
    assert DEFAULT_FAMILIES[0] == "siit"  # the default run starts with the SIIT family
    # then the backup pair(s), the compiled-circuit models and the realism axes, each in its own family, before tracr
    order = ("siit", siit.BACKUP_FAMILY, siit.COMPILED_FAMILY, siit.NORM_FAMILY, siit.CAUSAL_FAMILY, siit.DEEP_FAMILY)
    features = ("features", "features_compressed", "features_pca")  # residual directions, after tracr
    assert DEFAULT_FAMILIES[1:] == [f for f in order[1:] + ("tracr",) + features if f in families()]
    for fam in order[1:]:
        assert sorted(families().get(fam, [])) == sorted(f"siit_{n}" for n in SHIPPED if siit.family_of(n) == fam)
    assert resolve_task_names(None)[: len(SHIPPED)] == [f"siit_{n}" for fam in order for n in SHIPPED if siit.family_of(n) == fam]
    assert "tracr" in families()  # tracr tasks stay selectable


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_meets_its_card(name):
    task = load_task(f"siit_{name}")
    card = task.info["card"]
    hl = task.high_level
    assert task.family == siit.family_of(name) and task.ground_truth == "resample" and task.output == hl.output
    assert [n.name for n in task.nodes if n.in_circuit] == sorted(siit.ll_circuit(card["correspondence"]), key=[n.name for n in task.nodes].index)
    data = siit.eval_pairs(hl, FRESH_N, seed=FRESH_SEED, cross_length=True)  # as the card: sources of every length >= the base's
    torch.manual_seed(0)
    m = siit.evaluate(hl, task.model, task.nodes, card["correspondence"], task.info["aux"], data, subset_seed=FRESH_SEED)
    assert card["protocol"] == siit.CARD_PROTOCOL and card["passed"]
    for key, card_key in (("accuracy", "accuracy"), ("iia_min", "iia_min_node"), ("siia_min", "siia_min_node"), ("iia", "iia"), ("siia", "siia")):
        assert m[key] >= siit.PASS_BAR, f"{name}: {key} {m[key]:.4f} < {siit.PASS_BAR}"
        assert abs(m[key] - card[card_key]) <= 0.01, f"{name}: {key} {m[key]:.4f} vs card {card[card_key]:.4f}"
    for node, value in {**m["iia_per_node"], **m["siia_per_node"]}.items():  # the bar is per node, not a mean
        assert value >= siit.PASS_BAR, f"{name}: {node} IIA/SIIA {value:.4f} < {siit.PASS_BAR}"
    if "redundant" in card:  # each member of a backup pair alone, its partner zero-ablated, implements the node
        for key in ("backup_iia_per_node", "backup_accuracy_per_node"):
            for node, value in m[key].items():
                assert value >= siit.PASS_BAR, f"{name}: {node} {key} {value:.4f} < {siit.PASS_BAR}"
                assert abs(value - card["redundant"][key][node]) <= 0.01, f"{name}: {node} {key} {value:.4f} vs card"
    # the benchmark's view: model(tokens) is the main output, same shape as the tracr model's
    tokens = data[0][0]
    assert task.model(tokens).shape == hl.model(tokens).shape
    for node in task.nodes:
        if not node.in_circuit:
            assert m["liveness"][node.name] >= siit.LIVE_THRESHOLD, f"{name}: bystander {node.name} is near-constant ({m['liveness'][node.name]:.4f})"
    # jointly, on the same fresh data with fresh bystander subsets: the bystanders together, the circuit together
    joint = card["joint"]
    for key in ("faithfulness_all", "faithfulness_subset_min"):
        assert m[key] >= siit.PASS_BAR, f"{name}: {key} {m[key]:.4f} < {siit.PASS_BAR} (card {joint[key]:.4f})"
    assert m["completeness_abs_diff"] <= siit.COMPLETENESS_TOL, (
        f"{name}: completeness LL {m['completeness_ll']:.4f} vs HL {m['completeness_hl']:.4f} (card {joint['completeness_ll']:.4f} vs "
        f"{joint['completeness_hl']:.4f})")
    assert len(joint["subsets"]) >= 32 and {s["size"] for s in joint["subsets"]} >= {1, len(m["siia_per_node"])}


def _fake_model(tmp_path):
    """A small untrained LL model saved the way the trainer saves one."""
    cfg = {"n_layers": 2, "n_heads": 4, "d_model": 16, "d_head": 8, "d_mlp": 64, "d_vocab": 5, "d_vocab_out": 6, "n_ctx": 6}
    ll = siit.build_ll(cfg)
    aux = {"aux.W_U": torch.randn(16, 14), "aux.b_U": torch.zeros(14)}
    card = {"card_version": siit.CARD_VERSION, "ll_config": cfg, "correspondence": {"blocks.0.mlp.hook_post": "blocks.0.mlp.hook_post"}, "passed": True}
    siit.save("fake", ll, aux, card, tmp_path)
    return siit.paths("fake", tmp_path)


def test_roundtrip_loads(tmp_path):
    _fake_model(tmp_path)
    ll, aux, card = siit.load("fake", weights_dir=tmp_path)
    assert set(aux) == {"aux.W_U", "aux.b_U"} and card["ll_config"]["n_heads"] == 4


def test_refuses_corrupt_file(tmp_path):
    wpath, _ = _fake_model(tmp_path)
    raw = bytearray(wpath.read_bytes())
    wpath.write_bytes(bytes(raw[: len(raw) // 2]))  # truncated
    with pytest.raises(siit.SiitLoadError, match="not a readable safetensors"):
        siit.load("fake", weights_dir=tmp_path)
    wpath.write_bytes(b"\x80\x04\x95garbage pickle bytes")
    with pytest.raises(siit.SiitLoadError, match="not a readable safetensors"):
        siit.load("fake", weights_dir=tmp_path)


def test_refuses_missing_or_extra_keys(tmp_path):
    from safetensors.torch import load_file, save_file

    wpath, _ = _fake_model(tmp_path)
    sd = load_file(str(wpath))
    del sd["blocks.1.mlp.W_out"]
    save_file(sd, str(wpath))
    with pytest.raises(siit.SiitLoadError, match=r"missing \['blocks.1.mlp.W_out'\]"):
        siit.load("fake", weights_dir=tmp_path)
    sd = load_file(str(_fake_model(tmp_path)[0]))
    sd["blocks.2.attn.W_Q"] = torch.zeros(4, 16, 8)
    save_file(sd, str(wpath))
    with pytest.raises(siit.SiitLoadError, match=r"unexpected \['blocks.2.attn.W_Q'\]"):
        siit.load("fake", weights_dir=tmp_path)


def test_refuses_shape_mismatch(tmp_path):
    from safetensors.torch import load_file, save_file

    wpath, cpath = _fake_model(tmp_path)
    sd = load_file(str(wpath))
    sd["embed.W_E"] = torch.zeros(7, 16)
    save_file(sd, str(wpath))
    with pytest.raises(siit.SiitLoadError, match=r"embed.W_E: file \[7, 16\] vs card \[5, 16\]"):
        siit.load("fake", weights_dir=tmp_path)


def test_refuses_card_config_mismatch(tmp_path):
    _, cpath = _fake_model(tmp_path)
    card = json.loads(cpath.read_text())
    card["ll_config"]["n_heads"] = 2  # tensors (and their recorded shapes) are for 4 heads
    cpath.write_text(json.dumps(card))
    with pytest.raises(siit.SiitLoadError, match="do not fit the LL config"):
        siit.load("fake", weights_dir=tmp_path)


def test_refuses_missing_files_and_bad_card(tmp_path):
    with pytest.raises(siit.SiitLoadError, match="missing"):
        siit.load("nothing_here", weights_dir=tmp_path)
    _, cpath = _fake_model(tmp_path)
    cpath.write_text("{not json")
    with pytest.raises(siit.SiitLoadError, match="not valid JSON"):
        siit.load("fake", weights_dir=tmp_path)


@pytest.mark.skipif(not SHIPPED, reason="no shipped SIIT model")
def test_siit_task_refuses_mismatched_correspondence(tmp_path):
    name = SHIPPED[0]
    for p in siit.paths(name):
        shutil.copy(p, tmp_path / p.name)
    cpath = tmp_path / f"{name}.json"
    card = json.loads(cpath.read_text())
    first = next(iter(card["correspondence"]))
    card["correspondence"][first] = "blocks.0.attn.hook_z[3]" if card["correspondence"][first] != "blocks.0.attn.hook_z[3]" else "blocks.0.attn.hook_z[2]"
    cpath.write_text(json.dumps(card))
    with pytest.raises(siit.SiitLoadError, match="correspondence"):
        siit.siit_task(name, weights_dir=tmp_path)


def test_cross_length_patch_takes_the_source_prefix():
    """A longer source patched into a shorter base: the node gets the source's first len(base) positions."""
    from tasks.base import Node

    cfg = {"n_layers": 2, "n_heads": 4, "d_model": 16, "d_head": 8, "d_mlp": 64, "d_vocab": 5, "d_vocab_out": 6, "n_ctx": 6}
    ll = siit.build_ll(cfg)
    gen = torch.Generator().manual_seed(0)
    base, src = torch.randint(0, 5, (3, 4), generator=gen), torch.randint(0, 5, (3, 6), generator=gen)
    node, rows = Node(1, "attn", 2), torch.arange(3)
    _, cache = ll.run_with_cache(src)
    seen = {}
    hooks = siit.patch_hooks([(node, rows, rows)], cache.cache_dict, n_pos=base.shape[1])
    hooks.append((node.hook_name, lambda act, hook: seen.__setitem__("z", act.clone())))
    ll.run_with_hooks(base, fwd_hooks=hooks)
    assert torch.equal(seen["z"][:, :, 2], cache[node.hook_name][:, :4, 2])
    _, clean = ll.run_with_cache(base)
    assert torch.equal(seen["z"][:, :, :2], clean[node.hook_name][:, :, :2])  # other heads untouched


def test_cross_length_pairs_cover_every_longer_source():
    """Each base length gets ``n`` pairs, each source at least as long as its base; over 256 draws per length every
    source length >= the base's turns up (the interchange draw: tests/test_interchange.py)."""
    from tasks.tracr.compiled import tracr_task

    hl = tracr_task("length")
    lo, hi = hl.inputs.min_len, hl.inputs.max_len
    pairs = siit.eval_pairs(hl, 256, seed=0, cross_length=True)
    got = sorted((b.shape[1] - 1, s.shape[1] - 1) for b, s in pairs)
    assert got == [(L, Ls) for L in range(lo, hi + 1) for Ls in range(L, hi + 1)]
    assert all(b.shape[0] == s.shape[0] >= 1 for b, s in pairs)
    assert all(sum(b.shape[0] for b, _ in pairs if b.shape[1] == L + 1) == 256 for L in range(lo, hi + 1))
    assert [b.shape[1] for b, s in siit.eval_pairs(hl, 32, seed=0)] == [s.shape[1] for b, s in siit.eval_pairs(hl, 32, seed=0)]


def test_every_card_records_the_bar_and_only_passing_models_ship():
    """A card of the current protocol says whether its numbers pass the bar (per node and joint); only those ship.
    Cards of models that miss it (or of an earlier protocol) are kept, with what they reached, in FAILED_DIR:
    not package data, never loaded by the registry. A model is in one folder, not both."""
    paths = [p for d in (siit.WEIGHTS_DIR, FAILED_DIR) for p in sorted(d.glob("*.json"))]
    assert len({p.stem for p in paths}) == len(paths), "a model has a card in both folders"
    assert any(p.parent == FAILED_DIR for p in paths)
    for path in paths:
        name, card = path.stem, json.loads(path.read_text())
        if card.get("protocol") == siit.CARD_PROTOCOL:
            m = {"accuracy": card["accuracy"], "iia_min": card["iia_min_node"], "siia_min": card["siia_min_node"],
                 "liveness_min_out_of_circuit": card["liveness_min_out_of_circuit"],
                 **{k: card["joint"][k] for k in ("faithfulness_all", "faithfulness_subset_min", "completeness_abs_diff")}}
            if "redundant" in card:
                m.update(backup_iia_min=card["redundant"]["backup_iia_min_node"],
                         backup_accuracy_min=card["redundant"]["backup_accuracy_min_node"])
            assert card["passed"] == siit.passes_bar(m), f"{name}: card says passed={card['passed']}, its numbers say otherwise"
        ships = card.get("protocol") == siit.CARD_PROTOCOL and bool(card.get("passed"))
        assert (path.parent == siit.WEIGHTS_DIR) == ships, f"{name}: move its card and weights to {FAILED_DIR if not ships else siit.WEIGHTS_DIR}"
        assert (name in SHIPPED) == ships, name


def test_only_the_shipped_models_are_package_data():
    """pyproject's package-data globs take every file of the shipped models' folder and none of FAILED_DIR."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    data = {p for pattern in setuptools["package-data"]["tasks"] for p in (root / "tasks").glob(pattern) if p.is_file()}
    shipped_files = {p for p in (root / "tasks" / "weights" / "siit").iterdir() if p.is_file()}
    assert shipped_files and shipped_files <= data
    assert not [p for p in data if FAILED_DIR in p.parents], "a model that missed the bar would ship"
    assert "exclude-package-data" not in setuptools  # the globs alone say what ships


@pytest.mark.parametrize("value, expected", [
    (["blocks.0.attn.hook_z[0]"], "list of >= 2 distinct LL node name strings"),
    (["blocks.0.attn.hook_z[0]", "blocks.0.attn.hook_z[0]"], "list of >= 2 distinct LL node name strings"),
    (["blocks.0.attn.hook_z[0]", 1], "list of >= 2 distinct LL node name strings"),
    ({"a": "b"}, "or a list of >= 2 distinct LL node name strings"),
])
def test_card_schema_list_correspondence(tmp_path, value, expected):
    """A redundant node's correspondence value is a list of >= 2 distinct LL names; anything else is refused, naming the field."""
    _, cpath = _fake_model(tmp_path)
    card = json.loads(cpath.read_text())
    card["correspondence"] = {"blocks.0.attn.hook_z[0]": ["blocks.0.attn.hook_z[0]", "blocks.0.attn.hook_z[1]"]}
    siit.validate_card(card, "card")  # a list of two names is valid
    card["correspondence"] = {"blocks.0.attn.hook_z[0]": value}
    with pytest.raises(siit.SiitLoadError, match=r"^card: field correspondence must be .*" + re.escape(expected)):
        siit.validate_card(card, "card")


def test_redundant_correspondence_and_variants():
    from tasks.tracr.compiled import tracr_task

    assert siit.program_of("hist_backup") == "hist" and siit.program_of("siit_hist") == "hist"
    assert siit.family_of("hist_backup") == siit.BACKUP_FAMILY and siit.family_of("hist") == "siit"
    assert siit.family_of("frac_prevs_compiled") == siit.COMPILED_FAMILY and siit.program_of("frac_prevs_compiled") == "frac_prevs"
    assert siit.is_compiled("siit_count_less_freq_compiled") and not siit.is_compiled("count_less_freq")
    hl = tracr_task("hist")
    ll = siit.build_ll(siit.ll_config_for("hist", hl.model))
    corr = siit.correspondence(hl, ll, siit.redundant_of("hist_backup"))
    assert corr == {"blocks.0.attn.hook_z[0]": ["blocks.0.attn.hook_z[0]", "blocks.0.attn.hook_z[1]"],
                    "blocks.0.mlp.hook_post": "blocks.0.mlp.hook_post"}
    assert siit.ll_circuit(corr) == ["blocks.0.attn.hook_z[0]", "blocks.0.attn.hook_z[1]", "blocks.0.mlp.hook_post"]
    with pytest.raises(ValueError, match="not in the circuit"):
        siit.correspondence(hl, ll, {"blocks.1.mlp.hook_post": ["blocks.1.mlp.hook_post", "blocks.0.attn.hook_z[3]"]})
    with pytest.raises(ValueError, match="two HL nodes onto one LL node"):
        siit.correspondence(hl, ll, {"blocks.0.attn.hook_z[0]": ["blocks.0.attn.hook_z[1]", "blocks.0.mlp.hook_post"]})
    with pytest.raises(ValueError, match=">= 2 distinct LL nodes"):
        siit.correspondence(hl, ll, {"blocks.0.attn.hook_z[0]": ["blocks.0.attn.hook_z[0]", "blocks.0.attn.hook_z[9]"]})


@pytest.mark.parametrize("name", ["first_token", "hist"])  # a card with sessions and config, and an older one without
def test_recard_keeps_the_training_record(tmp_path, name):
    """``--recard`` rewrites the metrics only: every training-record key of the old card survives, the weights are the
    same, and a categorical card gains the HL-tie counts (cells with no defined answer) and the IIA without them."""
    from siit_training.__main__ import main

    for f in siit.paths(name):
        shutil.copy(f, tmp_path / f.name)
    _, cpath = siit.paths(name, tmp_path)
    old = json.loads(cpath.read_text())
    main(["--task", name, "--recard", "--weights-dir", str(tmp_path), "--device", "cpu", "--no-progress"])
    new = json.loads(cpath.read_text())
    for key in ("seed", "steps", "best_step", "wall_time_s", "continued_from", "device", "hyperparameters", "config",
                "reinitialised_bystanders", "sessions", "history"):
        assert (key in new) == (key in old) and new.get(key) == old.get(key), key
    assert new["recarded"]["earlier_card"]["passed"] == old["passed"]
    assert set(new["hl_tie_cells_per_node"]) == set(new["iia_defined_per_node"]) == set(new["iia_per_node"])
    ll_old, _, _ = siit.load(name, "cpu")
    ll_new, _, _ = siit.load(name, "cpu", tmp_path)
    assert all(torch.equal(v, ll_new.state_dict()[k]) for k, v in ll_old.state_dict().items())
