"""SIIT evaluation: held-out accuracy, per-node IIA / SIIA, aux accuracy, liveness, the joint metrics and the bar
(the card that records them: ``siit_training/card.py``)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
from transformer_lens import ActivationCache, HookedTransformer

from interventions.hooks import node_activation, replacing_hooks
from interventions.interchange import draw_source_lengths
from interventions.measures import cell_changed
from tasks.base import Node, Task
from tasks.base import ll_members, unit_name
from tasks.siit.patching import input_variance, node_write, patch_hooks
from tasks.siit.protocol import LIVE_THRESHOLD, NUM_TOL, PASS_BAR
from tasks.siit.readouts import aux0_sizes, aux0_targets, aux_logit_accuracy, aux_sizes, aux_targets

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


@dataclass
class _Tally:
    """Running ``[correct, total]`` counts (and per-group write variances) behind ``evaluate``'s metrics."""

    tot: dict[str, list[int]]
    iia: dict[str, list[int]]
    iia_same: dict[str, list[int]]
    iia_defined: dict[str, list[int]]
    hl_tie_cells: dict[str, int]
    backup_iia: dict[str, list[int]]
    backup_acc: dict[str, list[int]]
    alone: dict[str, list[int]]
    siia: dict[str, list[int]]
    var: dict[str, list[float]]
    joint: dict[str, list[int]]
    joint_sub: list[list[int]]


def _new_tally(circ: list[tuple[Node, list[Node]]], redundant: list[tuple[Node, list[Node]]], bystanders: list[Node],
               ll_node_list: list[Node], subsets: list[list[str]]) -> _Tally:
    """Zeroed counters for every unit, redundant member, bystander, node and bystander subset."""
    return _Tally(
        tot={"acc": [0, 0], "aux": [0, 0]},
        iia={unit_name([l.name for l in g]): [0, 0] for _, g in circ},  # every group
        iia_same={unit_name([l.name for l in g]): [0, 0] for _, g in circ},  # groups whose source has the base's length
        # cells where the patched HL output has a unique argmax (a tie has no defined answer); reported, not gated
        iia_defined={unit_name([l.name for l in g]): [0, 0] for _, g in circ},
        hl_tie_cells={unit_name([l.name for l in g]): 0 for _, g in circ},
        backup_iia={l.name: [0, 0] for _, g in redundant for l in g},
        backup_acc={l.name: [0, 0] for _, g in redundant for l in g},
        alone={l.name: [0, 0] for _, g in redundant for l in g},
        siia={n.name: [0, 0] for n in bystanders},
        var={n.name: [] for n in ll_node_list},
        joint={"all": [0, 0], "c_ll": [0, 0], "c_hl": [0, 0], "c_iia": [0, 0]},
        joint_sub=[[0, 0] for _ in subsets],
    )


def _count(into: list[int], ok: torch.Tensor) -> None:
    """Add ``ok``'s true cells and its cell count to ``into``."""
    into[0] += ok.sum().item(); into[1] += ok.numel()


def _frac(a: list[int]) -> float:
    """``correct / total`` of a counter (0 when empty)."""
    return a[0] / max(a[1], 1)


@dataclass
class _Batch:
    """One (base, source) group: the HL and LL forwards every metric reads, and the LL resample outputs made so far."""

    ll: HookedTransformer
    base: torch.Tensor
    src: torch.Tensor
    allrows: torch.Tensor
    hl_base: torch.Tensor
    hl_src: ActivationCache
    ll_base: torch.Tensor
    ll_cache: ActivationCache
    ll_src: ActivationCache
    outs: dict[frozenset, torch.Tensor] = field(default_factory=dict)  # one forward per distinct node set

    def resampled(self, nodes: list[Node]) -> torch.Tensor:
        """The LL output with ``nodes`` resampled together from each row's source (cached per node set)."""
        key = frozenset(n.name for n in nodes)
        if key not in self.outs:
            self.outs[key] = self.ll.run_with_hooks(self.base, fwd_hooks=patch_hooks([(n, self.allrows, self.allrows) for n in nodes],
                                                                                      self.ll_src.cache_dict, self.base.shape[1]))
        return self.outs[key]


