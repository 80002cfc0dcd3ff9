"""Single-node interventions on TransformerLens hooks: the batched path and the reference loop.

Both take, for every node, the replacement value of its activation (``[batch, pos, d]``) and
return the model's outputs with that node replaced. The reference loop runs one full forward
per node. The batched path runs, for each layer, one forward per chunk of that layer's nodes,
stacked along the batch axis, and recomputes nothing upstream of the node's write: given the
clean run's ``writes`` (every head's ``hook_z`` and ``resid_mid`` of the layer), a head's
replacement goes through its layer's output projection (no queries, keys or softmax of that
layer) and an MLP's through ``W_out`` (no MLP at all), and the model runs on from the next
layer; without them the clean residual stream before the layer is repeated and the model
starts at that layer (``start_at_layer``) with a replacing hook. Tests hold both to the loop
at 1e-5.

Joint ablation of node sets (``abench/circuit.py``) has the same two paths: one full forward per set
with all its hooks (``ablated_outputs_sets_loop``), or sets stacked along the batch axis, each
group of sets starting at its earliest layer (``ablated_outputs_sets_batched``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterator, Mapping, Sequence

import torch
from transformer_lens import HookedTransformer
from transformer_lens.utilities.addmm import batch_addmm

from interventions.blocks import attn_out, supports_write_start
from interventions.memory import rows_within_budget
from interventions.nodes import Node, resid_pre_name
from interventions.readout import FULL, Readout, run_from

# Rows per stacked forward: passes of a few hundred rows were the fastest on the 2-core CPU the
# suite was tuned on (benchmarks/test_speed.py reports the batched/loop ratio).
DEFAULT_MAX_ROWS = 512


def node_activation(hook_value: torch.Tensor, node: Node) -> torch.Tensor:
    """The node's slice of its hook's value: ``[batch, pos, d_head]``, ``[batch, pos, d_mlp]``, or a feature's
    coordinates ``[batch, pos, k]``."""
    if node.kind == "feature":
        return hook_value @ node.direction.to(hook_value.device, hook_value.dtype)
    return hook_value[:, :, node.head, :] if node.kind == "attn" else hook_value


def replacing_hooks(entries: Sequence[tuple[Node, object, torch.Tensor]]) -> list[tuple[str, Callable]]:
    """Forward hooks writing ``value`` into ``node``'s slice of the given batch ``rows``.

    ``entries``: ``(node, rows, value)`` with ``rows`` a slice or index tensor of the running
    batch and ``value`` shaped like the node's activation on those rows. One hook per hook name.
    """
    by_hook: dict[str, list] = defaultdict(list)
    for entry in entries:
        by_hook[entry[0].hook_name].append(entry)

    def make(group):
        features = [e for e in group if e[0].kind == "feature"]
        others = [e for e in group if e[0].kind != "feature"]
        directions = torch.cat([n.direction for n, _, _ in features], 1) if features else None
        gram = directions.T.double() @ directions.double() if features else None
        orthonormal = features and torch.allclose(gram, torch.eye(gram.shape[0], dtype=gram.dtype), atol=1e-5)

        def hook(act: torch.Tensor, hook) -> torch.Tensor:
            out = act.clone()  # not in place: autograd (optimal ablation, SIIT) may need the original
            for node, rows, value in others:
                if node.kind == "attn":
                    out[rows, :, node.head, :] = value
                else:
                    out[rows] = value
            if orthonormal:  # each feature's coordinates move alone; no other feature's coordinate changes
                for node, rows, value in features:
                    d = node.direction.to(out.device, out.dtype)
                    out[rows] = out[rows] + (value - out[rows] @ d) @ d.T
            elif features:
                out = write_coordinates(out, directions.to(out.device, out.dtype), *_coordinate_targets(out, features))
            return out

        return hook

    return [(name, make(group)) for name, group in by_hook.items()]


def _coordinate_targets(act: torch.Tensor, features: Sequence[tuple[Node, object, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(active [b, m], target [b, pos, m])``: which of the hook's ``m`` feature columns each row sets, and to what."""
    m = sum(n.width for n, _, _ in features)
    active = torch.zeros(act.shape[0], m, dtype=torch.bool, device=act.device)
    target = act.new_zeros(act.shape[0], act.shape[1], m)
    col = 0
    for node, rows, value in features:
        active[rows, col : col + node.width] = True
        target[rows, :, col : col + node.width] = value.to(act.dtype)
        col += node.width
    return active, target


