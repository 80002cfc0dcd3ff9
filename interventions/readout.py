"""What a scorer reads of a model's outputs, and a forward from a layer that computes only that.

A ``Readout`` names the output positions and vocabulary entries a scorer reads (``None``: all). The
logit difference reads one position and two entries per prompt; the suite's and iit's conventions
read every cell (``FULL``). ``run_from`` runs a model from ``resid_pre`` of a layer to the read
outputs ``[b, positions read, entries read]``:

- the final LayerNorm and the unembedding only at the positions read, and only the columns read
  (the unembedding's transposed columns are made once per model and kept, not copied by every
  forward as TransformerLens' ``Unembed`` does);
- the last block only at the positions read: nothing after it reads its other positions, so its
  queries, attention output and MLP are computed there only (keys and values still at every
  position). Only for blocks whose attention ``cut_last_block`` can reproduce (standard positional
  embedding, plain attention, no hook on the block); otherwise the block runs whole and its
  output is cut.

Same numbers as the full forward cut afterwards, up to float summation order: tests hold them at
1e-5 (``tests/test_readout.py``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformer_lens import HookedTransformer

from interventions.blocks import can_cut_last_block, hooked, last_block_at


@dataclass(frozen=True, eq=False)
class Readout:
    """The outputs a scorer reads: ``positions`` (indices into the position axis, negative from the
    end; ``None``: every position) and ``vocab`` (``[k]`` output ids, ascending and unique;
    ``None``: every entry)."""

    positions: tuple[int, ...] | None = None
    vocab: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.positions is not None and len(self.positions) == 0:
            raise ValueError("a Readout reads at least one position (positions=None reads all)")
        if self.vocab is not None:
            v = self.vocab
            if v.dim() != 1 or v.numel() == 0 or v.dtype != torch.long:
                raise ValueError(f"Readout vocab must be a non-empty 1-d long tensor of output ids, got {tuple(v.shape)} {v.dtype}")
            if v.numel() > 1 and not bool((v[1:] > v[:-1]).all()):
                raise ValueError("Readout vocab ids must be ascending and unique")

    @property
    def full(self) -> bool:
        """Reads every output cell (``select`` is the identity)."""
        return self.positions is None and self.vocab is None

    def position_index(self, n_pos: int, device) -> torch.Tensor | None:
        """``[p]`` the positions read of an ``n_pos``-long output (``None``: all), each checked in range."""
        if self.positions is None:
            return None
        bad = [p for p in self.positions if not -n_pos <= p < n_pos]
        if bad:
            raise IndexError(f"Readout positions {bad} are outside an output of {n_pos} positions")
        return torch.tensor([p % n_pos for p in self.positions], dtype=torch.long, device=device)

    def select(self, outputs: torch.Tensor) -> torch.Tensor:
        """``outputs [b, pos, v]`` -> ``[b, positions read, entries read]``; the same tensor when ``full``."""
        if self.full:
            return outputs
        pos = self.position_index(outputs.shape[1], outputs.device)
        if pos is not None:
            outputs = outputs[:, pos]
        return outputs if self.vocab is None else outputs[..., self.vocab.to(outputs.device)]

    def local_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Output ids -> their indices along the read entries (the same ids when every entry is read)."""
        if self.vocab is None:
            return ids
        vocab = self.vocab.to(ids.device)
        local = torch.searchsorted(vocab, ids.contiguous()).clamp(max=vocab.numel() - 1)
        if not bool((vocab[local] == ids).all()):
            raise KeyError(f"output ids {sorted(set(ids[vocab[local] != ids].tolist()))} are not read by this Readout")
        return local

    def unembed_weights(self, model: HookedTransformer) -> tuple[torch.Tensor, torch.Tensor]:
        """``([k, d_model], [k])``: the unembedding's read columns, transposed for ``F.linear``."""
        return unembed_weights(model, self.vocab)


FULL = Readout()

# model -> {read ids (None: all): (W_U's identity and version, [k, d_model], [k])}: made once per model
# and kept while W_U is unchanged, dropped with the model
_UNEMBED: "weakref.WeakKeyDictionary[HookedTransformer, dict]" = weakref.WeakKeyDictionary()


def unembed_weights(model: HookedTransformer, vocab: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W_U[:, vocab].T contiguous [k, d_model], b_U[vocab] [k])`` (every column when ``vocab`` is None),
    the weight TransformerLens' ``Unembed`` hands ``F.linear``, cached instead of copied per forward."""
    W_U, b_U = model.unembed.W_U, model.unembed.b_U
    stamp = (W_U.data_ptr(), W_U._version, b_U.data_ptr(), b_U._version)
    key = None if vocab is None else tuple(vocab.tolist())
    per_model = _UNEMBED.setdefault(model, {})
    cached = per_model.get(key)
    if cached is None or cached[0] != stamp:
        cols = slice(None) if vocab is None else vocab.to(W_U.device)
        with torch.no_grad():
            cached = per_model[key] = (stamp, W_U[:, cols].T.contiguous(), b_U[cols].contiguous())
    return cached[1], cached[2]


def plain_head(model: HookedTransformer) -> bool:
    """Whether the final norm and unembedding can be computed directly: no hook on them, no logit soft cap."""
    ln_final = getattr(model, "ln_final", None)  # absent without normalization
    return not (hooked(model.unembed) or (ln_final is not None and hooked(ln_final))
                or getattr(model.cfg, "output_logits_soft_cap", 0) > 0)


def run_from(model: HookedTransformer, x: torch.Tensor, start_layer: int, readout: Readout = FULL,
             cut: bool = False) -> torch.Tensor:
    """The outputs the readout reads, ``[b, positions read, entries read]``, of running ``model`` from
    ``x``: ``resid_pre`` of ``start_layer`` ``[b, pos, d_model]`` (``start_layer == n_layers``: the final
    residual). ``cut``: ``x`` holds only the positions read already (the caller cut them)."""
    if not plain_head(model):  # a hook on the head or a logit soft cap: TransformerLens' own forward, then cut
        out = model(x, start_at_layer=start_layer)
        return (out if readout.vocab is None else out[..., readout.vocab.to(out.device)]) if cut else readout.select(out)
    n_layers = model.cfg.n_layers
    pos = None if cut else readout.position_index(x.shape[1], x.device)
    for layer in range(start_layer, n_layers):
        if layer == n_layers - 1 and pos is not None and can_cut_last_block(model):
            x, pos = last_block_at(model.blocks[layer], x, pos), None
        else:
            x = model.blocks[layer](x)
    if pos is not None:
        x = x[:, pos]
    if model.cfg.normalization_type is not None:
        x = model.ln_final(x)
    weight, bias = readout.unembed_weights(model)
    return F.linear(x, weight, bias)