def _run_batch(hl: HookedTransformer, ll: HookedTransformer, base: torch.Tensor, src: torch.Tensor, hooks_hl: list[str],
               hooks_ll: list[str]) -> _Batch:
    """The HL output on ``base``, its cache on ``src``, and the LL output and caches on ``base`` and ``src``."""
    b = base.shape[0]
    allrows = torch.arange(b)
    hl_base = hl(base)
    _, hl_src = hl.run_with_cache(src, names_filter=lambda n: n in hooks_hl)
    ll_base, ll_cache = ll.run_with_cache(base, names_filter=lambda n: n in hooks_ll)
    _, ll_src = ll.run_with_cache(src, names_filter=lambda n: n in hooks_ll)
    return _Batch(ll, base, src, allrows, hl_base, hl_src, ll_base, ll_cache, ll_src)


def _count_unit(t: _Tally, bt: _Batch, hl: HookedTransformer, h: Node, group: list[Node], output: str, tol: float | None) -> None:
    """One correspondence unit's IIA (every group, defined cells and HL ties, same-length groups), then its members' backup counts."""
    base, allrows = bt.base, bt.allrows
    key = unit_name([l.name for l in group])
    hp = hl.run_with_hooks(base, fwd_hooks=patch_hooks([(h, allrows, allrows)], bt.hl_src.cache_dict, base.shape[1]))
    c = cell_correct(bt.resampled(group), hp, output, tol)
    t.iia[key][0] += c.sum().item(); t.iia[key][1] += c.numel()
    if output == "categorical":
        tie = hl_ties(hp[:, 1:])
        t.iia_defined[key][0] += c[~tie].sum().item(); t.iia_defined[key][1] += (~tie).sum().item()
        t.hl_tie_cells[key] += tie.sum().item()
    if bt.src.shape[1] == base.shape[1]:
        t.iia_same[key][0] += c.sum().item(); t.iia_same[key][1] += c.numel()
    if len(group) == 1:
        return
    _count_backup(t, bt, group, hp, output, tol)


def _count_backup(t: _Tally, bt: _Batch, group: list[Node], hp: torch.Tensor, output: str, tol: float | None) -> None:
    """Per member of a redundant unit: backup IIA, backup accuracy and resample-alone counts (partners zero-ablated / at base)."""
    base, allrows, ll = bt.base, bt.allrows, bt.ll
    for l in group:
        partners = _zero_hooks([o for o in group if o is not l], bt.ll_cache, base.shape[1])
        patched = patch_hooks([(l, allrows, allrows)], bt.ll_src.cache_dict, base.shape[1])
        for store, hooks, target in ((t.backup_iia, patched + partners, hp), (t.backup_acc, partners, bt.hl_base),
                                     (t.alone, patched, bt.hl_base)):
            c = cell_correct(ll.run_with_hooks(base, fwd_hooks=hooks), target, output, tol)
            store[l.name][0] += c.sum().item(); store[l.name][1] += c.numel()


def _count_bystanders(t: _Tally, bt: _Batch, bystanders: list[Node], subsets: list[list[str]], output: str,
                      tol: float | None) -> None:
    """Each bystander's SIIA, then faithfulness with every bystander and with each subset resampled together."""
    by_name = {n.name: n for n in bystanders}
    for n in bystanders:
        _count(t.siia[n.name], cell_correct(bt.resampled([n]), bt.hl_base, output, tol))
    if bystanders:
        _count(t.joint["all"], cell_correct(bt.resampled(bystanders), bt.ll_base, output, tol))
    for counts, names in zip(t.joint_sub, subsets):
        _count(counts, cell_correct(bt.resampled([by_name[m] for m in names]), bt.ll_base, output, tol))


