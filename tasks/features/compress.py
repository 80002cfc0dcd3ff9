"""Compressed feature tasks: the merged (P, Q) model with fewer residual dimensions than it has atoms.

A learned projection ``W [d_big, d_small]`` (``d_small = round(COMPRESSION * d_big)``) is the only thing
trained; the model is read and written through it as tracr's ``CompressedTransformer`` is (every write
``w @ W``, every read ``W^T @ w``; exact folding, there is no LayerNorm): atom i's direction in the small
residual is row i of ``W``, and the atoms share dimensions (superposition), so ablating along one
direction moves the coordinates of the atoms it overlaps.

What is trained, on the interchange the benchmark scores with (``interventions.interchange``): P's output
on clean inputs (cross-entropy against the merged model's, which is tracr's), and the same output with a
random subset of the out-of-circuit atoms of every site (each row its own subset, from one atom to all)
set to their coordinates on a source (``interventions.hooks.write_coordinates``, jointly). A compressed
task ships only when P's accuracy is >= ``ACCURACY_BAR`` on held-out inputs; its ground truth (the same
labels as the oracle task's, read off the big model's weights) is checked in every run as the oracle
family's is (``abench.ground_truth``). The projection ships as ``tasks/weights/features/{task}.safetensors``
with a card (``.json``) beside it.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.func import functional_call
from transformer_lens import HookedTransformer

from interventions.hooks import write_coordinates
from interventions.interchange import draw_source_lengths
from interventions.measures import cell_changed
from tasks.base import Task
from tasks.features.family import COMPRESSED_FAMILY, atom_activity, scored_atoms, task_name, task_on_model
from tasks.features.merge import PER_LAYER_READS, PER_LAYER_WRITES, WRITES, merge, orthogonal
from tasks.seeds import derive
from tasks.tracr.compiled import build_model, decode_encoding
from tasks.tracr.programs import PROGRAMS

COMPRESSION = 0.6  # d_small / d_big
PROJECTION_SEED = 0
ACCURACY_BAR = 0.99
TRAIN_STEPS = 3000
TRAIN_BATCH = 64
TRAIN_LR = 3e-3
TEST_BATCHES = 20  # held-out batches of 128 inputs, one length each
CARD_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights" / "features"


def compress(sd: dict[str, torch.Tensor], W: torch.Tensor) -> dict[str, torch.Tensor]:
    """The merged model's weights read and written through ``W [d_big, d_small]``: writes ``w @ W``, reads
    ``W^T @ w`` (differentiable in ``W``; weights returned in ``W``'s dtype)."""
    out = {}
    for name, w in sd.items():
        w = w.to(W.dtype)
        if name in WRITES or name.endswith(PER_LAYER_WRITES):
            out[name] = w @ W
        elif name.endswith(PER_LAYER_READS[:3]):  # [heads, d_model, d_head]
            out[name] = torch.einsum("ji,hjk->hik", W, w)
        elif name.endswith(PER_LAYER_READS[3]) or name == "unembed.W_U":
            out[name] = W.T @ w
        else:
            out[name] = w
    return out


def small_card(card: dict, d_small: int) -> dict:
    return {**card, "cfg": {**card["cfg"], "d_model": d_small}}


def _out_of_circuit(sd: dict, card: dict, p: str) -> dict[str, list[int]]:
    """Per site hook name, the out-of-circuit atoms scored there."""
    scored = scored_atoms(sd, card, atom_activity(build_model(card, sd), card, p))
    return {f"blocks.{layer}.hook_{site}": [i for i, inside in atoms if not inside] for (layer, site), atoms in scored.items()}


def _loss(pred: torch.Tensor, target: torch.Tensor, output: str) -> torch.Tensor:
    """Cross-entropy against the target's argmax, or (numerical) 100 x the squared error; BOS left out."""
    if output == "categorical":
        return torch.nn.functional.cross_entropy(pred[:, 1:].flatten(0, 1), target[:, 1:].argmax(-1).flatten())
    return 100.0 * ((pred[:, 1:, 0] - target[:, 1:, 0]) ** 2).mean()


def _inputs(p: str, enc: dict, rng: random.Random, length: int, n: int) -> torch.Tensor:
    return torch.tensor([[enc["BOS"]] + [enc[t] for t in PROGRAMS[p].inputs.draw(rng, length)] for _ in range(n)])


def _interchanged(small: HookedTransformer, weights: dict, base: torch.Tensor, source: torch.Tensor, W: torch.Tensor,
                  out_atoms: dict[str, list[int]], gen: torch.Generator) -> torch.Tensor:
    """``small`` on ``base`` with, per row, a random subset of every site's out-of-circuit atoms (each kept with
    probability p ~ U(0, 1], p drawn per row) set jointly to their coordinates on ``source`` (its prefix)."""
    store: dict[str, torch.Tensor] = {}
    with small.hooks(fwd_hooks=[(h, lambda a, hook: store.__setitem__(hook.name, a)) for h in out_atoms]):
        functional_call(small, weights, (source,))
    unit = W / W.norm(dim=1, keepdim=True)
    share = 1.0 - torch.rand(base.shape[0], 1, generator=gen)

    def setter(atoms):
        def hook(act, hook):
            D = unit[atoms].T  # [d_small, m]
            active = torch.rand(act.shape[0], len(atoms), generator=gen) < share
            target = store[hook.name][:, : act.shape[1]] @ D
            return write_coordinates(act, D, active, target)
        return hook

    with small.hooks(fwd_hooks=[(h, setter(a)) for h, a in out_atoms.items() if a]):
        return functional_call(small, weights, (base,))


def train_projection(p: str, q: str, steps: int = TRAIN_STEPS, seed: int = PROJECTION_SEED, log=print) -> tuple[torch.Tensor, dict]:
    """Learn ``W`` for the merged (p, q) model (module docstring); returns ``(W [d_big, d_small], card)``."""
    sd, card = merge(p, q)
    big = build_model(card, sd)
    d_big = card["cfg"]["d_model"]
    d_small = max(2, round(COMPRESSION * d_big))
    output, enc, spec = PROGRAMS[p].output, decode_encoding(card), PROGRAMS[p].inputs
    out_atoms = _out_of_circuit(sd, card, p)
    W = torch.nn.Parameter(orthogonal(d_big, seed)[:, :d_small].float().clone())
    small = build_model(small_card(card, d_small), compress(sd, W.detach()))
    opt = torch.optim.Adam([W], lr=TRAIN_LR)
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    lengths = range(spec.min_len, spec.max_len + 1)
    start = time.time()
    for step in range(1, steps + 1):
        length = rng.choice(list(lengths))
        base = _inputs(p, enc, rng, length, TRAIN_BATCH)
        source = _inputs(p, enc, rng, draw_source_lengths(length, lengths, 1, gen)[0], TRAIN_BATCH)
        with torch.no_grad():
            target = big(base)
        weights = compress(sd, W)
        loss = _loss(functional_call(small, weights, (base,)), target, output)
        loss = loss + _loss(_interchanged(small, weights, base, source, W, out_atoms, gen), target, output)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 500 == 0:
            log(f"[{task_name(p, q, True)}] step {step} {time.time() - start:.0f}s loss {loss.item():.5f}")
    W = W.detach()
    accuracy = held_out_accuracy(p, big, build_model(small_card(card, d_small), compress(sd, W)), enc)
    out = {"card_version": CARD_VERSION, "task": task_name(p, q, True), "programs": {"main": p, "bystander": q},
           "d_big": d_big, "d_small": d_small, "compression": COMPRESSION, "n_atoms": len(card["residual_labels"]),
           "residual_labels": list(card["residual_labels"]),  # W's rows, by atom: the merged order may differ elsewhere
           "seed": seed, "steps": steps, "batch": TRAIN_BATCH, "lr": TRAIN_LR, "train_seconds": round(time.time() - start, 1),
           "objective": "cross-entropy (numerical: 100 x squared error) of P's output, clean and with a random subset of every "
                        "site's out-of-circuit atoms set jointly to a source's coordinates (source length uniform over the lengths "
                        ">= the base's), target the merged model's clean output",
           "accuracy": accuracy, "accuracy_bar": ACCURACY_BAR, "passed": accuracy >= ACCURACY_BAR,
           "test": f"{TEST_BATCHES} batches of 128 inputs, one length each, seed {derive(seed, 'features-compressed-test')}"}
    return W, out


def held_out_accuracy(p: str, big: HookedTransformer, small: HookedTransformer, enc: dict, seed: int = PROJECTION_SEED) -> float:
    """Share of non-BOS cells where the compressed model's prediction is the merged (tracr) model's."""
    rng = random.Random(derive(seed, "features-compressed-test"))
    spec, output = PROGRAMS[p].inputs, PROGRAMS[p].output
    good = total = 0
    with torch.no_grad():
        for _ in range(TEST_BATCHES):
            x = _inputs(p, enc, rng, rng.randint(spec.min_len, spec.max_len), 128)
            same = ~cell_changed(big(x)[:, 1:], small(x)[:, 1:], output)
            good, total = good + int(same.sum()), total + same.numel()
    return good / total


def save(W: torch.Tensor, card: dict, folder: Path = WEIGHTS_DIR) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"W": W.contiguous()}, str(folder / f"{card['task']}.safetensors"))
    (folder / f"{card['task']}.json").write_text(json.dumps(card, indent=1) + "\n")


