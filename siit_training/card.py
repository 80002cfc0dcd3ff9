"""The JSON card written next to a SIIT model's weights: its config, correspondence, training
record, metrics on fresh held-out data (``tasks.siit.evaluate``) and the pass verdict. The
benchmark reads cards (``tasks.siit.load`` / ``shipped``); only training and ``--recard``
write them."""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer

from siit_training.config import CARD_TEST_N
from tasks.base import Task, unit_name
from tasks.seeds import derive
from tasks.siit.evaluate import COMPLETENESS_TOL, eval_pairs, evaluate, passes_bar
from tasks.siit import CARD_PROTOCOL, CARD_VERSION, LIVE_THRESHOLD, NUM_TOL, PASS_BAR, ll_circuit, ll_nodes

# The benchmark counts a numerical output as changed when it moves by more than this (card: informational).
BENCH_NUM_EFFECT_TOL = 0.05


def make_card(task: Task, ll: HookedTransformer, aux: dict[str, torch.Tensor] | None, ll_config: dict, corr: dict, record: dict,
              name: str | None = None, test_n: int = CARD_TEST_N) -> dict:
    """The JSON card: config, correspondence, training record, held-out metrics and the pass verdict.

    ``name``: the SIIT model's name when it is not the tracr program's (a ``SIIT_VARIANTS`` entry);
    the card then records the program under ``program``."""
    program = task.name
    name = name or program
    seed = record["seed"]
    nodes = ll_nodes(ll, ll_circuit(corr))
    # fresh held-out data, unseen in training/selection; sources of every length >= the base's (same length included)
    test = eval_pairs(task, test_n, seed=derive(seed, "siit-card-test"), cross_length=True)
    m = evaluate(task, ll, nodes, corr, aux, test, subset_seed=derive(seed, "siit-card-subsets"))
    loose = None
    if task.output == "numerical":  # informational only: the benchmark's own numerical effect threshold
        m5 = evaluate(task, ll, nodes, corr, aux, test, tol=BENCH_NUM_EFFECT_TOL)
        loose = {"tolerance": BENCH_NUM_EFFECT_TOL, "accuracy": m5["accuracy"], "iia": m5["iia"], "siia": m5["siia"],
                 "siia_min_node": m5["siia_min"], "note": "not the pass bar (that uses numerical_tolerance)"}
    bystanders = [n.name for n in nodes if not n.in_circuit]
    live_ok = all(m["liveness"][b] >= LIVE_THRESHOLD for b in bystanders)
    passed = passes_bar(m)
    card = {
        "card_version": CARD_VERSION,
        "task": name,
        "name": f"siit_{name}",
        **({"program": program} if name != program else {}),
        "output": task.output,
        "ll_config": ll_config,
        "ll_arch": {"act_fn": ll.cfg.act_fn, "normalization_type": None, "attention_dir": "bidirectional"},
        "correspondence": corr,
        "n_ll_nodes": len(nodes),
        **{k: v for k, v in record.items() if k != "history"},
        "data": "bases: one input length per batch (no PAD), lengths min_len..max_len, task sampler (precondition respected); "
                "sources: see hyperparameters.sources (training) and test_sources (this card's metrics)",
        "test_examples_per_length": test_n,
        "test_seed": derive(seed, "siit-card-test"),
        "numerical_tolerance": NUM_TOL if task.output == "numerical" else None,
        "pass_bar": PASS_BAR,
        "at_benchmark_effect_tolerance": loose,
        "test_sources": "cross_length: per base length L, each source's length uniform over the lengths >= L "
                        "(interventions.interchange.draw_source_lengths, as the benchmark's resample), grouped by length pair "
                        "(tasks.siit.eval_pairs); "
                        "iia and siia count every group (the benchmark's resample interchanges), iia_same_length the same-length ones",
        "protocol": CARD_PROTOCOL,
        "bar": "accuracy, min-node IIA and min-node SIIA >= pass_bar (sources of every length >= the base's), every bystander live; "
               "jointly: faithfulness with every bystander resampled together and the minimum over the bystander subsets "
               f">= pass_bar, |completeness(LL) - completeness(HL)| <= {COMPLETENESS_TOL}"
               + ("; a redundant set counts as one IIA unit (patched together), and each member's backup IIA and backup "
                  "accuracy (partners zero-ablated) >= pass_bar too" if "backup_iia_min" in m else ""),
        "accuracy": m["accuracy"],
        "iia": m["iia"],
        "iia_min_node": m["iia_min"],
        "siia": m["siia"],
        "siia_min_node": m["siia_min"],
        "aux_accuracy": m["aux_accuracy"],
        "iia_per_node": m["iia_per_node"],
        "iia_same_length": m["iia_same_length"],
        "iia_same_length_min_node": m["iia_same_length_min"],
        "iia_same_length_per_node": m["iia_same_length_per_node"],
        # categorical programs: cells with no defined HL answer, and IIA without them (reported, not gated)
        **{k: m[k] for k in ("iia_defined_per_node", "hl_tie_cells_per_node") if k in m},
        "siia_per_node": m["siia_per_node"],
        "joint": {
            "what": "every row resampled from its own one source (the IIA interchanges); faithfulness: fraction of non-BOS "
                    "cells whose LL prediction is unchanged with the bystanders resampled together; completeness: fraction "
                    "that changes with every in-circuit node (LL) or its HL node (HL) resampled together; circuit_iia: the "
                    "circuit-resampled LL output agrees with the circuit-resampled HL one; subsets: seeded, sizes spread "
                    "from 1 to every bystander (subset_seed)",
            "faithfulness_all": m["faithfulness_all"],
            "faithfulness_subset_min": m["faithfulness_subset_min"],
            "completeness_ll": m["completeness_ll"],
            "completeness_hl": m["completeness_hl"],
            "completeness_abs_diff": m["completeness_abs_diff"],
            "completeness_tolerance": COMPLETENESS_TOL,
            "circuit_iia": m["circuit_iia"],
            "subset_seed": derive(seed, "siit-card-subsets"),
            "subsets": [{"size": len(x["nodes"]), **x} for x in m["faithfulness_subsets"]],
        },
        **_redundant_card(corr, m),
        "liveness_metric": "input-dependent variance of the node's residual write (batch variance per position, summed over "
                           "d_model, mean over non-BOS positions), divided by the median in-circuit node's",
        "liveness_threshold": LIVE_THRESHOLD,
        "liveness": m["liveness"],
        "liveness_min_out_of_circuit": m["liveness_min_out_of_circuit"],
        "all_bystanders_live": live_ok,
        "passed": passed,
        "history": record["history"],
    }
    return card


