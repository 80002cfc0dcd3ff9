"""Feature tasks: a merged (P, Q) model with its residual basis rotated, whose nodes are the true atoms
(tracr's labelled one-hot directions, turned by R) at every residual site: the *oracle* directions.

Sites: ``hook_resid_pre`` of every layer and the final residual (``hook_resid_post`` of the last layer).
Labels from the weights: at a site, an atom is in the circuit when it is one of P's (or a shared input)
atoms and some P component at or after the site reads it (a P head's query, key or value weights, a P
neuron's input weights, or the unembedding; at the final residual only the unembedding reads); Q's
atoms, and P's atoms read only before the site, are out. Atoms that never fire at a site (written later,
or overwritten to zero, or non-zero in under 1% of the cells) are dropped; atoms whose value at each position is the same on every input
(``one``, ``tokens:BOS``, the position atoms ``indices:*``) are reported apart and not scored: mean and
resample ablation cannot move them by construction.
"""

from __future__ import annotations

import random
from dataclasses import replace

import torch

from interventions.nodes import Node
from tasks.base import Task, describe_ground_truth
from tasks.features.merge import canonical_labels, merge, orthogonal, rotate
from tasks.tracr.compiled import build_model, decode_encoding, load_or_compile, task_of_program
from tasks.tracr.programs import PROGRAMS

FAMILY = "features"
# the compressed tasks (tasks/features/compress.py): their own family, never pooled with the oracle one
COMPRESSED_FAMILY = "features_compressed"
GROUND_TRUTH = "reads"
describe_ground_truth(GROUND_TRUTH, "reads: a residual atom is in the circuit at a site when a main-program component at or "
                      "after the site reads it (the bystander program's atoms are out); labels read off the merged weights")
ROTATION_SEED = 0
FIRING_SAMPLE = 64  # inputs per length used to find which atoms fire at a site and which are constant
# an atom is scored at a site when it is non-zero in at least this share of the sample's cells there: rarer ones
# (count_a = 7 of 8 tokens) would not vary in a leaderboard's eval data, so no method could be scored on them
FIRING_MIN_SHARE = 0.01


def task_name(p: str, q: str, compressed: bool = False) -> str:
    """``feat_{main}__{bystander}``, ``_compressed`` appended for the compressed task."""
    return f"feat_{p}__{q}" + ("_compressed" if compressed else "")


def sites(n_layers: int) -> list[tuple[int, str]]:
    """``(layer, site)`` of every residual site: ``resid_pre`` of each layer, then the last layer's ``resid_post``."""
    return [(layer, "resid_pre") for layer in range(n_layers)] + [(n_layers - 1, "resid_post")]


def read_by_main(sd: dict[str, torch.Tensor], card: dict, layer: int, site: str) -> torch.Tensor:
    """``[d_model]`` bool: the merged residual dimensions some P component at or after the site reads (the
    unrotated merged weights; P's heads and neurons come first in each layer, ``tasks.features.merge``)."""
    cfg = card["cfg"]
    reads = sd["unembed.W_U"].abs().sum(1) > 0
    if site == "resid_post":
        return reads
    p_heads, p_neurons = card["main_heads"], card["main_neurons"]
    for later in range(layer, cfg["n_layers"]):
        pre = f"blocks.{later}."
        for m in ("W_Q", "W_K", "W_V"):
            reads |= sd[pre + f"attn.{m}"][:p_heads].abs().sum((0, 2)) > 0
        reads |= sd[pre + "mlp.W_in"][:, :p_neurons].abs().sum(1) > 0
    return reads


def atom_activity(model, card: dict, p: str, seed: int = 0) -> dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]:
    """Per site, ``(fires [d_model], constant [d_model])`` over a sample of inputs of every length, read
    off the unrotated merged model: an atom fires when its coordinate is non-zero in at least
    ``FIRING_MIN_SHARE`` of the cells (BOS included: ``tokens:BOS`` fires there), and is constant when its
    value at each position is the same on every input."""
    spec = PROGRAMS[p].inputs
    enc = decode_encoding(card)
    rng = random.Random(seed)
    by_site: dict[tuple[int, str], list[torch.Tensor]] = {s: [] for s in sites(card["cfg"]["n_layers"])}
    longest = spec.max_len + 1
    with torch.no_grad():
        for length in range(spec.min_len, spec.max_len + 1):
            toks = torch.tensor([[enc["BOS"]] + [enc[t] for t in spec.draw(rng, length)] for _ in range(FIRING_SAMPLE)])
            _, cache = model.run_with_cache(toks)
            for layer, site in by_site:
                x = cache[f"blocks.{layer}.hook_{site}"]
                padded = torch.full((x.shape[0], longest, x.shape[2]), float("nan"))
                padded[:, : x.shape[1]] = x
                by_site[(layer, site)].append(padded)
    out = {}
    for key, parts in by_site.items():
        x = torch.cat(parts)  # [n, longest, d], NaN past each input's end
        cells = (~x[..., 0].isnan()).sum()
        fires = (x.nan_to_num(0.0).abs() > 1e-6).sum((0, 1)) >= FIRING_MIN_SHARE * cells
        present = ~x.isnan()
        high = torch.where(present, x, torch.full_like(x, float("-inf"))).amax(0)  # [longest, d], per position
        low = torch.where(present, x, torch.full_like(x, float("inf"))).amin(0)
        constant = ((high - low).nan_to_num(0.0) <= 1e-6).all(0)  # -inf - inf at no input: nan -> 0
        out[key] = (fires, constant)
    return out


