"""What every ground-truth task carries: a model, its nodes with circuit labels, and data.

A task knows nothing about ablations. Inputs are sampled in *length groups*: tracr does not
mask padding, so every tensor handed to a model holds sequences of one length. A data set is a
list of ``[n_examples, length + 1]`` token tensors (position 0 is BOS).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import torch
from transformer_lens import HookedTransformer

from interventions.nodes import Node, all_nodes  # noqa: F401  (re-exported: the task's node type)
from tasks.seeds import derive

Output = Literal["categorical", "numerical"]
AblateAt = Literal["all", "final"]  # positions a node is ablated at: every position, or the final one only

# What each kind of ground truth means, for the report legend (``leaderboard.json`` ``ground_truth``).
# Task files add their own with ``describe_ground_truth``.
GROUND_TRUTH = {
    "weights": "a node is in the circuit when its weights are non-zero in the compiled tracr model",
    "resample": "a node is in the circuit when SIIT trained it to implement a tracr node; the rest were trained "
    "to be irrelevant under resample ablation",
}


# A family whose ground truth needs more words than its kind's legend (keyed by family).
FAMILY_GROUND_TRUTH = {
    "siit_backup": "as resample (SIIT), except that one high-level node is carried by a pair of low-level nodes (a "
    "backup pair, each member alone implementing it with its partner knocked out): single-node ablation under-reports "
    "each member by design, so read the joint-ablation table; the ground-truth check scores the pair by its joint "
    "resample effect. Never pooled with siit",
    "siit_norm": "as resample (SIIT), on pre-norm models (LayerNorm as gpt2, RMSNorm as Llama; the norms' scales kept, "
    "not folded): an ablation's effect includes what it does to the norm. Never pooled with siit",
    "siit_causal": "as resample (SIIT), on models with a causal attention mask trained on programs whose every node at a "
    "position reads only that position and earlier ones. Never pooled with siit",
    "siit_deep": "as resample (SIIT), on 6-layer models whose circuit sits in a few layers, bystander layers before, "
    "between and after it. Never pooled with siit",
}


def describe_ground_truth(name: str, meaning: str) -> None:
    """Give the ground truth ``name`` its meaning in the report legend (the first one given stays)."""
    GROUND_TRUTH.setdefault(name, meaning)
InputSeq = list  # one raw input sequence (program vocabulary values, no BOS)


@dataclass
class InputSpec:
    """How to draw valid inputs of a program: vocabulary, lengths, precondition-respecting sampler.

    ``sample(rng, length)`` returns one sequence of that length; ``edit(rng, seq)`` returns a
    minimal edit of it (same length, aligned positions) that still meets the precondition: the
    task's counterfactual distribution. ``lengths``: the lengths drawn (default every length from
    ``min_len`` to ``max_len``).
    """

    vocab: Sequence
    max_len: int
    min_len: int = 2
    sample: Callable[[random.Random, int], InputSeq] | None = None
    edit: Callable[[random.Random, InputSeq], InputSeq] | None = None
    lengths: Sequence[int] | None = None

    def all_lengths(self) -> list[int]:
        return list(self.lengths) if self.lengths is not None else list(range(self.min_len, self.max_len + 1))

    def draw(self, rng: random.Random, length: int) -> InputSeq:
        if self.sample is not None:
            return self.sample(rng, length)
        return [rng.choice(list(self.vocab)) for _ in range(length)]

    def counterfactual(self, rng: random.Random, seq: InputSeq) -> InputSeq:
        if self.edit is not None:
            return self.edit(rng, seq)
        return edit_one_token(rng, seq, self.vocab)

    def problem(self, draws_per_length: int = 16, seed: int = 0) -> tuple[str, str] | None:
        """``(field, what is wrong)`` for the first draw of ``sample`` or ``edit`` that is not a list of
        vocabulary values of the asked length (``draws_per_length`` seeded draws of every length), else None.
        Run when a task is loaded, so a bad sampler is named then, not deep inside a benchmark run."""
        rng = random.Random(seed)
        known = set(map(repr, self.vocab))
        for length in self.all_lengths():
            for _ in range(draws_per_length):
                seqs = {}
                for fld, make in (("sample", lambda: self.draw(rng, length)), ("edit", lambda: self.counterfactual(rng, seqs["sample"]))):
                    try:
                        seqs[fld] = seq = make()
                    except Exception as err:  # noqa: BLE001 - a user's function may raise anything: name it
                        return fld, f"raised {type(err).__name__}: {err}"
                    if not isinstance(seq, (list, tuple)):
                        return fld, f"must return a list of vocabulary values, got {type(seq).__name__}"
                    if len(seq) != length:
                        return fld, f"returned a sequence of length {len(seq)} for length {length}"
                    bad = [v for v in seq if repr(v) not in known]
                    if bad:
                        return fld, f"returned {bad[0]!r}, which is not in vocab {list(self.vocab)!r}"
        return None


def ll_members(value: str | Sequence[str]) -> list[str]:
    """The low-level node names of one correspondence value (a name, or a list of names for a redundant node)."""
    return [value] if isinstance(value, str) else list(value)


def unit_name(value: str | Sequence[str]) -> str:
    """The name of one correspondence value in per-node metrics, cards and checks: the LL node, or a
    redundant set's members joined by ``+``."""
    return "+".join(ll_members(value))


