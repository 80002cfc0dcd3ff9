"""SIIT evaluation: held-out accuracy, per-node IIA / SIIA, aux accuracy, liveness, the joint metrics and the bar
(the card that records them: ``siit_training/card.py``)."""

from __future__ import annotations

import random

import torch
from transformer_lens import HookedTransformer

from interventions.hooks import node_activation, replacing_hooks
from interventions.interchange import source_lengths
from interventions.measures import cell_changed
from tasks.base import Node, Task
from tasks.siit.model import (LIVE_THRESHOLD, NUM_TOL, PASS_BAR, aux0_sizes, aux0_targets, aux_logit_accuracy, aux_sizes,
                              aux_targets, input_variance, ll_members, node_write, patch_hooks, unit_name)

# An HL categorical cell whose top two logits are within this has no defined answer (a tie: e.g.
# reverse's aggregate pointing past the base's end after a longer source's length is patched in)
HL_TIE_MARGIN = 1e-3


def hl_ties(hl_out: torch.Tensor) -> torch.Tensor:
    """``[b, pos]`` bool: cells whose HL logits have no unique maximum (top-2 margin < ``HL_TIE_MARGIN``)."""
    top = hl_out.topk(2, dim=-1).values
    return (top[..., 0] - top[..., 1]) < HL_TIE_MARGIN


def cell_correct(ll_out: torch.Tensor, hl_out: torch.Tensor, output: str, tol: float | None = None) -> torch.Tensor:
    """``[b, pos-1]`` booleans (BOS excluded): the LL prediction has not changed from the HL one
    (``interventions.measures.cell_changed``; numerical: within ``tol``, default ``NUM_TOL``)."""
    return ~cell_changed(hl_out[:, 1:], ll_out[:, 1:], output, NUM_TOL if tol is None else tol)


@torch.no_grad()
def _zero_hooks(nodes, acts: dict[str, torch.Tensor], n_pos: int):
    """Forward hooks setting ``nodes`` to 0 on every row (``acts``: a cache holding their hooks, for the shapes)."""
    return replacing_hooks([(node, slice(None), torch.zeros_like(node_activation(acts[node.hook_name], node)[:, :n_pos]))
                            for node in nodes])


# Bystander subsets the joint bar reads (``joint_subsets``): sizes spread from 1 to every bystander.
CARD_JOINT_SUBSETS = 32
# |completeness(LL) - completeness(HL)| allowed by the joint bar (the benchmark's HL_TOLERANCE).
COMPLETENESS_TOL = 0.03


def joint_subsets(bystanders: list[str], n_subsets: int, seed: int) -> list[list[str]]:
    """``n_subsets`` seeded random subsets of ``bystanders``, their sizes spread evenly over 1 .. all
    (the full set always among them; distinct sizes repeat with other members)."""
    if not bystanders or n_subsets <= 0:
        return []
    rng = random.Random(seed)
    n = len(bystanders)
    sizes = [max(1, round(1 + (n - 1) * i / max(n_subsets - 1, 1))) for i in range(n_subsets)]
    return [sorted(rng.sample(bystanders, k)) for k in sizes]