def scored_atoms(sd: dict[str, torch.Tensor], card: dict, activity: dict) -> dict[tuple[int, str], list[tuple[int, bool]]]:
    """Per site, the atoms scored there as ``(atom index, in circuit)``: every atom that fires and is not
    constant, in the circuit when it is P's (or a shared input atom) and a P component at or after the site
    reads it (``sd``, ``card``: the unrotated merged model; ``activity``: ``atom_activity``)."""
    owner, labels = card["owner"], card["residual_labels"]
    out = {}
    for layer, site in sites(card["cfg"]["n_layers"]):
        fires, constant = activity[(layer, site)]
        reads = read_by_main(sd, card, layer, site)
        out[(layer, site)] = [(i, owner[labels[i]] != "Q" and bool(reads[i])) for i in range(len(labels)) if fires[i] and not constant[i]]
    return out


def feature_task(p: str, q: str, device: str = "cpu") -> Task:
    """The oracle feature task of main program ``p`` and bystander ``q``: the rotated merged model, and one
    feature node per scored atom at every site (atom i's direction row i of the rotation), labelled from the
    weights (module docstring)."""
    sd, card = merge(p, q)
    R = orthogonal(len(card["residual_labels"]), ROTATION_SEED)
    return task_on_model(p, q, sd, card, build_model(card, rotate(sd, R), device), R.float(),
                         {"directions": "oracle", "rotation_seed": ROTATION_SEED}, FAMILY, task_name(p, q), device)


def task_on_model(p: str, q: str, sd: dict[str, torch.Tensor], card: dict, model, directions: torch.Tensor, info: dict,
                  family: str, name: str, device: str = "cpu") -> Task:
    """A feature task of the merged (p, q) model ``sd``/``card`` run as ``model`` (rotated, or compressed), with
    atom i's unit direction in ``model``'s residual ``directions[i]`` (``[n_atoms, d_model]``): one feature
    node per scored atom at every site, labelled from the merged weights; ``info`` joins the task's info."""
    labels = card["residual_labels"]
    activity = atom_activity(build_model(card, sd), card, p)
    nodes, constant_atoms, dropped = [], {}, {}
    scored = scored_atoms(sd, card, activity)
    for layer, site in sites(card["cfg"]["n_layers"]):
        fires, constant = activity[(layer, site)]
        key = f"blocks.{layer}.hook_{site}"
        constant_atoms[key] = [labels[i] for i in range(len(labels)) if fires[i] and constant[i]]
        dropped[key] = [labels[i] for i in range(len(labels)) if not fires[i]]
        for i, in_circuit in scored[(layer, site)]:
            nodes.append(Node(layer, "feature", in_circuit=in_circuit, feature=labels[i], site=site,
                              direction=directions[i][:, None].to(device)))
    spec = PROGRAMS[p]
    high_level, correspondence = main_program_atoms(p, card, [n for n in nodes if n.in_circuit], device)
    return Task(name=name, family=family, model=model, output=spec.output, nodes=nodes, inputs=spec.inputs,
                encoding=decode_encoding(card), ground_truth=GROUND_TRUTH, high_level=high_level, correspondence=correspondence,
                info={"programs": {"main": p, "bystander": q}, **info, "constant_atoms": constant_atoms, "dropped_atoms": dropped,
                      "label": card["label"], "output_values": card["output_values"]})


def variable_of(label: str) -> str:
    """The variable an atom belongs to: ``back2/back2_1:a`` -> ``back2/back2_1``, ``tokens:a`` -> ``tokens``; a
    numerical variable is its own atom."""
    return label.rsplit(":", 1)[0] if ":" in label else label


def main_program_atoms(p: str, card: dict, in_circuit: list[Node], device: str = "cpu") -> tuple[Task, dict[str, list[str]]]:
    """The high-level model of a feature task: P's own tracr model, its nodes P's variables (the span of each
    variable's atoms in P's residual) at the sites of the in-circuit feature nodes, and the correspondence
    HL variable -> the LL feature nodes of its atoms there. The ground-truth check (``abench.ground_truth``)
    scores each such set by its joint resample effect, a value swap of the whole variable, against P's
    (one atom alone can leave a one-hot variable with no value or two, whose answer tracr leaves to a tie).
    A site past P's depth (an empty layer of the merged model) has no HL site of its own and is left out;
    the final residual maps to P's final residual."""
    hl = task_of_program(PROGRAMS[p], device=device)
    p_labels = canonical_labels(load_or_compile(PROGRAMS[p])[1]["residual_labels"])
    depth, last = hl.model.cfg.n_layers, card["cfg"]["n_layers"] - 1
    groups: dict[tuple[int, str, str], list[Node]] = {}
    for n in in_circuit:
        if n.site == "resid_post" and n.layer == last:
            layer, site = depth - 1, "resid_post"
        elif n.site == "resid_pre" and n.layer < depth:
            layer, site = n.layer, "resid_pre"
        else:
            continue
        groups.setdefault((layer, site, variable_of(n.feature)), []).append(n)
    eye = torch.eye(len(p_labels))
    hl_nodes, correspondence = [], {}
    for (layer, site, variable), members in groups.items():
        cols = [p_labels.index(m.feature.split("/", 1)[1] if "/" in m.feature else m.feature) for m in members]
        h = Node(layer, "feature", in_circuit=True, feature=variable, site=site, direction=eye[:, cols].to(device))
        hl_nodes.append(h)
        correspondence[h.name] = [m.name for m in members]
    return replace(hl, nodes=hl_nodes), correspondence
