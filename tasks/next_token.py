"""Next-token tasks: a pretrained-style model, a circuit given by head / MLP names, logit difference.

The metric is the logit difference LD = logit[correct] - logit[wrong] at the final position
(``abench.conventions.LogitDiffScorer``): a node's effect is sum |LD_ablated - LD_clean| / sum
|LD_clean| over the prompts. Nodes are ablated at the final position only (``ablate_at="final"``,
the default) or at every position. ``next_token_task`` builds such a task from any model (through
``tasks.user_tasks.TaskSpec``, so it is validated like a user's task file); with
``answer_tokens`` the unembedding is restricted to those tokens (exact for their logits), so a
50k-token vocabulary does not have to be held per ablated node.

``planted_backup_task``: a tiny randomly initialised HookedTransformer with a planted
name-mover circuit (family ``next_token``, registered as ``next_token_planted``). A prompt holds
one name (A or B) among filler tokens; the answer is that name, the wrong answer the other one.

- ``blocks.0.attn.hook_z[0]`` (name mover) attends to the name and writes 1.25 times its sign
  (+1 A, -1 B) into an answer signal; ``blocks.1.attn.hook_z[0]`` (backup) does the same with 0.5;
- ``blocks.1.mlp.hook_post`` reads the summed signal s and writes clamp(s, -1, 1) (four ReLU
  neurons) into the direction the unembedding reads: LD = 2 * UNEMBED_SCALE * clamp(s).

Clean s = 1.75 gives LD 6; zero-ablating the backup alone leaves s = 1.25 (LD 6: effect exactly
0, as for a bystander), the name mover alone s = 0.5 (LD 3: effect 0.5), both together s = 0
(LD 0: the behaviour is gone). The other
heads and MLP are random and alive but write only into a half of the residual stream that
nothing in the circuit or the unembedding reads (``tasks.user_tasks.plant_circuit``'s split), so
their effect is 0 under every ablation. Ground truth ``planted``.

``gpt2_ioi_task``: gpt2-small with the IOI circuit of Wang et al. (2022) (name movers, backup and
negative name movers, S-inhibition, induction, duplicate-token and previous-token heads) on
single-token-name IOI prompts. It needs gpt2-small's weights and tokenizer on this machine (no
download at run time) and raises ``FileNotFoundError`` otherwise.
"""

from __future__ import annotations

import os
import random
from typing import Callable, Sequence

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from tasks.base import Task, describe_ground_truth
from tasks.user_tasks import TaskSpec, build_task

FAMILY = "next_token"
PLANTED_MEANING = "nodes outside the planted circuit write only where nothing in the circuit or the unembedding reads"


def _legend() -> None:
    """Give the report legend the meaning of ``planted`` (the controller of an xdist run never loads the task)."""
    describe_ground_truth("planted", PLANTED_MEANING)

# --------------------------------------------------------------------------- any model


def restrict_unembed(model: HookedTransformer, token_ids: Sequence[int]) -> HookedTransformer:
    """Keep only the unembedding columns of ``token_ids`` (in place): output k is token_ids[k]'s logit."""
    ids = torch.as_tensor(list(token_ids), dtype=torch.long, device=model.unembed.W_U.device)
    with torch.no_grad():
        model.unembed.W_U = torch.nn.Parameter(model.unembed.W_U[:, ids].clone())
        model.unembed.b_U = torch.nn.Parameter(model.unembed.b_U[ids].clone())
    model.cfg.d_vocab_out = len(ids)
    return model


def next_token_task(name: str, model, circuit: Sequence[str], vocab: Sequence, lengths: tuple[int, int],
                    sample: Callable, answers: Callable, edit: Callable | None = None, bos: int = 0,
                    answer_tokens: Sequence[int] | None = None, ablate_at: str = "final", family: str = FAMILY,
                    ground_truth: str = "planted", ground_truth_meaning: str | None = None, device: str = "cpu",
                    info: dict | None = None, joint: dict | None = None) -> Task:
    """A validated logit-difference task (see the module docstring). ``answers(tokens) -> [n, 2]``
    gives (correct, wrong) token ids; with ``answer_tokens`` they are mapped to the restricted outputs."""
    answer_fn = answers
    if answer_tokens is not None:
        index = {int(t): k for k, t in enumerate(answer_tokens)}

        def answer_fn(tokens, _inner=answers):
            ids = _inner(tokens)
            return torch.tensor([[index[int(t)] for t in row] for row in ids.tolist()], dtype=torch.long, device=tokens.device)

        base_model = model

        def model(device="cpu", _m=base_model):  # noqa: F811 - build (or take) the model, then restrict its outputs
            m = _m(device=device) if callable(_m) and not isinstance(_m, HookedTransformer) else _m
            return restrict_unembed(m, answer_tokens)

    spec = TaskSpec(name=name, family=family, model=model, circuit=list(circuit), vocab=list(vocab), lengths=lengths,
                    output="logit_diff", sample=sample, edit=edit, bos=bos, answers=answer_fn, ablate_at=ablate_at,
                    ground_truth=ground_truth, ground_truth_meaning=ground_truth_meaning, info=dict(info or {}),
                    joint=joint)
    return build_task(spec, device)