def _count_circuit(t: _Tally, bt: _Batch, hl: HookedTransformer, circ: list[tuple[Node, list[Node]]],
                   aux: dict[str, torch.Tensor] | None, output: str, tol: float | None) -> None:
    """Completeness (LL and HL) and circuit IIA with the whole circuit resampled, then the aux readouts on that forward."""
    ll, base, allrows = bt.ll, bt.base, bt.allrows
    last = f"blocks.{ll.cfg.n_layers - 1}.hook_resid_post"
    store = {}
    hooks = patch_hooks([(l, allrows, allrows) for _, g in circ for l in g], bt.ll_src.cache_dict, base.shape[1])
    hooks.append((last, lambda act, hook: store.__setitem__("r", act)))
    if aux is not None and "aux.L0_W_U" in aux:
        hooks.append(("blocks.0.hook_resid_post", lambda act, hook: store.__setitem__("r0", act)))
    lp_circ = ll.run_with_hooks(base, fwd_hooks=hooks)
    hp_circ = hl.run_with_hooks(base, fwd_hooks=patch_hooks([(h, allrows, allrows) for h, _ in circ], bt.hl_src.cache_dict,
                                                            base.shape[1]))
    _count(t.joint["c_ll"], ~cell_correct(lp_circ, bt.ll_base, output, tol))
    _count(t.joint["c_hl"], ~cell_correct(hp_circ, bt.hl_base, output, tol))
    _count(t.joint["c_iia"], cell_correct(lp_circ, hp_circ, output, tol))
    if aux is not None:
        _count_aux(t, store, aux, base, ll)


def _count_aux(t: _Tally, store: dict[str, torch.Tensor], aux: dict[str, torch.Tensor], base: torch.Tensor,
               ll: HookedTransformer) -> None:
    """Aux readout accuracy from the final residual stream (and from layer 0's, where the model has that readout)."""
    logits = store["r"] @ aux["aux.W_U"] + aux["aux.b_U"]
    ok, n_cells = aux_logit_accuracy(logits, aux_targets(base, ll.cfg.d_vocab, ll.cfg.attention_dir == "causal"), aux_sizes(ll.cfg.d_vocab))
    t.tot["aux"][0] += ok; t.tot["aux"][1] += n_cells
    if "aux.L0_W_U" in aux:
        logits0 = store["r0"] @ aux["aux.L0_W_U"] + aux["aux.L0_b_U"]
        ok, n_cells = aux_logit_accuracy(logits0, aux0_targets(base, ll.cfg.d_vocab), aux0_sizes(ll.cfg.d_vocab))
        t.tot["aux"][0] += ok; t.tot["aux"][1] += n_cells