def redundant_sets(correspondence: dict[str, str | list[str]]) -> dict[str, list[str]]:
    """The joint sets a correspondence declares: each high-level node carried by a list of low-level
    nodes (a backup pair, or a larger redundant set), ablated together."""
    return {f"{h} backup pair" if len(v) == 2 else f"{h} redundant set": list(v)
            for h, v in correspondence.items() if not isinstance(v, str)}


def edit_one_token(rng: random.Random, seq: InputSeq, vocab: Sequence) -> InputSeq:
    """Replace one random position by a different vocabulary value."""
    out = list(seq)
    i = rng.randrange(len(out))
    out[i] = rng.choice([v for v in vocab if v != out[i]])
    return out


@dataclass(frozen=True)
class LogitDiffScoring:
    """How a next-token task is scored: the logit difference (correct - wrong) at ``position``.

    ``answers(tokens [n, L + 1]) -> [n, 2]``: per prompt the (correct, wrong) ids among the model's outputs.
    """

    answers: Callable[[torch.Tensor], torch.Tensor]
    position: int = -1


@dataclass
class Task:
    """A model whose circuit is known, and the data to probe it with.

    Attributes:
        name: short id used in test ids and reports (``reverse``).
        family: ``tracr`` (compiled) or ``siit`` (trained).
        model: the HookedTransformer; ``model(tokens)`` gives ``[batch, pos, d_vocab_out]``.
        output: ``categorical`` (argmax of the outputs is the prediction) or ``numerical``
            (``d_vocab_out == 1``, the value is the prediction).
        nodes: every head and MLP, with ``in_circuit`` labels.
        inputs: the input distribution (vocabulary, lengths, sampler, counterfactual edit).
        encoding: map from vocabulary value (and ``BOS``) to token id.
        ground_truth: which intervention defines ``in_circuit`` (``weights`` for tracr: a node is
            in when its weights are non-zero; ``resample`` for SIIT: trained to be irrelevant
            under resample ablation).
        info: free-form facts of the task's family (a tracr program's ``label`` and
            ``output_values``, a SIIT model's card and auxiliary readouts, roles); the benchmark's
            engine reads none of them.
        high_level: the model whose nodes the circuit implements (SIIT, user tasks with a
            correspondence); its outputs are the task's high-level labels.
        correspondence: high-level node name -> the low-level node (or redundant set of nodes)
            implementing it.
        joint_sets: label -> nodes ablated together in the joint-ablation table (backup pairs).
        scoring: ``LogitDiffScoring`` for next-token tasks scored by their logit difference;
            ``None``: by the outputs (the effect conventions of ``abench.conventions``).
        ablate_at: ``all`` positions, or the ``final`` one only (next-token tasks).
        ground_truth_meaning: one sentence for the report legend, where the kind is new.
    """

    name: str
    family: str
    model: HookedTransformer
    output: Output
    nodes: list[Node]
    inputs: InputSpec
    encoding: dict
    ground_truth: str
    info: dict = field(default_factory=dict)
    high_level: "Task | None" = None
    correspondence: dict[str, str | list[str]] = field(default_factory=dict)
    joint_sets: dict[str, list[str]] = field(default_factory=dict)
    scoring: LogitDiffScoring | None = None
    ablate_at: AblateAt = "all"
    ground_truth_meaning: str | None = None

    def __post_init__(self) -> None:
        if self.ablate_at not in ("all", "final"):
            raise ValueError(f"task {self.name!r}: ablate_at must be 'all' or 'final', got {self.ablate_at!r}")

    def encode(self, seqs: Sequence[InputSeq]) -> torch.Tensor:
        """``[n, length + 1]`` token ids with BOS first; all sequences must share one length."""
        lengths = {len(s) for s in seqs}
        if len(lengths) != 1:
            raise ValueError(f"encode needs sequences of one length, got lengths {sorted(lengths)}")
        try:
            ids = [[self.encoding["BOS"]] + [self.encoding[t] for t in s] for s in seqs]
        except KeyError as err:
            raise ValueError(f"task {self.name!r}: token {err.args[0]!r} is not in its vocabulary {list(self.inputs.vocab)}") from None
        return torch.tensor(ids, dtype=torch.long, device=self.model.cfg.device)

    def sample_raw(self, n: int, seed: int) -> list[list[InputSeq]]:
        """``n`` sequences split evenly over the allowed lengths, grouped by length."""
        lengths = self.inputs.all_lengths()
        per = max(2, n // len(lengths))  # >= 2 per group so a derangement exists
        rng = random.Random(seed)
        return [[self.inputs.draw(rng, L) for _ in range(per)] for L in lengths]

    def sample(self, n: int, seed: int) -> list[torch.Tensor]:
        """A seeded data set: one ``[n_L, L + 1]`` token tensor per length ``L``."""
        return [self.encode(group) for group in self.sample_raw(n, seed)]

    def sample_with_counterfactual(self, n: int, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The data set of ``sample(n, seed)`` and, row for row, a minimal edit of each input."""
        raw = self.sample_raw(n, seed)
        rng = random.Random(derive(seed, "counterfactual"))
        cf = [[self.inputs.counterfactual(rng, s) for s in group] for group in raw]
        return [self.encode(g) for g in raw], [self.encode(g) for g in cf]

    @property
    def in_circuit_names(self) -> list[str]:
        return [n.name for n in self.nodes if n.in_circuit]
