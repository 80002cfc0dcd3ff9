"""scripts/attention_agreement.py: LL vs tracr attention patterns of in-circuit heads."""

import importlib.util
from pathlib import Path

from tasks.siit import siit_task
from tasks.siit import FAILED_DIR

_spec = importlib.util.spec_from_file_location("attention_agreement", Path(__file__).parents[1] / "scripts" / "attention_agreement.py")
attention_agreement = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(attention_agreement)


def test_a_compiled_head_reading_only_the_embeddings_attends_as_tracr_does():
    # the *_compiled variants keep tracr's heads and embedding dimensions frozen, so a layer-0 head
    # sees exactly tracr's inputs (a later head also sees what trained bystanders wrote before it)
    rows = attention_agreement.pattern_agreement(siit_task("count_less_freq_compiled"), n=32)
    assert {r["node"] for r in rows} == {"blocks.0.attn.hook_z[0]", "blocks.1.attn.hook_z[0]"}
    layer0 = [r for r in rows if r["node"] == "blocks.0.attn.hook_z[0]"]
    assert max(r["tv_max"] for r in layer0) < 1e-4, layer0


def test_a_redundant_pair_compares_each_member_with_the_hl_head():
    rows = attention_agreement.pattern_agreement(siit_task("hist_backup", weights_dir=FAILED_DIR), n=16)
    assert {(r["node"], r["hl_node"]) for r in rows} == {
        ("blocks.0.attn.hook_z[0]", "blocks.0.attn.hook_z[0]"), ("blocks.0.attn.hook_z[1]", "blocks.0.attn.hook_z[0]")}
    lengths = sorted({r["length"] for r in rows})
    assert lengths == list(range(lengths[0], lengths[-1] + 1)) and len(rows) == 2 * len(lengths)
    assert all(0.0 <= r["tv_mean"] <= r["tv_max"] <= 1.0 for r in rows)


def test_a_trained_head_that_routes_differently_is_measured_as_such():
    # reverse's LL (randomly initialised, trained to the per-node bar; it misses the joint one) computes the length in its
    # layer-0 head with a pattern far from tracr's BOS-plus-every-token one (measured: TV 0.60-0.64 per length)
    rows = attention_agreement.pattern_agreement(siit_task("reverse", weights_dir=FAILED_DIR), n=64)
    layer0 = [r for r in rows if r["node"] == "blocks.0.attn.hook_z[0]"]
    assert min(r["tv_mean"] for r in layer0) > 0.3, layer0