def _redundant_card(corr: dict, m: dict) -> dict:
    """The card's section on redundant HL nodes (a backup pair): how each set was checked, per member."""
    sets = {h: list(v) for h, v in corr.items() if not isinstance(v, str)}
    if not sets:
        return {}
    return {"redundant": {
        "sets": sets,
        "what": "each listed HL node is carried by every LL node of its set: an interchange patches them together "
                "(iia_per_node under the key 'a+b'); each member alone, its partners zero-ablated, implements the node "
                "(backup_iia: member patched from the source vs HL with the node patched; backup_accuracy: member at "
                "base vs HL(base)); both per member are under the bar. resample_alone (no bar): the member patched "
                "from the source with its partners at base, the fraction of cells that stay at HL(base) (the HL "
                "answer is undefined there: single-node ablation of one member is expected to under-report it)",
        "pair_iia": {unit_name(v): m["iia_per_node"][unit_name(v)] for v in sets.values()},
        "backup_iia_per_node": m["backup_iia_per_node"],
        "backup_accuracy_per_node": m["backup_accuracy_per_node"],
        "resample_alone_per_node": m["resample_alone_per_node"],
        "backup_iia_min_node": m["backup_iia_min"],
        "backup_accuracy_min_node": m["backup_accuracy_min"],
    }}
