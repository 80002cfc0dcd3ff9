# my_task.py: run with  pytest benchmarks --task-module my_task.py
from transformer_lens import HookedTransformer, HookedTransformerConfig

from tasks.user_tasks import TaskSpec, plant_circuit

VOCAB = [1, 2, 3, 4, 5]  # token ids of the inputs; position 0 holds the BOS token (id 0)
CIRCUIT = ["blocks.0.attn.hook_z[1]", "blocks.1.attn.hook_z[0]", "blocks.1.mlp.hook_post"]


def build_model(device="cpu"):
    cfg = HookedTransformerConfig(n_layers=2, n_heads=2, d_model=32, d_head=8, d_mlp=64, d_vocab=6, d_vocab_out=4,
                                  n_ctx=8, act_fn="relu", normalization_type=None, seed=0, device=device)
    model = HookedTransformer(cfg)
    # your own weights here, e.g. model.load_state_dict(torch.load("my_model.pth", weights_only=True))
    return plant_circuit(model, CIRCUIT)  # a toy ground truth: see tasks/user_tasks.py


def no_repeats(rng, length):  # one input of this length that meets the task's precondition
    seq = [rng.choice(VOCAB)]
    while len(seq) < length:
        seq.append(rng.choice([v for v in VOCAB if v != seq[-1]]))
    return seq


TASKS = [
    TaskSpec(
        name="my_planted",
        family="mine",
        model=build_model,
        circuit=CIRCUIT,
        vocab=VOCAB,
        lengths=(2, 6),
        sample=no_repeats,
        output="categorical",
        ground_truth="planted",
        ground_truth_meaning="out-of-circuit nodes write only where nothing in the circuit or the unembedding reads",
    )
]
