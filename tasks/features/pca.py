"""PCA feature tasks: the directions a user without labels has, on the oracle task's rotated model.

At every residual site, the principal directions of the residual stream over a seeded sample of the task's
own inputs (non-BOS positions, centred; directions with variance above ``MIN_VARIANCE_SHARE`` of the
largest's). Each direction is labelled by the true atom it matches (``|cos| >= MATCH_COS`` with one scored atom's
direction at its site): it takes that atom's label. The rest are **mixed**: reported with their best atom
cosine and how much of them lies in the span of the site's in- and out-of-circuit atoms
(``info["mixed_directions"]``), never scored. A one-hot variable's atoms fire together in a simplex, so its
principal directions mostly mix its atoms; about one direction in ten matches one atom. The labels inherit
the oracle task's truth (its check runs on the same model), so a PCA task has no check of its own.
"""

from __future__ import annotations

import torch

from interventions.nodes import Node
from tasks.base import Task
from tasks.features.family import feature_task, task_name

PCA_FAMILY = "features_pca"
MATCH_COS = 0.7
MIN_VARIANCE_SHARE = 1e-4  # of the largest principal direction's variance: the rest is float noise
PCA_SAMPLE = 256  # inputs, split evenly over the lengths
PCA_SEED = 0


def _span_cos(v: torch.Tensor, atoms: torch.Tensor) -> float:
    """``|cos|`` between unit ``v [d]`` and its projection on the span of ``atoms [d, m]`` (orthonormal columns)."""
    return float((atoms.T @ v).norm()) if atoms.shape[1] else 0.0


def principal_directions(x: torch.Tensor) -> torch.Tensor:
    """``[k, d]`` unit principal directions of ``x [n, d]`` (centred), largest variance first, those above
    ``MIN_VARIANCE_SHARE`` of the largest's."""
    _, s, vh = torch.linalg.svd((x - x.mean(0)).double(), full_matrices=False)
    var = s**2
    return vh[var > MIN_VARIANCE_SHARE * var[0]].float() if len(var) and var[0] > 0 else vh[:0].float()


def pca_task(p: str, q: str, device: str = "cpu") -> Task:
    """The PCA feature task of (p, q): the oracle task's model, one node per labelled principal direction."""
    oracle = feature_task(p, q, device)
    tokens = oracle.sample(PCA_SAMPLE, PCA_SEED)
    by_hook: dict[str, list[Node]] = {}
    for n in oracle.nodes:
        by_hook.setdefault(n.hook_name, []).append(n)
    nodes, mixed, matches = [], {}, {}
    for hook, atoms in by_hook.items():
        with torch.no_grad():
            x = torch.cat([oracle.model.run_with_cache(t, names_filter=hook)[1][hook][:, 1:].reshape(-1, oracle.model.cfg.d_model)
                           for t in tokens])
        inside = torch.cat([a.direction for a in atoms if a.in_circuit] or [x.new_zeros(x.shape[1], 0)], 1)
        outside = torch.cat([a.direction for a in atoms if not a.in_circuit] or [x.new_zeros(x.shape[1], 0)], 1)
        all_atoms = torch.cat([a.direction for a in atoms], 1)
        layer, site = atoms[0].layer, atoms[0].site
        for j, v in enumerate(principal_directions(x)):
            name = f"pc{j}"
            cos = (all_atoms.T @ v).abs()
            if float(cos.max()) < MATCH_COS:
                mixed.setdefault(hook, []).append({"direction": name, "best_atom_cos": round(float(cos.max()), 3),
                                                   "cos_in_span": round(_span_cos(v, inside), 3), "cos_out_span": round(_span_cos(v, outside), 3)})
                continue
            atom = atoms[int(cos.argmax())]
            matches[f"{hook}[{name}]"] = atom.feature
            nodes.append(Node(layer, "feature", in_circuit=atom.in_circuit, feature=name, site=site, direction=v[:, None].to(device)))
    info = {**oracle.info, "directions": "pca", "pca_sample": PCA_SAMPLE, "pca_seed": PCA_SEED, "match_cos": MATCH_COS,
            "atom_matches": matches, "mixed_directions": mixed, "truth_from": oracle.name}
    return Task(name=task_name(p, q) + "__pca", family=PCA_FAMILY, model=oracle.model, output=oracle.output, nodes=nodes,
                inputs=oracle.inputs, encoding=oracle.encoding, ground_truth=oracle.ground_truth, info=info)