# --------------------------------------------------------------------------- planted tiny model

BOS, NAME_A, NAME_B = 0, 1, 2
FILLERS = [3, 4, 5, 6, 7]
NAME_MOVER = "blocks.0.attn.hook_z[0]"
BACKUP = "blocks.1.attn.hook_z[0]"
READOUT = "blocks.1.mlp.hook_post"
PLANTED_CIRCUIT = [NAME_MOVER, BACKUP, READOUT]
NAME_MOVER_WEIGHT = 1.25  # alone past the readout's saturation (1), even with attention leaking onto fillers
BACKUP_HEAD_WEIGHT = 0.5  # the backup head carries less than that
UNEMBED_SCALE = 3.0
ATTN_SHARPNESS = 24.0  # query bias: the name's key scores 24 / sqrt(d_head) = 12 above a filler's

# residual dimensions of the circuit half (0..7); 8..15 belong to the bystanders
D_SIGN, D_IS_NAME, D_SIGNAL, D_ANSWER = 0, 1, 2, 4


def planted_backup_model(device: str = "cpu", seed: int = 0) -> HookedTransformer:
    """The tiny planted model of the module docstring (random bystanders, planted circuit)."""
    cfg = HookedTransformerConfig(n_layers=2, n_heads=3, d_model=16, d_head=4, d_mlp=16, d_vocab=8, n_ctx=8,
                                  act_fn="relu", normalization_type=None, seed=seed, device=device)
    model = HookedTransformer(cfg, move_to_device=True)
    half = cfg.d_model // 2
    with torch.no_grad():
        model.embed.W_E[:, :half] = 0
        model.embed.W_E[NAME_A, D_SIGN], model.embed.W_E[NAME_B, D_SIGN] = 1.0, -1.0
        model.embed.W_E[[NAME_A, NAME_B], D_IS_NAME] = 1.0
        model.pos_embed.W_pos[:, :half] = 0
        for layer, weight in ((0, NAME_MOVER_WEIGHT), (1, BACKUP_HEAD_WEIGHT)):
            attn = model.blocks[layer].attn
            for W in (attn.W_Q, attn.W_K, attn.W_V, attn.W_O):
                W[0] = 0
            for b in (attn.b_Q, attn.b_K, attn.b_V):
                b[0] = 0
            attn.b_Q[0, 0] = ATTN_SHARPNESS  # every query asks for ...
            attn.W_K[0, D_IS_NAME, 0] = 1.0  # ... a name's key
            attn.W_V[0, D_SIGN, 0] = 1.0  # and copies its sign
            attn.W_O[0, 0, D_SIGNAL] = weight  # into the answer signal
            attn.W_O[1:, :, :half] = 0  # bystander heads write only into the other half
            attn.b_O[:half] = 0
        model.blocks[0].mlp.W_out[:, :half] = 0  # bystander MLP
        model.blocks[0].mlp.b_out[:half] = 0
        mlp = model.blocks[1].mlp  # readout: clamp(s, -1, 1) = relu(s) - relu(s - 1) - relu(-s) + relu(-s - 1)
        mlp.W_in.zero_()
        mlp.b_in.zero_()
        mlp.W_out.zero_()
        mlp.b_out.zero_()
        for k, (sign, bias, out) in enumerate(((1, 0, 1), (1, -1, -1), (-1, 0, -1), (-1, -1, 1))):
            mlp.W_in[D_SIGNAL, k], mlp.b_in[k], mlp.W_out[k, D_ANSWER] = sign, bias, out
        model.unembed.W_U.zero_()
        model.unembed.b_U.zero_()
        model.unembed.W_U[D_ANSWER, NAME_A], model.unembed.W_U[D_ANSWER, NAME_B] = UNEMBED_SCALE, -UNEMBED_SCALE
    model.eval()
    return model


def _planted_sample(rng: random.Random, length: int) -> list[int]:
    seq = [rng.choice(FILLERS) for _ in range(length)]
    seq[rng.randrange(length - 1)] = rng.choice([NAME_A, NAME_B])  # the final token is a filler
    return seq


def _planted_edit(rng: random.Random, seq: list[int]) -> list[int]:
    """The other name in the same place: the answer flips."""
    return [NAME_B if t == NAME_A else NAME_A if t == NAME_B else t for t in seq]


def _planted_answers(tokens: torch.Tensor) -> torch.Tensor:
    has_a = (tokens == NAME_A).any(-1)
    correct = torch.where(has_a, NAME_A, NAME_B)
    wrong = torch.where(has_a, NAME_B, NAME_A)
    return torch.stack([correct, wrong], -1).long()


def planted_backup_task(device: str = "cpu", ablate_at: str = "final") -> Task:
    """``next_token_planted``: the planted name mover + backup task (module docstring)."""
    return next_token_task(
        "next_token_planted" if ablate_at == "final" else f"next_token_planted_{ablate_at}",
        planted_backup_model, PLANTED_CIRCUIT, vocab=[NAME_A, NAME_B, *FILLERS], lengths=(3, 7), sample=_planted_sample,
        edit=_planted_edit, answers=_planted_answers, bos=BOS, ablate_at=ablate_at, device=device,
        ground_truth="planted", ground_truth_meaning=PLANTED_MEANING,
        info={"roles": {NAME_MOVER: "name mover", BACKUP: "backup name mover", READOUT: "readout MLP (saturating)"}},
        joint={"name mover + backup": [NAME_MOVER, BACKUP]},
    )