def _liveness(var: dict[str, list[float]], circ: list[tuple[Node, list[Node]]]) -> tuple[dict[str, float], float]:
    """Each node's mean write variance over the median of the in-circuit nodes' (nan when it is 0), and that median."""
    mean_var = {k: sum(v) / len(v) for k, v in var.items()}
    in_vars = sorted(mean_var[l.name] for _, g in circ for l in g)
    med = in_vars[len(in_vars) // 2] if len(in_vars) % 2 else 0.5 * (in_vars[len(in_vars) // 2 - 1] + in_vars[len(in_vars) // 2])
    live = {k: v / med if med > 0 else float("nan") for k, v in mean_var.items()}
    return live, med


def _joint_metrics(t: _Tally, subsets: list[list[str]], bystanders: list[Node]) -> dict:
    """Faithfulness (all bystanders, each subset, their minimum), completeness (LL, HL, gap) and circuit IIA."""
    faith_sub = [_frac(c) for c in t.joint_sub]
    return {
        "faithfulness_all": _frac(t.joint["all"]) if bystanders else 1.0,
        "faithfulness_subsets": [{"nodes": names, "faithfulness": f} for names, f in zip(subsets, faith_sub)],
        "faithfulness_subset_min": min(faith_sub, default=1.0),
        "completeness_ll": _frac(t.joint["c_ll"]),
        "completeness_hl": _frac(t.joint["c_hl"]),
        "completeness_abs_diff": abs(_frac(t.joint["c_ll"]) - _frac(t.joint["c_hl"])),
        "circuit_iia": _frac(t.joint["c_iia"]),
    }


def _backup_metrics(t: _Tally, redundant: list[tuple[Node, list[Node]]]) -> dict:
    """Per-member backup IIA, backup accuracy and resample-alone fractions and the two minima (empty without a redundant unit)."""
    backup = {}
    if redundant:
        backup = {
            "backup_iia_per_node": {k: _frac(v) for k, v in t.backup_iia.items()},
            "backup_accuracy_per_node": {k: _frac(v) for k, v in t.backup_acc.items()},
            "resample_alone_per_node": {k: _frac(v) for k, v in t.alone.items()},
        }
        backup["backup_iia_min"] = min(backup["backup_iia_per_node"].values())
        backup["backup_accuracy_min"] = min(backup["backup_accuracy_per_node"].values())
    return backup


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
    subsets = joint_subsets([n.name for n in bystanders], n_subsets, subset_seed)
    t = _new_tally(circ, redundant, bystanders, ll_node_list, subsets)

    for base, src in data:
        bt = _run_batch(hl, ll, base, src, hooks_hl, hooks_ll)
        _count(t.tot["acc"], cell_correct(bt.ll_base, bt.hl_base, hl_task.output, tol))
        for n in ll_node_list:
            t.var[n.name].append(input_variance(node_write(n, bt.ll_cache[n.hook_name], ll)).item())
        for h, group in circ:
            _count_unit(t, bt, hl, h, group, hl_task.output, tol)
        _count_bystanders(t, bt, bystanders, subsets, hl_task.output, tol)
        _count_circuit(t, bt, hl, circ, aux, hl_task.output, tol)
    live, med = _liveness(t.var, circ)
    iia_f = {k: _frac(v) for k, v in t.iia.items()}
    iia_sf = {k: _frac(v) for k, v in t.iia_same.items()}
    siia_f = {k: _frac(v) for k, v in t.siia.items()}
    return {
        **_backup_metrics(t, redundant),
        **_joint_metrics(t, subsets, bystanders),
        "accuracy": _frac(t.tot["acc"]),
        "iia": sum(iia_f.values()) / len(iia_f),
        "iia_min": min(iia_f.values()),
        "iia_per_node": iia_f,
        "iia_same_length": sum(iia_sf.values()) / len(iia_sf),
        "iia_same_length_min": min(iia_sf.values()),
        "iia_same_length_per_node": iia_sf,
        **({"iia_defined_per_node": {k: _frac(v) for k, v in t.iia_defined.items()},
            "hl_tie_cells_per_node": t.hl_tie_cells} if hl_task.output == "categorical" else {}),
        "siia": sum(siia_f.values()) / max(len(siia_f), 1),
        "siia_min": min(siia_f.values()) if siia_f else 1.0,
        "aux_accuracy": _frac(t.tot["aux"]) if aux is not None else None,
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
    """Held-out (base, source) groups: ``n_per_length`` fresh bases per length, each with a fresh source.

    Each source's length comes from the suite's one interchange draw
    (``interventions.interchange.draw_source_lengths``: uniform over the lengths >= the base's, the
    benchmark's resample distribution) with ``cross_length``, else it is the base's own length. Pairs are
    grouped by (base length, source length), one group each; patches take the source's first L + 1
    positions (``patch_hooks(n_pos=...)``). Inputs come from ``random.Random(seed)``, source lengths from
    a torch generator seeded with ``seed``.
    """
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    out = []
    lo, hi = task.inputs.min_len, task.inputs.max_len
    for L in range(lo, hi + 1):
        drawn = draw_source_lengths(L, range(lo, hi + 1) if cross_length else [L], n_per_length, gen)
        for Ls in sorted(set(drawn)):
            n = drawn.count(Ls)
            base = task.encode([task.inputs.draw(rng, L) for _ in range(n)])
            src = task.encode([task.inputs.draw(rng, Ls) for _ in range(n)])
            out.append((base, src))
    return out