def write_coordinates(
    x: torch.Tensor, directions: torch.Tensor, active: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """``x [b, pos, d]`` moved as little as possible (least norm) so that its coordinates along each
    row's active directions become ``target``: ``x + D c`` with ``D^T (x + D c) = target`` on the active
    columns (``directions D [d, m]``, unit columns, not necessarily orthogonal: features in superposition;
    ``active [b, m]``; ``target [b, pos, m]``, read on the active columns only). Non-orthogonal directions
    make a feature's coordinate move when another's is set; setting several at once solves for all of them
    together (where more are active than the span holds, in the least-squares sense: ``pinv``). With
    orthonormal directions it is each direction's own replacement."""
    gram = directions.T @ directions  # [m, m]
    both = active[:, :, None] & active[:, None, :]
    eye = torch.eye(gram.shape[0], dtype=x.dtype, device=x.device)
    system = torch.where(both, gram, torch.zeros_like(gram)) + eye * (~active)[:, None, :].to(x.dtype)
    gap = (target - x @ directions) * active[:, None, :].to(x.dtype)  # [b, pos, m]
    coef = gap @ torch.linalg.pinv(system).transpose(-1, -2)
    return x + (coef * active[:, None, :].to(x.dtype)) @ directions.T


def clean_run(
    model: HookedTransformer, tokens: torch.Tensor, nodes: Sequence[Node], keep_writes: bool = True
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[int, torch.Tensor], dict[int, dict[str, torch.Tensor]]]:
    """One clean forward: ``(outputs [b, pos, v], {node: activation [b, pos, d]}, {layer: resid_pre
    [b, pos, d_model]}, {layer: writes})``. ``writes[layer]`` holds what the write-start path of
    ``ablated_outputs_batched`` reads: ``"z"`` (every head's ``hook_z``, ``[b, pos, n_heads, d_head]``)
    and ``"resid_mid"`` (``[b, pos, d_model]``), for the layers that hold nodes; empty when the
    model does not support that path (``supports_write_start``) or ``keep_writes`` is False (a run
    whose writes nobody reads, e.g. the counterfactual inputs')."""
    layers = sorted({n.layer for n in nodes})
    fast = keep_writes and supports_write_start(model)
    hooks = {n.hook_name for n in nodes} | {resid_pre_name(l) for l in layers}
    if fast:
        hooks |= {f"blocks.{l}.attn.hook_z" for l in layers} | {f"blocks.{l}.hook_resid_mid" for l in layers if not model.cfg.attn_only}
    with torch.no_grad():
        out, cache = model.run_with_cache(tokens, names_filter=lambda name: name in hooks)
    acts = {n.name: node_activation(cache[n.hook_name], n).clone() for n in nodes}
    resid = {l: cache[resid_pre_name(l)] for l in layers}
    writes = {}
    if fast:
        for l in layers:
            writes[l] = {"z": cache[f"blocks.{l}.attn.hook_z"]}
            if not model.cfg.attn_only:
                writes[l]["resid_mid"] = cache[f"blocks.{l}.hook_resid_mid"]
    return out, acts, resid, writes


def ablated_outputs_loop(
    model: HookedTransformer, tokens: torch.Tensor, nodes: Sequence[Node], replacements: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Reference: one full forward per node. Returns ``{node: outputs [b, pos, v]}``."""
    outs = {}
    for node in nodes:
        hooks = replacing_hooks([(node, slice(None), replacements[node.name])])
        outs[node.name] = model.run_with_hooks(tokens, fwd_hooks=hooks)
    return outs


def ablated_outputs_batched(
    model: HookedTransformer,
    resid_pre: Mapping[int, torch.Tensor],
    nodes: Sequence[Node],
    replacements: Mapping[str, torch.Tensor] | Callable[[Node], torch.Tensor],
    max_rows: int = DEFAULT_MAX_ROWS,
    writes: Mapping[int, Mapping[str, torch.Tensor]] | None = None,
    readout: Readout = FULL,
) -> dict[str, torch.Tensor]:
    """All single-node ablations in stacked passes. Returns ``{node: outputs [b, pos, v]}`` (only the
    cells ``readout`` reads: ``[b, positions read, entries read]``, ``interventions.readout``).

    ``replacements`` maps a node name to its value ``[b, pos, d]`` (or is a function of the
    node, so values can be built lazily, e.g. with gradients for optimal ablation).
    ``resid_pre[layer]`` is the clean residual stream ``[b, pos, d_model]`` before each layer.

    ``writes`` (``clean_run``'s fourth value; the model must pass ``supports_write_start``): start
    each node's forward at its own write instead of its layer's input. Nothing before the write
    changes, so a head's layer does not recompute its attention (queries, keys, softmax): the
    clean ``hook_z`` of the layer, with the node's head replaced, goes through the layer's output
    projection, and the MLP follows; an MLP's replacement goes straight through ``W_out`` onto the
    clean ``resid_mid``. The model then runs on from the next layer. Without ``writes`` each
    node's layer is recomputed from ``resid_pre`` with a hook (the joint-ablation path).
    """
    return dict(iter_ablated_outputs_batched(model, resid_pre, nodes, replacements, max_rows, writes, readout))


def iter_ablated_outputs_batched(
    model: HookedTransformer,
    resid_pre: Mapping[int, torch.Tensor],
    nodes: Sequence[Node],
    replacements: Mapping[str, torch.Tensor] | Callable[[Node], torch.Tensor],
    max_rows: int = DEFAULT_MAX_ROWS,
    writes: Mapping[int, Mapping[str, torch.Tensor]] | None = None,
    readout: Readout = FULL,
) -> Iterator[tuple[str, torch.Tensor]]:
    """``ablated_outputs_batched`` one stacked forward at a time: yields ``(node, outputs [b, pos, v])``
    as each forward ends, so a caller that drops each output after use holds one forward's outputs
    (the ``--max-batch-mb`` budget), not every node's."""
    # heads and MLPs start at their own write when the clean run kept it; features (and the rest) at their layer
    from_writes = [n for n in nodes if n.kind != "feature" and writes and n.layer in writes] if writes else []
    if from_writes:
        yield from _iter_from_writes(model, resid_pre, writes, from_writes, replacements, max_rows, readout)
    started = {n.name for n in from_writes}
    rest = [n for n in nodes if n.name not in started]
    for i, out in _iter_sets_batched(model, resid_pre, [[node] for node in rest], replacements, max_rows, readout):
        yield rest[i].name, out


def _iter_from_writes(model, resid_pre, writes, nodes, replacements, max_rows, readout) -> Iterator[tuple[str, torch.Tensor]]:
    get = replacements if callable(replacements) else (lambda n: replacements[n.name])
    by_layer: dict[int, list[Node]] = defaultdict(list)
    for n in nodes:
        by_layer[n.layer].append(n)
    for layer, layer_nodes in sorted(by_layer.items()):
        block = model.blocks[layer]
        resid, z_clean, mid_clean = resid_pre[layer], writes[layer]["z"], writes[layer].get("resid_mid")
        b = resid.shape[0]
        per_chunk = max(1, rows_within_budget(model, resid.shape[1], max_rows) // b)
        # the last layer's writes matter only at the positions read: cut them there first
        pos = readout.position_index(resid.shape[1], resid.device) if layer == model.cfg.n_layers - 1 else None
        at = (lambda t: t) if pos is None else (lambda t: t[:, pos])
        resid, z_clean, mid_clean = at(resid), at(z_clean), None if mid_clean is None else at(mid_clean)
        for start in range(0, len(layer_nodes), per_chunk):
            chunk = layer_nodes[start : start + per_chunk]
            heads = [n for n in chunk if n.kind == "attn"]
            mlps = [n for n in chunk if n.kind == "mlp"]
            parts = []
            if heads:
                z = z_clean.repeat(len(heads), 1, 1, 1)  # a fresh tensor: written in place below
                for j, n in enumerate(heads):
                    z[j * b : (j + 1) * b, :, n.head, :] = at(get(n))
                resid_mid = resid.repeat(len(heads), 1, 1) + attn_out(block.attn, z)
                del z
                parts.append(resid_mid if model.cfg.attn_only else resid_mid + block.apply_mlp(block.ln2(resid_mid)))
            for n in mlps:  # the MLP's own output is the replacement: no MLP forward at all
                # contiguous: batch_addmm views its input, and a method may return an expanded constant
                parts.append(mid_clean + batch_addmm(block.mlp.b_out, block.mlp.W_out, at(get(n)).contiguous()))
            stacked = parts[0] if len(parts) == 1 else torch.cat(parts)
            del parts
            out = run_from(model, stacked, layer + 1, readout, cut=pos is not None)
            del stacked
            for j, n in enumerate(heads + mlps):
                yield n.name, out[j * b : (j + 1) * b]
            del out  # not alive while the next chunk runs


# --------------------------------------------------------------------------- joint ablation of node sets


def ablated_outputs_sets_loop(
    model: HookedTransformer,
    tokens: torch.Tensor,
    node_sets: Sequence[Sequence[Node]],
    replacements: Mapping[str, torch.Tensor],
) -> list[torch.Tensor]:
    """Reference: one full forward per node set, every node of the set replaced at once.

    Returns one ``outputs [b, pos, v]`` per set (an empty set gives the clean outputs)."""
    outs = []
    for nodes in node_sets:
        hooks = replacing_hooks([(node, slice(None), replacements[node.name]) for node in nodes])
        outs.append(model.run_with_hooks(tokens, fwd_hooks=hooks))
    return outs


def ablated_outputs_sets_batched(
    model: HookedTransformer,
    resid_pre: Mapping[int, torch.Tensor],
    node_sets: Sequence[Sequence[Node]],
    replacements: Mapping[str, torch.Tensor] | Callable[[Node], torch.Tensor],
    max_rows: int = DEFAULT_MAX_ROWS,
    readout: Readout = FULL,
) -> list[torch.Tensor]:
    """Joint ablations of many node sets in stacked passes: one ``outputs [b, pos, v]`` per set (the
    cells ``readout`` reads).

    Sets are grouped by their earliest layer; each group starts at that layer from the clean
    residual stream ``resid_pre[layer]`` (nothing upstream of a set's first node changes),
    repeated once per set along the batch axis, in chunks of at most ``max_rows`` rows (at least
    one set). Within a chunk each node gets one write covering the rows of every set holding it.
    An empty set gives the clean outputs (run from the earliest cached layer).
    """
    outs: list[torch.Tensor | None] = [None] * len(node_sets)
    for i, out in _iter_sets_batched(model, resid_pre, node_sets, replacements, max_rows, readout):
        outs[i] = out
    return outs  # type: ignore[return-value]


def _iter_sets_batched(model, resid_pre, node_sets, replacements, max_rows, readout=FULL) -> Iterator[tuple[int, torch.Tensor]]:
    """``(set index, outputs [b, pos, v])`` of ``ablated_outputs_sets_batched``, one stacked forward at a time."""
    get = replacements if callable(replacements) else (lambda n: replacements[n.name])
    sets = [list({n.name: n for n in s}.values()) for s in node_sets]  # a node twice in a set: once
    by_start: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        by_start[min(n.layer for n in s) if s else min(resid_pre)].append(i)
    for layer, idx in sorted(by_start.items()):
        resid = resid_pre[layer]
        b = resid.shape[0]
        # rows per forward: the speed cap max_rows, or fewer under --max-batch-mb (interventions.memory)
        per_chunk = max(1, rows_within_budget(model, resid.shape[1], max_rows) // b)
        for start in range(0, len(idx), per_chunk):
            chunk = idx[start : start + per_chunk]
            holders: dict[str, list[int]] = defaultdict(list)  # node -> positions in the chunk of the sets holding it
            node_of: dict[str, Node] = {}
            for j, i in enumerate(chunk):
                for n in sets[i]:
                    holders[n.name].append(j)
                    node_of[n.name] = n
            entries = []
            for name, js in holders.items():
                value = get(node_of[name])
                if len(js) == 1:
                    entries.append((node_of[name], slice(js[0] * b, (js[0] + 1) * b), value))
                else:
                    rows = torch.cat([torch.arange(j * b, (j + 1) * b, device=resid.device) for j in js])
                    entries.append((node_of[name], rows, value.repeat(len(js), *([1] * (value.dim() - 1)))))
            stacked = resid.repeat(len(chunk), 1, 1)
            with model.hooks(fwd_hooks=replacing_hooks(entries)):
                out = run_from(model, stacked, layer, readout)
            del stacked, entries
            for j, i in enumerate(chunk):
                yield i, out[j * b : (j + 1) * b]
            del out  # not alive while the next chunk runs