def evaluate(hl_task: Task, ll: HookedTransformer, ll_node_list: list[Node], corr: dict[str, str | list[str]],
             aux: dict[str, torch.Tensor] | None, data: list[tuple[torch.Tensor, torch.Tensor]], tol: float | None = None,
             n_subsets: int = CARD_JOINT_SUBSETS, subset_seed: int = 0) -> dict:
    """Accuracy, per-node IIA / SIIA, aux accuracy, per-node liveness and the joint metrics on (base, source) groups.

    Joint metrics (every row resampled from its own one source, the same interchanges as IIA):
    ``faithfulness_all``: fraction of cells whose LL prediction is unchanged when every bystander
    is resampled together; ``faithfulness_subsets``: the same per ``joint_subsets`` subset
    (``n_subsets`` of them, seeded by ``subset_seed``), ``faithfulness_subset_min`` their minimum;
    ``completeness_ll`` / ``completeness_hl``: fraction of cells whose prediction changes when
    every in-circuit LL node / its HL node is resampled together, ``completeness_abs_diff`` the
    gap; ``circuit_iia``: the circuit-ablated LL output agrees with the circuit-ablated HL one.

    ``iia`` and ``siia`` count every group: sources of every length >= the base's, the
    interchanges the benchmark's reference ``resample`` makes. ``iia_same_length`` counts only
    the groups whose source has the base's length (recorded, not a gate). ``tol``: numerical
    tolerance (default ``NUM_TOL``).

    A correspondence value that is a list (a redundant HL node, e.g. a backup pair) is one IIA
    unit, keyed ``"a+b"``: every member patched from the source together. Per member it also
    gives ``backup_iia_per_node`` (the member patched, its partners zero-ablated, vs HL with the
    node patched), ``backup_accuracy_per_node`` (the member at base, its partners zero-ablated,
    vs HL(base)) and, reported without a bar, ``resample_alone_per_node`` (the member patched,
    its partners at base: fraction of cells that stay at HL(base); the HL answer is undefined)."""
    hl = hl_task.model
    hl_nodes = {n.name: n for n in hl_task.nodes}
    ll_by_name = {n.name: n for n in ll_node_list}
    circ = [(hl_nodes[h], [ll_by_name[m] for m in ll_members(v)]) for h, v in corr.items()]
    redundant = [(h, group) for h, group in circ if len(group) > 1]
    bystanders = [n for n in ll_node_list if not n.in_circuit]
    hooks_ll = sorted({n.hook_name for n in ll_node_list})
    hooks_hl = sorted({h.hook_name for h, _ in circ})
    last = f"blocks.{ll.cfg.n_layers - 1}.hook_resid_post"
    tot = {"acc": [0, 0], "aux": [0, 0]}
    iia = {unit_name([l.name for l in g]): [0, 0] for _, g in circ}  # every group
    iia_same = {unit_name([l.name for l in g]): [0, 0] for _, g in circ}  # groups whose source has the base's length
    # cells where the patched HL output has a unique argmax (a tie has no defined answer); reported, not gated
    iia_defined = {unit_name([l.name for l in g]): [0, 0] for _, g in circ}
    hl_tie_cells = {unit_name([l.name for l in g]): 0 for _, g in circ}
    backup_iia = {l.name: [0, 0] for _, g in redundant for l in g}
    backup_acc = {l.name: [0, 0] for _, g in redundant for l in g}
    alone = {l.name: [0, 0] for _, g in redundant for l in g}
    siia = {n.name: [0, 0] for n in bystanders}
    var = {n.name: [] for n in ll_node_list}
    subsets = joint_subsets([n.name for n in bystanders], n_subsets, subset_seed)
    by_name = {n.name: n for n in bystanders}
    joint = {"all": [0, 0], "c_ll": [0, 0], "c_hl": [0, 0], "c_iia": [0, 0]}
    joint_sub = [[0, 0] for _ in subsets]

    def count(into, ok):
        into[0] += ok.sum().item(); into[1] += ok.numel()

    for base, src in data:
        b = base.shape[0]
        allrows = torch.arange(b)
        hl_base = hl(base)
        _, hl_src = hl.run_with_cache(src, names_filter=lambda n: n in hooks_hl)
        ll_base, ll_cache = ll.run_with_cache(base, names_filter=lambda n: n in hooks_ll)
        _, ll_src = ll.run_with_cache(src, names_filter=lambda n: n in hooks_ll)
        outs: dict[frozenset, torch.Tensor] = {}  # one forward per distinct node set (the full bystander set is also a subset)

        def resampled(nodes):  # the LL output with ``nodes`` resampled together from each row's source
            key = frozenset(n.name for n in nodes)
            if key not in outs:
                outs[key] = ll.run_with_hooks(base, fwd_hooks=patch_hooks([(n, allrows, allrows) for n in nodes], ll_src.cache_dict,
                                                                          base.shape[1]))
            return outs[key]

        c = cell_correct(ll_base, hl_base, hl_task.output, tol)
        tot["acc"][0] += c.sum().item(); tot["acc"][1] += c.numel()
        for n in ll_node_list:
            var[n.name].append(input_variance(node_write(n, ll_cache[n.hook_name], ll)).item())
        for h, group in circ:
            key = unit_name([l.name for l in group])
            hp = hl.run_with_hooks(base, fwd_hooks=patch_hooks([(h, allrows, allrows)], hl_src.cache_dict, base.shape[1]))
            c = cell_correct(resampled(group), hp, hl_task.output, tol)
            iia[key][0] += c.sum().item(); iia[key][1] += c.numel()
            if hl_task.output == "categorical":
                tie = hl_ties(hp[:, 1:])
                iia_defined[key][0] += c[~tie].sum().item(); iia_defined[key][1] += (~tie).sum().item()
                hl_tie_cells[key] += tie.sum().item()
            if src.shape[1] == base.shape[1]:
                iia_same[key][0] += c.sum().item(); iia_same[key][1] += c.numel()
            if len(group) == 1:
                continue
            for l in group:
                partners = _zero_hooks([o for o in group if o is not l], ll_cache, base.shape[1])
                patched = patch_hooks([(l, allrows, allrows)], ll_src.cache_dict, base.shape[1])
                for store, hooks, target in ((backup_iia, patched + partners, hp), (backup_acc, partners, hl_base),
                                             (alone, patched, hl_base)):
                    c = cell_correct(ll.run_with_hooks(base, fwd_hooks=hooks), target, hl_task.output, tol)
                    store[l.name][0] += c.sum().item(); store[l.name][1] += c.numel()
        for n in bystanders:
            count(siia[n.name], cell_correct(resampled([n]), hl_base, hl_task.output, tol))
        if bystanders:
            count(joint["all"], cell_correct(resampled(bystanders), ll_base, hl_task.output, tol))
        for counts, names in zip(joint_sub, subsets):
            count(counts, cell_correct(resampled([by_name[m] for m in names]), ll_base, hl_task.output, tol))
        store = {}
        hooks = patch_hooks([(l, allrows, allrows) for _, g in circ for l in g], ll_src.cache_dict, base.shape[1])
        hooks.append((last, lambda act, hook: store.__setitem__("r", act)))
        if aux is not None and "aux.L0_W_U" in aux:
            hooks.append(("blocks.0.hook_resid_post", lambda act, hook: store.__setitem__("r0", act)))
        lp_circ = ll.run_with_hooks(base, fwd_hooks=hooks)
        hp_circ = hl.run_with_hooks(base, fwd_hooks=patch_hooks([(h, allrows, allrows) for h, _ in circ], hl_src.cache_dict,
                                                                base.shape[1]))
        count(joint["c_ll"], ~cell_correct(lp_circ, ll_base, hl_task.output, tol))
        count(joint["c_hl"], ~cell_correct(hp_circ, hl_base, hl_task.output, tol))
        count(joint["c_iia"], cell_correct(lp_circ, hp_circ, hl_task.output, tol))
        if aux is not None:
            logits = store["r"] @ aux["aux.W_U"] + aux["aux.b_U"]
            ok, n_cells = aux_logit_accuracy(logits, aux_targets(base, ll.cfg.d_vocab), aux_sizes(ll.cfg.d_vocab))
            tot["aux"][0] += ok; tot["aux"][1] += n_cells
            if "aux.L0_W_U" in aux:
                logits0 = store["r0"] @ aux["aux.L0_W_U"] + aux["aux.L0_b_U"]
                ok, n_cells = aux_logit_accuracy(logits0, aux0_targets(base, ll.cfg.d_vocab), aux0_sizes(ll.cfg.d_vocab))
                tot["aux"][0] += ok; tot["aux"][1] += n_cells
    frac = lambda a: a[0] / max(a[1], 1)
    mean_var = {k: sum(v) / len(v) for k, v in var.items()}
    in_vars = sorted(mean_var[l.name] for _, g in circ for l in g)
    med = in_vars[len(in_vars) // 2] if len(in_vars) % 2 else 0.5 * (in_vars[len(in_vars) // 2 - 1] + in_vars[len(in_vars) // 2])
    live = {k: v / med if med > 0 else float("nan") for k, v in mean_var.items()}
    iia_f = {k: frac(v) for k, v in iia.items()}
    iia_sf = {k: frac(v) for k, v in iia_same.items()}
    siia_f = {k: frac(v) for k, v in siia.items()}
    faith_sub = [frac(c) for c in joint_sub]
    joint_m = {
        "faithfulness_all": frac(joint["all"]) if bystanders else 1.0,
        "faithfulness_subsets": [{"nodes": names, "faithfulness": f} for names, f in zip(subsets, faith_sub)],
        "faithfulness_subset_min": min(faith_sub, default=1.0),
        "completeness_ll": frac(joint["c_ll"]),
        "completeness_hl": frac(joint["c_hl"]),
        "completeness_abs_diff": abs(frac(joint["c_ll"]) - frac(joint["c_hl"])),
        "circuit_iia": frac(joint["c_iia"]),
    }
    backup = {}
    if redundant:
        backup = {
            "backup_iia_per_node": {k: frac(v) for k, v in backup_iia.items()},
            "backup_accuracy_per_node": {k: frac(v) for k, v in backup_acc.items()},
            "resample_alone_per_node": {k: frac(v) for k, v in alone.items()},
        }
        backup["backup_iia_min"] = min(backup["backup_iia_per_node"].values())
        backup["backup_accuracy_min"] = min(backup["backup_accuracy_per_node"].values())
    return {
        **backup,
        **joint_m,
        "accuracy": frac(tot["acc"]),
        "iia": sum(iia_f.values()) / len(iia_f),
        "iia_min": min(iia_f.values()),
        "iia_per_node": iia_f,
        "iia_same_length": sum(iia_sf.values()) / len(iia_sf),
        "iia_same_length_min": min(iia_sf.values()),
        "iia_same_length_per_node": iia_sf,
        **({"iia_defined_per_node": {k: frac(v) for k, v in iia_defined.items()},
            "hl_tie_cells_per_node": hl_tie_cells} if hl_task.output == "categorical" else {}),
        "siia": sum(siia_f.values()) / max(len(siia_f), 1),
        "siia_min": min(siia_f.values()) if siia_f else 1.0,
        "aux_accuracy": frac(tot["aux"]) if aux is not None else None,
        "siia_per_node": siia_f,
        "liveness": live,
        "liveness_min_out_of_circuit": min((live[n.name] for n in bystanders), default=float("nan")),
        "median_in_circuit_write_variance": med,
    }


def bar_score(m: dict) -> float:
    """The number the bar reads: min(accuracy, weakest in-circuit node's IIA, weakest bystander's SIIA,
    faithfulness with every bystander resampled together, the weakest bystander subset's faithfulness,
    and a completeness term: 1 while |completeness(LL) - completeness(HL)| <= ``COMPLETENESS_TOL``, else
    1 - the gap, which is below the bar); with a redundant node also its members' weakest backup IIA and
    backup accuracy (each member alone, its partners zero-ablated)."""
    gap = m["completeness_abs_diff"]
    return min(m["accuracy"], m["iia_min"], m["siia_min"], m["faithfulness_all"], m["faithfulness_subset_min"],
               1.0 if gap <= COMPLETENESS_TOL else 1.0 - gap,
               m.get("backup_iia_min", 1.0), m.get("backup_accuracy_min", 1.0))


def passes_bar(m: dict) -> bool:
    """Per node: accuracy, every in-circuit node's IIA (a redundant set: the set patched together, and each
    member's backup IIA and backup accuracy) and every bystander's SIIA >= ``PASS_BAR``, every bystander live;
    jointly: faithfulness with every bystander resampled together and with each bystander subset >= ``PASS_BAR``,
    |completeness(LL) - completeness(HL)| <= ``COMPLETENESS_TOL``."""
    return (bar_score(m) >= PASS_BAR and m["completeness_abs_diff"] <= COMPLETENESS_TOL
            and m["liveness_min_out_of_circuit"] >= LIVE_THRESHOLD)


def eval_pairs(task: Task, n_per_length: int, seed: int, cross_length: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Held-out (base, source) groups, sources drawn independently.

    One same-length group of ``n_per_length`` pairs per length; with ``cross_length`` also, for
    each base length L, one group per longer source length Ls > L (``n_per_length`` split
    between them, at least 16 each); patches take the source's first L + 1 positions
    (``patch_hooks(n_pos=...)``).
    """
    rng = random.Random(seed)
    out = []
    lo, hi = task.inputs.min_len, task.inputs.max_len
    for L in range(lo, hi + 1):
        longer = [Ls for Ls in source_lengths(L, range(lo, hi + 1)) if Ls > L] if cross_length else []
        for Ls, n in [(L, n_per_length)] + [(Ls, max(16, n_per_length // len(longer))) for Ls in longer]:
            base = task.encode([task.inputs.draw(rng, L) for _ in range(n)])
            src = task.encode([task.inputs.draw(rng, Ls) for _ in range(n)])
            out.append((base, src))
    return out