def shipped(folder: Path = WEIGHTS_DIR) -> list[tuple[str, str]]:
    """``(main, bystander)`` of every compressed task whose card passed."""
    out = []
    for path in sorted(folder.glob("*.json")):
        card = json.loads(path.read_text())
        if card.get("passed") and (folder / f"{card['task']}.safetensors").exists():
            out.append((card["programs"]["main"], card["programs"]["bystander"]))
    return out


def compressed_feature_task(p: str, q: str, device: str = "cpu") -> Task:
    """The compressed feature task of (p, q): the merged model read and written through its shipped projection,
    each atom's direction its unit row of ``W``; a clear error when no passing projection is shipped."""
    name = task_name(p, q, True)
    path = WEIGHTS_DIR / f"{name}.safetensors"
    card_path = path.with_suffix(".json")
    if not path.exists() or not card_path.exists():
        raise FileNotFoundError(f"{name}: no projection shipped in {WEIGHTS_DIR} (train it: python -m tasks.features.compress {p} {q})")
    proj = json.loads(card_path.read_text())
    if not proj.get("passed"):
        raise ValueError(f"{name}: its projection missed the accuracy bar ({proj.get('accuracy')} < {ACCURACY_BAR}); not a task")
    sd, card = merge(p, q)
    W = load_file(str(path))["W"].float()
    if W.shape != (card["cfg"]["d_model"], proj["d_small"]):
        raise ValueError(f"{name}: projection shape {tuple(W.shape)} does not fit the merged model ({card['cfg']['d_model']} x {proj['d_small']})")
    rows, here = proj.get("residual_labels"), card["residual_labels"]
    if rows is None or sorted(rows) != sorted(here):
        raise ValueError(f"{name}: the projection's card does not name the merged model's atoms (its rows: "
                         f"{None if rows is None else len(rows)} labels, the model: {len(here)}); retrain it")
    W = W[[rows.index(label) for label in here]]  # W's rows in this merged model's order
    model = build_model(small_card(card, proj["d_small"]), compress(sd, W.double()), device)
    info = {"directions": "compressed", "d_small": proj["d_small"], "d_big": proj["d_big"], "projection_card": proj}
    return task_on_model(p, q, sd, card, model, W / W.norm(dim=1, keepdim=True), info, COMPRESSED_FAMILY, name, device)


def main(argv: list[str] | None = None) -> None:
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(description="Train the compressed feature tasks' projections (tasks/features/compress.py).")
    parser.add_argument("pairs", nargs="*", help="main and bystander program names, alternating (default: every pair)")
    parser.add_argument("--steps", type=int, default=TRAIN_STEPS)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    from tasks.features.merge import PAIRS  # noqa: PLC0415

    pairs = list(zip(args.pairs[::2], args.pairs[1::2])) if args.pairs else PAIRS
    torch.set_num_threads(1)
    for p, q in pairs:
        torch.manual_seed(PROJECTION_SEED)
        W, card = train_projection(p, q, steps=args.steps)
        save(W, card, args.out)
        print(f"{card['task']}: d {card['d_big']} -> {card['d_small']}, accuracy {card['accuracy']:.4f}, "
              f"{'passed' if card['passed'] else 'MISSED the bar'} ({card['train_seconds']} s)", flush=True)


if __name__ == "__main__":
    main()