# --------------------------------------------------------------------------- gpt2-small IOI

# Wang et al. 2022, "Interpretability in the Wild", figure 2 (layer.head)
IOI_HEADS = {
    "name mover": ["9.9", "9.6", "10.0"],
    "backup name mover": ["10.10", "10.6", "10.2", "10.1", "11.2", "9.7", "9.0", "11.9"],
    "negative name mover": ["10.7", "11.10"],
    "s-inhibition": ["7.3", "7.9", "8.6", "8.10"],
    "induction": ["5.5", "5.8", "5.9", "6.9"],
    "duplicate token": ["0.1", "0.10", "3.0"],
    "previous token": ["2.2", "4.11"],
}
IOI_CIRCUIT = [f"blocks.{h.split('.')[0]}.attn.hook_z[{h.split('.')[1]}]" for heads in IOI_HEADS.values() for h in heads]
IOI_NAMES = [" Mary", " John", " Tom", " James", " Dan", " Sid", " Martin", " Amy"]
IOI_TEMPLATE = "Then,{B} and{A} went to the store.{B} gave a drink to"


GPT2_FILES = ("config.json", "tokenizer.json")
GPT2_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def gpt2_cached() -> str | None:
    """None when gpt2-small's config, tokenizer and weights are in the local Hugging Face cache, else what is missing."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return "huggingface_hub is not installed"
    missing = [f for f in GPT2_FILES if not isinstance(try_to_load_from_cache("gpt2", f), str)]
    if not any(isinstance(try_to_load_from_cache("gpt2", f), str) for f in GPT2_WEIGHTS):
        missing.append(" or ".join(GPT2_WEIGHTS))
    return f"not in the local Hugging Face cache: gpt2/{', gpt2/'.join(missing)}" if missing else None


def gpt2_local() -> HookedTransformer:
    """gpt2-small from the local Hugging Face cache only (offline mode: no request leaves the
    machine); ``FileNotFoundError`` when it is not there."""
    missing = gpt2_cached()
    if missing:
        raise FileNotFoundError(f"gpt2-small weights/tokenizer are {missing}")
    import huggingface_hub.constants as hub_constants

    old_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    old_const = hub_constants.HF_HUB_OFFLINE
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    hub_constants.HF_HUB_OFFLINE = True
    try:
        return HookedTransformer.from_pretrained("gpt2", device="cpu")
    except Exception as err:  # noqa: BLE001 - offline: any failure means "not (completely) local"
        raise FileNotFoundError(f"gpt2-small could not be loaded offline ({type(err).__name__}: {err})") from None
    finally:
        hub_constants.HF_HUB_OFFLINE = old_const
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def gpt2_ioi_task(device: str = "cpu", model: HookedTransformer | None = None) -> Task:
    """``next_token_gpt2_ioi``: gpt2-small, the IOI circuit, logit difference IO - S at the final token."""
    model = model or gpt2_local()
    tok = model.tokenizer
    names = [tok.encode(n) for n in IOI_NAMES]
    if any(len(n) != 1 for n in names):
        raise ValueError("every IOI name must be one gpt2 token")
    names = [n[0] for n in names]

    def prompt(a: int, b: int) -> list[int]:
        text = IOI_TEMPLATE.replace("{A}", "\x00").replace("{B}", "\x01")
        ids: list[int] = []
        for part in text.replace("\x00", "\x02A\x02").replace("\x01", "\x02B\x02").split("\x02"):
            ids += [a] if part == "A" else [b] if part == "B" else (tok.encode(part) if part else [])
        return ids

    first = prompt(names[0], names[1])
    length, a_pos, b_pos = len(first), first.index(names[0]), first.index(names[1])

    def sample(rng: random.Random, L: int) -> list[int]:
        a, b = rng.sample(names, 2)
        return prompt(a, b)

    def edit(rng: random.Random, seq: list[int]) -> list[int]:  # other names, same template: the answer changes
        a, b = rng.sample([n for n in names if n not in seq] or names, 2)
        return prompt(a, b)

    def answers(tokens: torch.Tensor) -> torch.Tensor:  # IO: the name that appears once; S: the repeated one (+1: BOS)
        return torch.stack([tokens[:, a_pos + 1], tokens[:, b_pos + 1]], -1).long()

    vocab = sorted(set(names) | set(prompt(names[0], names[1])))
    return next_token_task("next_token_gpt2_ioi", model, IOI_CIRCUIT, vocab=vocab, lengths=(length, length), sample=sample,
                           edit=edit, answers=answers, bos=tok.bos_token_id, answer_tokens=names, ground_truth="paper",
                           ground_truth_meaning="the circuit published for the model (IOI: Wang et al. 2022)", device=device,
                           info={"roles": IOI_HEADS})


_legend()
