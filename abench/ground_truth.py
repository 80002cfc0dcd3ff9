"""The ground-truth check of a task: does its reference method agree with its own circuit labels?

A SIIT task's labels say which low-level (LL) nodes implement which high-level (tracr, HL) nodes
and that every other node is irrelevant under resample ablation. Each run checks, on the eval
data of the leaderboard itself, that

1. the reference method (``resample``: sources of every length >= the base's, the interchanges
   the models were trained on) separates the circuit perfectly: AUROC 1 and gap > 0;
2. every in-circuit LL node has the effect its HL node has under exactly the same (base,
   source) interchanges: ``|LL effect - HL effect| <= HL_TOLERANCE``.

A correspondence value may be a list of LL nodes (a redundant HL node: a backup pair, each
member of which carries the node alone, family ``siit_backup``). Resampling one member alone
then has no defined HL answer, so the set is scored as one *unit*: its joint resample effect
(every member resampled from the same source) is compared with the HL node's effect and enters
the separation in place of its members; the members' single-node effects are reported, not
gated. Every other node is its own unit.

A task that fails is reported with its reasons and left out of the pooled numbers. Tasks
without a high-level model (tracr: the labels are the weights themselves) have no check.
"""

from __future__ import annotations

from abench.effects import joint_effects, node_effects
from abench.separability import separability
from ablations.base import TaskData
from ablations.basic import Resample
from tasks.base import Task

# Allowed |LL effect - HL effect| per in-circuit node. A model at the bar (accuracy and every
# node's IIA >= 0.99 on these interchanges) differs by at most ~0.02 from its HL node.
HL_TOLERANCE = 0.03
REFERENCE_METHOD = "resample"


def unit_key(value) -> str:
    """The unit a correspondence value names: the LL node, or a redundant set's members joined by ``+``."""
    return value if isinstance(value, str) else "+".join(value)


def high_level_effects(task: Task, ev: TaskData) -> dict[str, dict]:
    """Per in-circuit LL unit: its HL node and the HL model's effect under the same interchanges.

    Returns ``{ll unit: {"hl_node": name, "hl_effect": fraction of non-BOS cells changed}}``, a unit
    being an LL node name, or ``"a+b"`` for a redundant set (a correspondence value that is a list).
    The HL model sees the same base tokens and the same source of every row (``ev.sources``).
    """
    hl = task.info["high_level"]
    corr = task.info["correspondence"]  # HL node -> LL node (or list of LL nodes)
    hl_nodes = [n for n in hl.nodes if n.name in corr]
    hl_data = TaskData.build(hl.model, hl.output, hl_nodes, ev.tokens, ev.cf_tokens, seed=ev.seed, sources=ev.sources)
    effects = {e.name: e.effect for e in node_effects(Resample(), hl_data)}
    return {unit_key(corr[h.name]): {"hl_node": h.name, "hl_effect": effects[h.name]} for h in hl_nodes}


def check_task(task: Task, ev: TaskData) -> dict | None:
    """The ground-truth check of ``task`` on its eval data, or None when it has no high-level model."""
    if task.ground_truth != REFERENCE_METHOD or "high_level" not in task.info:
        return None
    ll = node_effects(Resample(), ev)
    hl = high_level_effects(task, ev)
    sets = {unit_key(v): list(v) for v in task.info["correspondence"].values() if not isinstance(v, str)}
    member_of = {m: key for key, members in sets.items() for m in members}
    nodes, units = [], []
    for e in ll:
        entry = {"name": e.name, "in_circuit": e.in_circuit, "ll_effect": e.effect}
        if e.name in member_of:  # reported, not gated: one member's resample has no HL answer
            entry["member_of"] = member_of[e.name]
        elif e.name in hl:
            entry.update(hl[e.name], abs_diff=abs(e.effect - hl[e.name]["hl_effect"]))
        nodes.append(entry)
        if e.name not in member_of:
            units.append(entry)
    if sets:
        for j in joint_effects(Resample(), ev, sets, ll):
            units.append({"name": j["name"], "in_circuit": True, "ll_effect": j["effect"], "members": j["nodes"],
                          "single_effects": j["single_effects"], **hl[j["name"]],
                          "abs_diff": abs(j["effect"] - hl[j["name"]]["hl_effect"])})
    sep = separability([u["in_circuit"] for u in units], [u["ll_effect"] for u in units])
    diffs = [u["abs_diff"] for u in units if "abs_diff" in u]
    reasons = []
    if sep["auroc"] is None or sep["auroc"] < 1.0:
        reasons.append(f"reference {REFERENCE_METHOD} AUROC {sep['auroc']} < 1")
    if sep["gap"] is None or sep["gap"] <= 0:
        reasons.append(f"reference {REFERENCE_METHOD} gap {sep['gap']} <= 0")
    reasons += [
        f"{n['name']}: LL effect {n['ll_effect']:.3f} vs HL {n['hl_node']} {n['hl_effect']:.3f} (|diff| {n['abs_diff']:.3f} > {HL_TOLERANCE})"
        for n in units if n.get("abs_diff", 0.0) > HL_TOLERANCE
    ]
    return {
        "task": task.name,
        "reference_method": REFERENCE_METHOD,
        "hl_tolerance": HL_TOLERANCE,
        "passed": not reasons,
        "reasons": reasons,
        "auroc": sep["auroc"],
        "gap": sep["gap"],
        "max_abs_diff": max(diffs) if diffs else None,
        "nodes": nodes,
        # what the separation and the HL comparison score: every node alone, a redundant set by its joint effect
        "units": units,
        "joint_units": [u for u in units if "members" in u],
    }
