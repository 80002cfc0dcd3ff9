"""The ground-truth check of a task: does its reference method agree with its own circuit labels?

A SIIT task's labels say which low-level (LL) nodes implement which high-level (tracr, HL) nodes
and that every other node is irrelevant under resample ablation. Each run checks, on the eval
data of the leaderboard itself, that

1. the reference method (``resample``: sources of every length >= the base's, the interchanges
   the models were trained on) separates the circuit perfectly: AUROC 1 and gap > 0;
2. every in-circuit LL node has the effect its HL node has under exactly the same (base,
   source) interchanges: ``|LL effect - HL effect| <= HL_TOLERANCE``;
3. the circuit is the circuit jointly (``abench.circuit.reference_circuit``, the same
   interchanges): with every out-of-circuit node resampled together the output stays
   (faithfulness >= ``FAITHFULNESS_BAR``), and with every in-circuit node resampled together it
   changes as the HL model's does with its corresponding nodes resampled
   (``|completeness(LL) - completeness(HL)| <= HL_TOLERANCE``).

A correspondence value may be a list of LL nodes (a redundant HL node: a backup pair, each
member of which carries the node alone, family ``siit_backup``). Resampling one member alone
then has no defined HL answer, so the set is scored as one *unit*: its joint resample effect
(every member resampled from the same source) is compared with the HL node's effect and enters
the separation in place of its members; the members' single-node effects are reported, not
gated. Every other node is its own unit.

A feature task (``tasks/features``) is checked the same way against its main program's own tracr model:
each in-circuit residual atom against the same atom of P's residual under the same value swaps.

A task that fails is reported with its reasons and left out of the pooled numbers. Tasks
without a high-level model (tracr: the labels are the weights themselves) have no check.
"""

from __future__ import annotations

from abench.circuit import reference_circuit
from abench.document import GroundTruthCheck
from abench.effects import joint_effects, node_effects
from abench.separability import separability
from ablations.task_data import TaskData
from ablations.basic import Resample
from tasks.base import Task, unit_name

# Allowed |LL effect - HL effect| per in-circuit node. A model at the bar (accuracy and every
# node's IIA >= 0.99 on these interchanges) differs by at most ~0.02 from its HL node.
HL_TOLERANCE = 0.03
REFERENCE_METHOD = "resample"
# the ground truths the check holds to a high-level model: SIIT's (trained under resample) and the feature
# family's (labels read off the merged weights, held to the main program's own atoms, tasks/features/family.py)
CHECKED_TRUTHS = (REFERENCE_METHOD, "reads")
# Fraction of non-BOS cells that must keep their prediction with every out-of-circuit node resampled together.
FAITHFULNESS_BAR = 0.99


def high_level_data(task: Task, ev: TaskData) -> TaskData:
    """The HL model's data on the interchanges of ``ev``: the same base tokens, the same source of every
    row (``ev.sources``), its nodes those the correspondence names."""
    hl = task.high_level
    hl_nodes = [n for n in hl.nodes if n.name in task.correspondence]
    return TaskData.build(hl.model, hl.output, hl_nodes, ev.tokens, ev.cf_tokens, seed=ev.seed, sources=ev.sources)


def high_level_effects(task: Task, ev: TaskData, hl_data: TaskData | None = None) -> dict[str, dict]:
    """Per in-circuit LL unit: its HL node and the HL model's effect under the same interchanges.

    Returns ``{ll unit: {"hl_node": name, "hl_effect": fraction of non-BOS cells changed}}``, a unit
    being an LL node name, or ``"a+b"`` for a redundant set (a correspondence value that is a list).
    ``hl_data``: ``high_level_data(task, ev)`` when the caller has it.
    """
    corr = task.correspondence  # HL node -> LL node (or list of LL nodes)
    hl_data = hl_data if hl_data is not None else high_level_data(task, ev)
    hl_nodes = hl_data.nodes
    effects = {e.name: e.effect for e in node_effects(Resample(), hl_data)}
    return {unit_name(corr[h.name]): {"hl_node": h.name, "hl_effect": effects[h.name]} for h in hl_nodes}


def check_task(task: Task, ev: TaskData) -> GroundTruthCheck | None:
    """The ground-truth check of ``task`` on its eval data, or None when it has no high-level model."""
    if task.ground_truth not in CHECKED_TRUTHS or task.high_level is None:
        return None
    ll = node_effects(Resample(), ev)
    hl_data = high_level_data(task, ev)
    hl = high_level_effects(task, ev, hl_data)
    sets = {unit_name(v): list(v) for v in task.correspondence.values() if not isinstance(v, str)}
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
    # jointly: the bystanders together, and the circuit together against the HL circuit
    circ_ll = reference_circuit(ev, REFERENCE_METHOD)
    circ_hl = reference_circuit(hl_data, REFERENCE_METHOD)
    completeness_diff = abs(circ_ll["completeness"] - circ_hl["completeness"])
    if circ_ll["faithfulness"] < FAITHFULNESS_BAR:
        reasons.append(f"reference {REFERENCE_METHOD} faithfulness {circ_ll['faithfulness']:.3f} < {FAITHFULNESS_BAR} "
                       f"(every out-of-circuit node resampled together)")
    if completeness_diff > HL_TOLERANCE:
        reasons.append(f"completeness LL {circ_ll['completeness']:.3f} vs HL {circ_hl['completeness']:.3f} "
                       f"(|diff| {completeness_diff:.3f} > {HL_TOLERANCE}; every in-circuit node resampled together)")
    return GroundTruthCheck(
        task=task.name, reference_method=REFERENCE_METHOD, hl_tolerance=HL_TOLERANCE, passed=not reasons, reasons=reasons,
        auroc=sep["auroc"], gap=sep["gap"], max_abs_diff=max(diffs) if diffs else None, faithfulness_bar=FAITHFULNESS_BAR,
        faithfulness=circ_ll["faithfulness"], completeness_ll=circ_ll["completeness"], completeness_hl=circ_hl["completeness"],
        completeness_abs_diff=completeness_diff, nodes=nodes,
        units=units,  # what the separation and the HL comparison score: every node alone, a redundant set by its joint effect
    )
